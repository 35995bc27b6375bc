"""Huge images read window by window: the input side of the tiled pipelines.

A :class:`Raster` is an ``(H, W)`` image whose pixels are read one window at a time, as
``(h, w, 3) uint8`` RGB (the form :func:`composeseg.load_image` gives). :func:`open_raster`
picks the reader:

- an array (or PIL image) already in memory: :class:`ArrayRaster`, whose windows are views;
- a TIFF whose compression tifffile decodes (none, deflate, packbits, ...): :class:`TiffRaster`
  reads only the tiles (or strips) a window touches, so a 20,000 x 20,000 tiled TIFF is never
  in memory at once;
- any other file (PNG, JPEG, a TIFF with a codec tifffile lacks): loaded whole through
  :func:`composeseg.load_image`, then an :class:`ArrayRaster`.

GeoTIFFs with their coordinate system go through ``composeseg.pipelines.geo`` (rasterio).

Images above Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, 89 MP by
default) are opened only when asked (``large_image=True``), whatever the reader: a clear
error otherwise, never a silent downscale.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from composeseg.image import ImageSource, load_image

Window = tuple[int, int, int, int]
"""``(x0, y0, x1, y1)`` ints, pixels of the raster, ``x1, y1`` exclusive."""

_PILLOW_LIMIT_LOCK = threading.Lock()
_TIFF_SUFFIXES = (".tif", ".tiff")


@runtime_checkable
class Raster(Protocol):
    """An image read by windows.

    Attributes:
        height, width: the image's size in pixels.
        name: where it came from, for messages.
    """

    height: int
    width: int
    name: str

    def read(self, window: Window) -> np.ndarray:
        """The ``(y1 - y0, x1 - x0, 3) uint8`` RGB pixels of ``window`` (xyxy, exclusive)."""
        ...

    def close(self) -> None:
        """Release the file, if any."""
        ...


def check_window(window: Window, size: tuple[int, int]) -> Window:
    """``window`` as ints, or ``ValueError`` if it is empty or leaves the ``(H, W)`` image."""
    x0, y0, x1, y1 = (int(v) for v in window)
    height, width = size
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(f"window {window} is empty or outside the {width}x{height} image")
    return x0, y0, x1, y1


class ArrayRaster:
    """A raster over an ``(H, W, 3) uint8`` image in memory; windows are views (no copy)."""

    def __init__(self, rgb: np.ndarray, name: str = "array") -> None:
        self.rgb = load_image(rgb)
        self.height, self.width = (int(v) for v in self.rgb.shape[:2])
        self.name = name

    def __repr__(self) -> str:
        return f"ArrayRaster({self.name!r}, {self.width}x{self.height})"

    def read(self, window: Window) -> np.ndarray:
        x0, y0, x1, y1 = check_window(window, (self.height, self.width))
        return self.rgb[y0:y1, x0:x1]

    def close(self) -> None:
        pass


class TiffRaster:
    """A TIFF read lazily through tifffile: a window decodes only the tiles or strips it
    touches. Build it with :func:`open_raster`, which checks that the file suits it.

    Pixels are normalised as :func:`composeseg.load_image` does (grey to RGB, alpha dropped,
    16-bit scaled to 8). The first page is the image (the full resolution of a pyramid).
    """

    def __init__(self, path: Path, tiff: Any) -> None:
        self.path = path
        self.name = str(path)
        self._tiff = tiff
        self._page = tiff.pages[0]
        self.height, self.width = (int(v) for v in self._page.shape[:2])
        chunk = self._page.chunks
        self._chunk = (int(chunk[0]), int(chunk[1]))  # (rows, cols) of one tile or strip
        self._per_row = -(-self.width // self._chunk[1])
        self._lock = threading.Lock()  # one file handle: reads from several threads take turns

    def __repr__(self) -> str:
        kind = "tiled" if self._page.is_tiled else "stripped"
        return f"TiffRaster({self.name!r}, {self.width}x{self.height}, {kind})"

    def read(self, window: Window) -> np.ndarray:
        x0, y0, x1, y1 = check_window(window, (self.height, self.width))
        rows, cols = self._chunk
        page = self._page
        bands = page.samplesperpixel if page.ndim == 3 else 1
        out = np.zeros((y1 - y0, x1 - x0, bands), page.dtype)
        index = [
            ty * self._per_row + tx
            for ty in range(y0 // rows, (y1 - 1) // rows + 1)
            for tx in range(x0 // cols, (x1 - 1) // cols + 1)
        ]
        offsets = [page.dataoffsets[i] for i in index]
        counts = [page.databytecounts[i] for i in index]
        with self._lock:
            for data, i in self._tiff.filehandle.read_segments(offsets, counts, indices=index):
                segment = self._decode(data, i)  # (rows, cols, bands), cut at the image edge
                ty, tx = divmod(i, self._per_row)
                sy, sx = ty * rows, tx * cols
                # the part of this segment inside the window, in both frames
                ay, by = max(y0, sy), min(y1, sy + segment.shape[0])
                ax, bx = max(x0, sx), min(x1, sx + segment.shape[1])
                part = segment[ay - sy : by - sy, ax - sx : bx - sx]
                out[ay - y0 : by - y0, ax - x0 : bx - x0] = part
        return load_image(out[:, :, 0] if bands == 1 else out)

    def _decode(self, data: bytes | None, index: int) -> np.ndarray:
        page = self._page
        try:
            segment, _, shape = page.decode(data, index)
        except Exception as error:  # tifffile raises many types for a damaged segment
            raise ValueError(f"{self.name}: segment {index} cannot be decoded ({error})") from None
        if segment is None:
            raise ValueError(f"{self.name}: segment {index} is missing (truncated file?)")
        # (1, depth, rows, cols, bands) -> (rows, cols, bands), cut to the segment's real size
        segment = segment.reshape(segment.shape[-3:])
        return segment[: shape[-3], : shape[-2]]

    def close(self) -> None:
        self._tiff.close()


def open_raster(source: ImageSource | Raster, *, large_image: bool = False) -> Raster:
    """A :class:`Raster` for a path, a PIL image, an array or a raster (returned as it is).

    Args:
        source: a file path, a PIL image, an ``(H, W, 3) uint8`` array (any form
            :func:`composeseg.load_image` takes) or a :class:`Raster`.
        large_image: open files above Pillow's pixel limit (``PIL.Image.MAX_IMAGE_PIXELS``)
            on purpose. Arrays are in memory already and are never refused.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: an unreadable or truncated file; a file above the pixel limit without
            ``large_image``.
    """
    if isinstance(source, Raster):
        return source
    if isinstance(source, Image.Image):
        return ArrayRaster(load_image(source), "PIL image")
    if isinstance(source, np.ndarray):
        return ArrayRaster(source)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"expected an image path, PIL image, numpy array or Raster, got {type(source).__name__}"
        )
    path = Path(source)
    if not path.is_file():
        if path.is_dir():
            raise ValueError(f"{path} is a directory, not an image file")
        raise FileNotFoundError(f"image file not found: {path}")
    if path.suffix.lower() in _TIFF_SUFFIXES:
        raster = _open_tiff(path, large_image)
        if raster is not None:
            return raster
    return ArrayRaster(_load_whole(path, large_image), str(path))


def check_pixel_limit(name: str, height: int, width: int, large_image: bool) -> None:
    """Refuse an image above Pillow's limit unless ``large_image`` (see :func:`open_raster`)."""
    limit = Image.MAX_IMAGE_PIXELS
    if large_image or limit is None or height * width <= limit:
        return
    raise ValueError(
        f"{name} is {width}x{height} = {height * width / 1e6:.0f} MP, above Pillow's limit of "
        f"{limit / 1e6:.0f} MP that guards against decompression bombs; open it on purpose "
        "with large_image=True (command line: --large-image)"
    )


def _open_tiff(path: Path, large_image: bool) -> TiffRaster | None:
    """A lazy reader for a TIFF that suits one; None to fall back to a whole load."""
    import tifffile

    try:
        tiff = tifffile.TiffFile(path)
    except Exception as error:  # tifffile raises TiffFileError, ValueError, struct.error...
        raise ValueError(f"{path} is not a readable TIFF file ({error})") from None
    try:
        page = tiff.pages[0]
        if not _lazy_readable(page):
            tiff.close()
            return None
        height, width = (int(v) for v in page.shape[:2])
        check_pixel_limit(str(path), height, width, large_image)
        # a file cut short fails here, before any compute, not after hours of tiles
        size = path.stat().st_size
        ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts, strict=True)]
        if not ends or max(ends) > size or min(page.databytecounts) == 0:
            raise ValueError(
                f"{path} is truncated: its pixel data reaches byte {max(ends, default=0)} but "
                f"the file has {size} bytes"
            )
        raster = TiffRaster(path, tiff)
        raster.read((0, 0, min(width, 1), min(height, 1)))  # the codec works on this machine
        return raster
    except ValueError as error:
        tiff.close()
        if "cannot be decoded" in str(error) and "truncated" not in str(error):
            return None  # e.g. LZW or JPEG without imagecodecs: Pillow reads those
        raise
    except Exception:
        tiff.close()
        raise


def _lazy_readable(page: Any) -> bool:
    """Whether :class:`TiffRaster` reads this page as Pillow would: chunky 8/16-bit grey,
    RGB or RGBA, upright."""
    photometric = int(page.photometric)
    return (
        page.planarconfig == 1  # contiguous samples
        and page.dtype in (np.uint8, np.uint16)
        and photometric in (1, 2)  # min-is-black grey, RGB
        and (page.ndim == 2 or (page.ndim == 3 and page.samplesperpixel in (1, 3, 4)))
        and int(page.tags.valueof(274, 1) or 1) == 1  # orientation: top-left
        and not page.is_subsampled
    )


def _load_whole(path: Path, large_image: bool) -> np.ndarray:
    """Load a file Pillow reads, lifting Pillow's pixel limit only when asked."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                size = image.size
        except Image.DecompressionBombError:
            size = None
        except (OSError, SyntaxError, ValueError) as error:
            raise ValueError(f"{path} is not a readable image file ({error})") from None
    if size is None:
        if not large_image:
            raise ValueError(
                f"{path} is above Pillow's limit of {(Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} "
                "MP that guards against decompression bombs; open it on purpose with "
                "large_image=True (command line: --large-image)"
            )
    else:
        check_pixel_limit(str(path), size[1], size[0], large_image)
    if not large_image:
        return load_image(path)
    # Pillow's limit is a process-wide setting: lift it for this one load only
    with _PILLOW_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return load_image(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved
