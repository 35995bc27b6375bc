"""Atomic file writing, shared by every command that writes results (RLE: :mod:`composeseg.rle`)."""

from __future__ import annotations

import glob
import json
import os
import re
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

_TEMPORARY = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")
"""The name :func:`temp_file_beside` gives: ``.<name>.<12 hex digits>.tmp``."""


def temp_file_beside(path: str | os.PathLike) -> Path:
    """Create an empty, uniquely named hidden file next to ``path`` and return it.

    The name, ``.<name>.<random>.tmp``, is hidden and ends in ``.tmp`` rather than the
    target's suffix, so a file left behind by a killed process is never picked up as an image,
    JSON or video by a later run over the folder (writers are told the format explicitly).
    The file is created with the umask's permissions, like any ordinary output (``mkstemp``
    would make it readable by its owner only), so renaming it onto ``path`` publishes a normal
    file. Creates ``path``'s directory if needed, and removes the temporaries of ``path`` that
    a killed writer left (one writer per output path is assumed, as everywhere in composeseg).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if _TEMPORARY.fullmatch(stale.name):
            stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    return tmp


def remove_temporaries(folder: str | os.PathLike, *, recursive: bool = True) -> int:
    """Delete the temporaries (:func:`temp_file_beside`) a killed writer left in ``folder``.

    Call it only where no other process writes at the same time (a locked folder, a
    command's own output folder). Returns how many were removed.
    """
    root = Path(folder)
    if not root.is_dir():
        return 0
    found = root.rglob(".*.tmp") if recursive else root.glob(".*.tmp")
    # only names this module makes: another program's ".x.tmp" in the folder is not ours
    stale = [path for path in found if _TEMPORARY.fullmatch(path.name)]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def check_output_folder(path: str | os.PathLike) -> Path:
    """Make sure ``path`` is (or can become) a folder this process writes into, before any work.

    Creates the folder and writes a probe file in it, so a read-only disk or a missing
    permission shows here, not after the model has run.

    Raises:
        ValueError: ``path`` or one of its parents is a file, or the folder cannot be written.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"output folder {folder} is a file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        temp_file_beside(folder / "write-probe").unlink()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ValueError(f"cannot write to the output folder {folder}: {reason}") from None
    return folder


def check_output_file(path: str | os.PathLike, suffixes: Sequence[str] = ()) -> Path:
    """Make sure a single output file can be written at ``path``, before any work.

    Args:
        path: the file to be written (replaced atomically if it exists).
        suffixes: accepted suffixes, lower case with the dot (``(".png", ".jpg")``); empty:
            any.

    Raises:
        ValueError: ``path`` is a directory, has a suffix not in ``suffixes``, or its folder
            cannot be written (see :func:`check_output_folder`).
    """
    file = Path(path)
    if file.is_dir():
        raise ValueError(f"output {file} is a directory: give a file name")
    if suffixes and file.suffix.lower() not in suffixes:
        raise ValueError(
            f"output {file}: expected a file ending in {' / '.join(suffixes)}, "
            f"got {file.suffix or 'no suffix'}"
        )
    check_output_folder(file.parent)
    return file


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    A crash leaves either the old file or the new one, never a half-written file; this is what
    lets batch jobs resume by skipping outputs that exist.
    """
    path = Path(path)
    tmp = temp_file_beside(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as JSON atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(payload, indent=1)))


def write_image(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write an ``(H, W)`` / ``(H, W, 3)`` uint8 (or bool) array as PNG/JPEG, atomically."""
    from PIL import Image

    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    suffix = Path(path).suffix.lower()
    image_format = Image.registered_extensions().get(suffix)
    if image_format is None:
        raise ValueError(f"cannot write an image as {suffix or 'a file without suffix'}: {path}")
    return atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format=image_format))
