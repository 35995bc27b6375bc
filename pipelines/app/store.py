"""The app's files: the images it may show, and the annotations it saves.

Images come from one folder (or one file) and from uploads; the page names them by opaque ids,
never by paths, so a request cannot reach a file that the listing did not find. The listing
also drops what resolves outside its root (symlinks out) and the app's own outputs when the
output folder lies inside the image folder. Every image is read through :func:`read_image`,
which refuses files with more pixels than the limit before decoding them (decompression bombs).

Saved work lives under ``OUT/``:

- ``annotations/<key>.json``: one COCO file per image (RLE masks, ``class_name``), written
  atomically and last: it is the record the app reads back to resume;
- ``masks/<key>/NNN.png``: one PNG per object, in the record's order;
- ``annotations.json``: every image of the folder merged into one COCO file, categories
  numbered by name (``composeseg train --data OUT/annotations.json --images FOLDER``);
- ``upload/<sha>.png``: uploaded images, keyed ``upload/<sha>.png``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from composeseg.pipelines.sources import check_key, list_images

MAX_PIXELS = 64_000_000
"""Default decompression-bomb guard: images above this many pixels are refused unread."""

MAX_UPLOAD_BYTES = 64 * 2**20
"""Default upload size limit."""

UPLOAD_DIR = "upload"


class NotFound(LookupError):
    """An id the app does not know (an HTTP 404)."""


class TooLarge(ValueError):
    """An upload or image over the limits (an HTTP 413)."""


@dataclass(frozen=True)
class ImageItem:
    """One image the page can open.

    Attributes:
        id: opaque and URL-safe, stable across restarts (a hash of the key).
        key: path relative to its root, POSIX form: the image's name in the output files.
        path: the file.
        uploaded: whether it came from an upload (kept under ``OUT/upload/``).
    """

    id: str
    key: str
    path: Path
    uploaded: bool = False


def image_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def read_image(data: bytes | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file to ``(H, W, 3) uint8`` RGB, upright (:func:`composeseg.load_image`),
    after checking its header's size against ``max_pixels``.

    Raises:
        TooLarge: more pixels than ``max_pixels``.
        ValueError: not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    from composeseg.image import load_image

    source = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        with Image.open(source) as image:  # reads the header only
            width, height = image.size
            if width * height > max_pixels:
                raise TooLarge(
                    f"the image has {width}x{height} pixels, more than the limit of {max_pixels}"
                )
            image.load()
            return load_image(image)
    except TooLarge:
        raise
    except Image.DecompressionBombError as error:
        raise TooLarge(str(error)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, ImportError) as error:
        # ImportError: ultralytics, once imported, patches Image.open to fetch a decoder plugin
        # for an unidentified file, which fails offline (as in composeseg.image)
        raise ValueError(f"not a readable image ({error})") from None


def encode_picture(rgb: np.ndarray) -> tuple[bytes, str]:
    """The picture the page shows: the decoded pixels, so EXIF rotation, 16-bit and TIFF files
    look in the browser exactly as SAM sees them. PNG up to 4 megapixels, JPEG above."""
    from PIL import Image

    buffer = io.BytesIO()
    if rgb.shape[0] * rgb.shape[1] <= 4_000_000:
        Image.fromarray(rgb).save(buffer, "PNG", compress_level=1)
        return buffer.getvalue(), "image/png"
    Image.fromarray(rgb).save(buffer, "JPEG", quality=92)
    return buffer.getvalue(), "image/jpeg"


class ImageStore:
    """The images of a folder (or one file) plus the uploads under ``OUT/upload/``."""

    def __init__(
        self, source: str | os.PathLike | None, out: Path, max_pixels: int = MAX_PIXELS
    ) -> None:
        self.out = out
        self.max_pixels = max_pixels
        self.root: Path | None = None
        self._items: dict[str, ImageItem] = {}
        self._lock = threading.Lock()
        if source is not None:
            path = Path(source)
            if not path.exists():
                raise FileNotFoundError(f"image or folder not found: {path}")
            self.root = path.parent if path.is_file() else path
            files = [path] if path.is_file() else list_images(path)
            self._add(self.root, files, uploaded=False)
        self._add(out / UPLOAD_DIR, _files_in(out / UPLOAD_DIR), uploaded=True, prefix=UPLOAD_DIR)

    def _add(self, root: Path, files: Iterable[Path], *, uploaded: bool, prefix: str = "") -> None:
        real_root = root.resolve()
        outputs = [(self.out / d).resolve() for d in ("annotations", "masks", UPLOAD_DIR)]
        for path in files:
            real = path.resolve()
            # a symlink out of the root is not the root's image; OUT's own PNGs are not images
            if not real.is_relative_to(real_root) or (
                not uploaded and any(real.is_relative_to(o) for o in outputs)
            ):
                continue
            key = check_key("/".join(p for p in (prefix, path.relative_to(root).as_posix()) if p))
            item = ImageItem(image_id(key), key, path, uploaded)
            self._items.setdefault(item.id, item)

    def items(self) -> list[ImageItem]:
        with self._lock:
            return list(self._items.values())

    def get(self, id: str) -> ImageItem:
        item = self._items.get(id)
        if item is None:
            raise NotFound(f"unknown image id {id!r}")
        return item

    def load(self, item: ImageItem) -> np.ndarray:
        return read_image(item.path, self.max_pixels)

    def upload(self, data: bytes) -> ImageItem:
        """Keep an uploaded image as ``OUT/upload/<sha>.png`` (the decoded pixels; the name is
        the content's hash, so nothing of the client's choosing reaches a path)."""
        from composeseg.io import write_image

        rgb = read_image(data, self.max_pixels)
        key = f"{UPLOAD_DIR}/{hashlib.sha256(rgb.tobytes()).hexdigest()[:16]}.png"
        item = ImageItem(image_id(key), key, self.out / key, uploaded=True)
        with self._lock:  # the same picture uploaded twice at once is written once
            if item.id not in self._items:
                write_image(item.path, rgb)
                self._items[item.id] = item
            return self._items[item.id]


def _files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.png") if p.is_file()) if folder.is_dir() else []


class RecordStore:
    """Per-image COCO records under ``OUT/annotations/`` and the label list they share.

    A class name keeps the category id it was first given (ids 1, 2, ... in order of first
    use, read back from the records at start), so every record of a folder agrees.
    """

    def __init__(self, out: Path, labels: Iterable[str] = ()) -> None:
        self.out = out
        self.labels: list[str] = []
        self._records: dict[str, dict[str, Any]] = {}  # key -> record, as on disk
        self._lock = threading.RLock()  # the labels, the records, the merged file
        folder = out / "annotations"
        for path in sorted(folder.rglob("*.json")) if folder.is_dir() else []:
            if path.name.startswith("."):  # a temp file of an interrupted write
                continue
            try:
                record = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue  # reported when that image is opened (load)
            self._records[path.relative_to(folder).as_posix()[: -len(".json")]] = record
            cats = sorted(record.get("categories", []), key=lambda c: c.get("id", 0))
            self.add_labels(str(c["name"]) for c in cats if "name" in c)
        self.add_labels(labels)

    def add_labels(self, names: Iterable[str]) -> None:
        with self._lock:
            for name in names:
                if name and name not in self.labels:
                    self.labels.append(name)

    def category_id(self, name: str) -> int:
        with self._lock:
            self.add_labels([name])
            return self.labels.index(name) + 1

    def record_path(self, key: str) -> Path:
        return self.out / "annotations" / f"{check_key(key)}.json"

    def load(self, key: str) -> dict[str, Any] | None:
        """The saved record of ``key``, or None.

        Raises:
            ValueError: the file exists but is not JSON (it is not overwritten silently).
        """
        path = self.record_path(key)
        if key not in self._records and path.is_file():
            try:
                self._records[key] = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as error:
                raise ValueError(
                    f"{path} is not readable JSON ({error}); fix or remove it"
                ) from None
        return self._records.get(key)

    def count(self, key: str) -> int:
        record = self._records.get(key)
        return 0 if record is None else len(record.get("annotations", []))

    def save(self, key: str, payload: dict[str, Any], masks: list[np.ndarray]) -> list[Path]:
        """Write the mask PNGs, then the record (atomically, last), then the merged file.

        An interrupted save leaves the previous record whole: a record is replaced by a
        rename, never rewritten in place.
        """
        from composeseg.io import write_image, write_json

        folder = self.out / "masks" / check_key(key)
        written = [write_image(folder / f"{i:03d}.png", m) for i, m in enumerate(masks)]
        written.append(write_json(self.record_path(key), payload))
        for stale in folder.glob("*.png") if folder.is_dir() else []:
            if stale not in written:  # objects deleted since the last save
                stale.unlink(missing_ok=True)
        with self._lock:  # one writer of the merged file at a time
            self._records[key] = payload
            written.append(self.write_merged())
        return written

    def write_merged(self) -> Path:
        """``OUT/annotations.json``: the folder's records (not the uploads) in one COCO file,
        category ids by name from the shared label list."""
        from composeseg.coco import merge_image_records
        from composeseg.io import write_json

        pairs = []
        for record in list(self._records.values()):
            images = record.get("images") or [{}]
            if str(images[0].get("file_name", "")).startswith(f"{UPLOAD_DIR}/"):
                continue
            names = {c["id"]: c["name"] for c in record.get("categories", [])}
            annotations = []
            for a in record.get("annotations", []):
                name = str(a.get("class_name") or names.get(a.get("category_id"), "object"))
                annotations.append({**a, "class_name": name, "category_id": self.category_id(name)})
            image = {k: v for k, v in images[0].items() if k != "id"}
            pairs.append((image, annotations))
        pairs.sort(key=lambda pair: str(pair[0].get("file_name", "")))
        return write_json(self.out / "annotations.json", merge_image_records(pairs))
