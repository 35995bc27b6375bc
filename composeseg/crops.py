"""Square crops around masks, prepared the way the SAM paper feeds objects to CLIP.

The crop is the mask's box expanded about its centre, made square (the longer side), resized to
the image model's input size; optionally the pixels outside the mask are replaced by a flat fill
so that only the object speaks. Parts of the square outside the image are filled too, so an
object at the border stays centred. Shared by :class:`composeseg.adapters.ClipMatcher` and the
demo text model's trainer, so training and inference see the same crops.
"""

from __future__ import annotations

import numpy as np

from composeseg.geometry import tight_boxes

DEFAULT_FILL = (124, 116, 104)
"""The ImageNet mean colour: zero after CLIP-style normalisation."""


def square_boxes(boxes: np.ndarray, expand: float | np.ndarray) -> np.ndarray:
    """``(N, 4)`` xyxy boxes -> ``(N, 4) float32`` squares of side ``expand * max(w, h)``.

    ``expand`` is a scalar or an ``(N,)`` array (>= 1 keeps the whole box); squares share the
    boxes' centres and may reach outside the image.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    factor = np.broadcast_to(np.asarray(expand, np.float32), (len(boxes),))
    if np.any(~np.isfinite(factor)) or np.any(factor <= 0):
        raise ValueError(f"expand must be positive and finite, got {expand!r}")
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * factor
    side = np.maximum(side, 1.0)
    half = side[:, None] / 2
    return np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)


def mask_crops(
    image: np.ndarray,
    masks: np.ndarray,
    *,
    size: int,
    expand: float | np.ndarray = 1.5,
    blank_background: bool = True,
    fill: tuple[int, int, int] = DEFAULT_FILL,
    boxes: np.ndarray | None = None,
) -> np.ndarray:
    """Crop every mask's object out of ``image`` as a ``size`` x ``size`` RGB square.

    Args:
        image: ``(H, W, 3) uint8`` RGB.
        masks: ``(N, H, W) bool`` in the pixels of ``image``.
        size: output side in pixels (the image model's input size).
        expand: box expansion factor, scalar or ``(N,)`` (the paper uses 1 to 2).
        blank_background: replace pixels outside the mask by ``fill``.
        fill: RGB colour of blanked and out-of-image pixels.
        boxes: ``(N, 4)`` xyxy boxes to crop around; default: each mask's tight box.

    Returns:
        ``(N, size, size, 3) uint8``. An empty mask yields a crop of ``fill``.

    Raises:
        ValueError: shapes that disagree, or a non-positive ``size``.
    """
    image = np.asarray(image)
    masks = np.asarray(masks, bool)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if masks.ndim != 3 or masks.shape[1:] != image.shape[:2]:
        h, w = image.shape[:2]
        raise ValueError(f"masks must be (N, {h}, {w}) like the image, got {masks.shape}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if boxes is None:
        boxes = tight_boxes(masks)
    squares = square_boxes(boxes, expand)
    out = np.empty((len(masks), size, size, 3), np.uint8)
    fill_pixel = np.asarray(fill, np.uint8)
    for i, (mask, square) in enumerate(zip(masks, squares, strict=True)):
        if not mask.any():
            out[i] = fill_pixel
            continue
        out[i] = _resample(image, mask if blank_background else None, square, size, fill)
    return out


def _resample(
    image: np.ndarray,
    mask: np.ndarray | None,
    square: np.ndarray,
    size: int,
    fill: tuple[int, int, int],
) -> np.ndarray:
    """``size`` x ``size`` bilinear view of ``square`` (xyxy, may leave the image) in ``image``,
    pixels outside ``mask`` (when given) replaced by ``fill``.

    Plain numpy with round-half-up, so crops are the same whatever imaging library is installed
    (OpenCV 4 and 5 round their fixed-point warps differently).
    """
    x0, y0, x1, y1 = (float(v) for v in square)
    scale = size / max(x1 - x0, 1e-6)
    # Area-average down to about twice the output first: a bilinear warp alone would alias
    # stripes and checks into colours the object does not have. Blocks sit on a grid anchored
    # at the image origin, so a crop does not depend on where the window starts.
    block = int(0.5 / scale) if scale < 0.5 else 1
    # The source window the samples read, with one block of margin, in whole blocks.
    wx0 = (int(np.floor(x0)) // block - 1) * block
    wy0 = (int(np.floor(y0)) // block - 1) * block
    wx1 = (int(np.ceil(x1)) // block + 2) * block
    wy1 = (int(np.ceil(y1)) // block + 2) * block
    fill_pixel = np.asarray(fill, np.uint8)
    window = _window(image, (wx0, wy0, wx1, wy1), fill_pixel)
    if mask is not None:  # blank only the window: the crop never reads further
        keep = _window(mask, (wx0, wy0, wx1, wy1), np.zeros((), bool))
        window = np.where(keep[..., None], window, fill_pixel)
    window = window.astype(np.float32)
    if block > 1:
        h, w = window.shape[0] // block, window.shape[1] // block
        window = window.reshape(h, block, w, block, 3).mean(axis=(1, 3))
    # Output pixel u samples the square at x0 + (u + 0.5) / scale (pixel centres at index + 0.5),
    # which is position (x - wx0) / block - 0.5 in the window's (block) pixels.
    centres = (np.arange(size, dtype=np.float64) + 0.5) / scale
    columns = _taps((x0 + centres - wx0) / block - 0.5, window.shape[1])
    rows = _taps((y0 + centres - wy0) / block - 0.5, window.shape[0])
    horizontal = _lerp(window, *columns, axis=1)
    out = _lerp(horizontal, *rows, axis=0)
    return np.floor(np.clip(out, 0, 255) + 0.5).astype(np.uint8)


def _window(array: np.ndarray, bounds: tuple[int, int, int, int], fill: np.ndarray) -> np.ndarray:
    """``array[y0:y1, x0:x1]`` for xyxy bounds that may reach outside it, outside = ``fill``."""
    x0, y0, x1, y1 = bounds
    h, w = array.shape[:2]
    out = np.empty((y1 - y0, x1 - x0, *array.shape[2:]), array.dtype)
    out[:] = fill
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if cx0 < cx1 and cy0 < cy1:
        out[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] = array[cy0:cy1, cx0:cx1]
    return out


def _taps(position: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left neighbour, right neighbour and right weight of each sample position."""
    left = np.floor(position)
    weight = (position - left).astype(np.float32)
    left_index = np.clip(left.astype(np.int64), 0, length - 1)
    return left_index, np.minimum(left_index + 1, length - 1), weight


def _lerp(
    values: np.ndarray, left: np.ndarray, right: np.ndarray, weight: np.ndarray, axis: int
) -> np.ndarray:
    shape = [1] * values.ndim
    shape[axis] = len(weight)
    w = weight.reshape(shape)
    a = np.take(values, left, axis=axis)
    b = np.take(values, right, axis=axis)
    return a + (b - a) * w
