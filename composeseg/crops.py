"""Square crops around masks, prepared the way the SAM paper feeds objects to CLIP.

The crop is the mask's box expanded about its centre, made square (the longer side), resized to
the image model's input size; optionally the pixels outside the mask are replaced by a flat fill
so that only the object speaks. Parts of the square outside the image are filled too, so an
object at the border stays centred. Shared by :class:`composeseg.adapters.ClipMatcher` and the
demo text model's trainer, so training and inference see the same crops.
"""

from __future__ import annotations

import cv2
import numpy as np

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
        source = np.where(mask[..., None], image, fill_pixel) if blank_background else image
        out[i] = _resample(source, square, size, fill)
    return out


def tight_boxes(masks: np.ndarray) -> np.ndarray:
    """``(N, H, W) bool`` -> ``(N, 4) float32`` xyxy tight boxes; zeros for empty masks.

    Pixel convention: ``x2, y2`` are exclusive, so a one-pixel mask at (x, y) gives
    ``(x, y, x + 1, y + 1)``.
    """
    masks = np.asarray(masks, bool)
    boxes = np.zeros((len(masks), 4), np.float32)
    if not len(masks):
        return boxes
    rows: np.ndarray = np.any(masks, axis=2)  # (N, H)
    cols: np.ndarray = np.any(masks, axis=1)  # (N, W)
    boxes[:, 0] = cols.argmax(1)
    boxes[:, 1] = rows.argmax(1)
    boxes[:, 2] = cols.shape[1] - cols[:, ::-1].argmax(1)
    boxes[:, 3] = rows.shape[1] - rows[:, ::-1].argmax(1)
    boxes[~np.any(rows, axis=1)] = 0
    return boxes


def _resample(
    source: np.ndarray, square: np.ndarray, size: int, fill: tuple[int, int, int]
) -> np.ndarray:
    x0, y0, x1 = (float(v) for v in square[:3])
    scale = size / max(x1 - x0, 1e-6)
    sx = sy = 1.0
    if scale < 0.5:
        # Area-average down to about twice the output first: a bilinear warp alone would
        # alias stripes and checks into colours the object does not have.
        h, w = source.shape[:2]
        factor = int(0.5 / scale)
        small = (max(1, w // factor), max(1, h // factor))
        source = cv2.resize(source, small, interpolation=cv2.INTER_AREA)
        sx, sy = w / small[0], h / small[1]
    # Pixel centres sit at index + 0.5: without the half-pixel terms an upscaled crop shifts
    # by (scale - 1) / 2 output pixels towards the top left.
    matrix = np.array(
        [
            [scale * sx, 0, scale * (0.5 * sx - x0) - 0.5],
            [0, scale * sy, scale * (0.5 * sy - y0) - 0.5],
        ],
        np.float32,
    )
    return cv2.warpAffine(
        source,
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=tuple(int(v) for v in fill),
    )
