"""What a dataset run reads: one image, a folder, a list file or a COCO file -> keyed items.

Every item has a *key*: its path relative to the source, with its extension, in POSIX form
(``street/x.jpg``). Outputs are named after the key, never after the stem, so ``x.jpg`` and
``x.png`` in one folder, or ``a/x.jpg`` and ``b/x.jpg``, never share a record.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
"""File suffixes a folder source picks up (case-insensitive)."""


@dataclass(frozen=True)
class Item:
    """One image of a run.

    Attributes:
        key: the path relative to the source, POSIX form, extension kept: the name of every
            output of this image, and its ``file_name`` in ``predictions.json``.
        path: the file to read; None for an in-memory image.
        image: the in-memory image (``(H, W, 3) uint8`` array or PIL image) when ``path`` is
            None.
        image_id: the COCO image id when the source was a COCO file, else None.
    """

    key: str
    path: Path | None = None
    image: Any = None
    image_id: int | None = None


def list_images(
    source: str | os.PathLike, *, glob: str | None = None, recursive: bool = True
) -> list[Path]:
    """Image files of a folder, sorted by their path relative to it.

    Args:
        source: a folder (or one image file, returned alone).
        glob: a pattern relative to the folder (``"**/*.jpg"``); default: every file whose
            suffix is in :data:`IMAGE_SUFFIXES`, in subfolders too when ``recursive``.
    """
    root = Path(source)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    if glob is not None:
        found: Iterable[Path] = root.glob(glob)
    else:
        candidates = root.rglob("*") if recursive else root.iterdir()
        found = (p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES)
    # hidden files and folders (.DS_Store, a run's own temp files) are never images
    files = [p for p in found if p.is_file() and not _hidden(p.relative_to(root))]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def resolve_items(
    source: str | os.PathLike | Iterable[Any],
    *,
    glob: str | None = None,
    image_dir: str | os.PathLike | None = None,
) -> list[Item]:
    """Turn a run's source into keyed items, in a stable order.

    Args:
        source: one image file; a folder (recursive, ``glob`` to filter); a ``.txt`` file
            listing one image path per line (relative to the list's folder; ``#`` comments);
            a COCO ``.json`` whose ``images`` are read from ``image_dir`` (default: the JSON's
            folder; a flat folder works too); or an iterable of paths / arrays / PIL images
            (arrays are keyed ``image_000000``, ...).

    Raises:
        ValueError: an empty source, a key that leaves the source's folder (``..`` or an
            absolute ``file_name``), or two items with the same key.
        FileNotFoundError: a missing source.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"source not found: {path}")
        if path.is_dir():
            root = path
            items = [Item(p.relative_to(root).as_posix(), p) for p in list_images(root, glob=glob)]
            what = f"no images in {path}" + (f" matching {glob!r}" if glob else "")
        elif path.suffix.lower() == ".txt":
            items, what = _from_list_file(path), f"{path} lists no images"
        elif path.suffix.lower() == ".json":
            items, what = _from_coco(path, image_dir), f"{path} has no images"
        else:
            items, what = [Item(path.name, path)], ""
    else:
        items, what = _from_iterable(source), "the source has no images"
    if not items:
        raise ValueError(what)
    seen: set[str] = set()
    for item in items:
        check_key(item.key)
        if item.key in seen:
            raise ValueError(f"the source lists {item.key!r} twice")
        seen.add(item.key)
    return items


def check_key(key: str) -> str:
    """Refuse keys that would put an output outside the run's folder."""
    parts = PurePosixPath(key).parts
    if not parts or key.startswith("/") or ".." in parts or "\\" in key or "\x00" in key:
        raise ValueError(
            f"image name {key!r} must be a relative path inside the source (no '..', not absolute)"
        )
    return key


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _from_list_file(path: Path) -> list[Item]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    paths = [Path(line) for line in lines if line and not line.startswith("#")]
    resolved = [p if p.is_absolute() else path.parent / p for p in paths]
    if not resolved:
        return []
    # keys relative to the folder every listed file lives under
    root = Path(os.path.commonpath([p.parent.resolve() for p in resolved]))
    return [Item(p.resolve().relative_to(root).as_posix(), p) for p in resolved]


def _from_coco(path: Path, image_dir: str | os.PathLike | None) -> list[Item]:
    from composeseg.coco import check_dataset, image_file_name, image_path, load_json

    payload = load_json(path)
    if not isinstance(payload, dict) or "images" not in payload:
        raise ValueError(f"{path} is not a COCO file with an 'images' list")
    # a source needs only the images; annotations are the evaluation's business
    check_dataset({"images": payload["images"]}, str(path))
    images: Sequence[dict[str, Any]] = payload["images"]

    root = Path(image_dir) if image_dir is not None else path.parent
    items = [
        Item(image_file_name(image), image_path(root, image), image_id=int(image["id"]))
        for image in images
    ]
    return sorted(items, key=lambda item: item.key)


def _from_iterable(source: Iterable[Any]) -> list[Item]:
    items = []
    for index, element in enumerate(source):
        if isinstance(element, (str, os.PathLike)):
            items.append(Item(Path(element).name, Path(element)))
        else:
            items.append(Item(f"image_{index:06d}", image=element))
    return items


__all__ = ["IMAGE_SUFFIXES", "Item", "check_key", "list_images", "resolve_items"]
