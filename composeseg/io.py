"""Atomic file writing, shared by every command that writes results (RLE: :mod:`composeseg.rle`)."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def temp_file_beside(path: str | os.PathLike) -> Path:
    """Create an empty, uniquely named hidden file next to ``path`` and return it.

    The name, ``.<name>.<random>.tmp``, is hidden and ends in ``.tmp`` rather than the
    target's suffix, so a file left behind by a killed process is never picked up as an image,
    JSON or video by a later run over the folder (writers are told the format explicitly).
    The file is created with the umask's permissions, like any ordinary output (``mkstemp``
    would make it readable by its owner only), so renaming it onto ``path`` publishes a normal
    file. Creates ``path``'s directory if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    return tmp


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
