"""Reading images into one form: ``(H, W, 3) uint8`` RGB, upright."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ImageSource = str | os.PathLike | Image.Image | np.ndarray
"""A file path, a PIL image, or an ``(H, W, 3) uint8`` RGB / ``(H, W)`` grayscale array."""


def load_image(source: ImageSource) -> np.ndarray:
    """Return ``source`` as a contiguous ``(H, W, 3) uint8`` RGB array in display orientation.

    Files are rotated by their EXIF orientation. Grayscale is replicated to three channels, the
    alpha of RGBA / LA images is dropped (SAM sees colour only), palette images are expanded,
    16-bit images are scaled to 8 bits (``v / 257``) and float images must lie in ``[0, 1]``.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is not a readable image, or the array has an unusable shape,
            dtype or values (NaN, empty).
    """
    if isinstance(source, (str, os.PathLike)):
        # close the file here: multi-frame formats (GIF, TIFF) keep it open after load()
        with _open(Path(source)) as image:
            return _from_pil(image, str(source))
    if isinstance(source, Image.Image):
        return _from_pil(source, "PIL image")
    if isinstance(source, np.ndarray):
        return _from_array(source)
    raise TypeError(
        f"expected an image path, PIL image or numpy array, got {type(source).__name__}"
    )


def _open(path: Path) -> Image.Image:
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not an image file")
    image = None
    try:
        image = Image.open(path)
        image.load()
    except Image.DecompressionBombError as error:
        # never downscale silently: name the way to open a huge image on purpose
        raise ValueError(
            f"{path}: {error}; segment it tiled, opened on purpose "
            "(composeseg.raster.open_raster(path, large_image=True), command line: --tile "
            "with --large-image)"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, ImportError) as error:
        # ImportError: some libraries (ultralytics) patch Image.open to fetch a decoder plugin
        # on an unidentified file, which fails offline; the file is still unreadable to us.
        if image is not None:
            image.close()
        raise ValueError(f"{path} is not a readable image file ({error})") from None
    return image


def _from_pil(image: Image.Image, name: str) -> np.ndarray:
    image = ImageOps.exif_transpose(image) or image
    if image.width == 0 or image.height == 0:
        raise ValueError(f"{name} is empty ({image.width}x{image.height})")
    if image.mode.startswith("I;16") or image.mode == "I":
        # 16-bit PNG/TIFF open as "I;16" or as 32-bit "I" holding 16-bit values.
        return _from_array(np.clip(np.asarray(image), 0, 65535).astype(np.uint16))
    if image.mode == "F":
        return _from_array(np.asarray(image))
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode != "RGB":
        image = image.convert("RGB")
    # np.array copies: a view of PIL's buffer is read-only, which torch and users trip over
    return np.array(image, dtype=np.uint8)


def _from_array(array: np.ndarray) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(
            f"image array must be (H, W), (H, W, 3) or (H, W, 4), got shape {array.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"image array is empty: shape {array.shape}")
    array = array[:, :, :3]
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype == np.bool_:
        return np.ascontiguousarray(array.astype(np.uint8) * 255)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError("image array contains NaN or infinite values")
        if array.min() < 0 or array.max() > 1:
            raise ValueError(
                f"float image values must lie in [0, 1], got [{array.min():g}, {array.max():g}]"
            )
        return np.ascontiguousarray(np.round(array * 255).astype(np.uint8))
    if array.dtype == np.uint16:
        if array.size and 0 < int(array.max()) <= 255:
            warnings.warn(
                f"a uint16 image whose values all lie in [0, {int(array.max())}]: 16-bit data is "
                "scaled by 1/257, so this becomes nearly black; if it holds 8-bit values, pass "
                "it as uint8 (array.astype(np.uint8))",
                UserWarning,
                stacklevel=3,
            )
        return np.ascontiguousarray(np.round(array / 257.0).astype(np.uint8))
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ValueError(
                f"{array.dtype} image values must lie in [0, 255], got [{low}, {high}]; "
                "pass 16-bit data as uint16"
            )
        return np.ascontiguousarray(array.astype(np.uint8))
    raise ValueError(f"unsupported image dtype {array.dtype}")


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """``image`` (``(H, W, 3) uint8`` RGB) encoded as JPEG at ``quality`` (0-100) with OpenCV
    and decoded again: the same shape and dtype, with JPEG's block and ringing artefacts."""
    import cv2

    ok, encoded = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR) if ok else None
    if decoded is None:  # pragma: no cover - OpenCV always encodes a uint8 image
        return image
    return np.ascontiguousarray(decoded[..., ::-1])
