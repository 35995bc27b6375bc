"""Prompt simulation of the SAM paper (§3 / appendix A): noisy boxes, random points, and
corrective points sampled from the error region of the previous prediction.

Everything works on ``(N, S, S) bool`` masks in the model frame and returns numpy arrays of xy
pixel coordinates in that frame; randomness comes only from the ``numpy`` generator passed in.
"""

from __future__ import annotations

import numpy as np

from composeseg.geometry import clip_boxes

PADDING_LABEL = -1
"""Label of a point the prompt encoder ignores (used when a prediction has no error left)."""


def _as_masks(masks: np.ndarray, name: str) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.dtype != np.bool_:
        raise ValueError(f"{name} must be an (N, H, W) bool array, got {masks.dtype} {masks.shape}")
    return masks


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight ``(N, 4) float32`` xyxy boxes of ``(N, H, W) bool`` masks (x2, y2 exclusive).

    Raises:
        ValueError: an empty mask, naming its index.
    """
    from composeseg.geometry import tight_boxes

    masks = _as_masks(masks, "masks")
    empty = ~masks.reshape(len(masks), -1).any(1)
    if empty.any():
        raise ValueError(f"masks[{int(np.argmax(empty))}] is empty")
    return tight_boxes(masks)


def noisy_boxes(
    masks: np.ndarray,
    rng: np.random.Generator,
    *,
    noise_std: float = 0.1,
    noise_max: float = 20.0,
) -> np.ndarray:
    """Boxes of ``masks`` with each corner coordinate jittered, as in the SAM paper.

    The noise of a coordinate is Gaussian with std ``noise_std`` times the box side along that
    axis, clipped to ``±noise_max`` pixels. Boxes are then clipped to the ``(W, H)`` frame and
    kept at least one pixel wide and high.

    Returns:
        ``(N, 4) float32`` xyxy boxes in pixels of the masks' frame.
    """
    masks = _as_masks(masks, "masks")
    height, width = masks.shape[1:]
    boxes = mask_boxes(masks).astype(np.float64)
    sides = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)
    scale = np.tile(sides, 2) * noise_std  # (x0, y0, x1, y1) use (w, h, w, h)
    noise = np.clip(rng.normal(size=boxes.shape) * scale, -noise_max, noise_max)
    boxes += noise
    boxes = clip_boxes(boxes, (height, width))
    boxes[:, 2] = np.maximum(boxes[:, 2], np.minimum(boxes[:, 0] + 1, width))
    boxes[:, 0] = np.minimum(boxes[:, 0], boxes[:, 2] - 1)
    boxes[:, 3] = np.maximum(boxes[:, 3], np.minimum(boxes[:, 1] + 1, height))
    boxes[:, 1] = np.minimum(boxes[:, 1], boxes[:, 3] - 1)
    return boxes.astype(np.float32)


def _uniform_pixel(region: np.ndarray, rng: np.random.Generator) -> tuple[float, float] | None:
    flat = np.flatnonzero(region)
    if not len(flat):
        return None
    index = int(flat[int(rng.integers(len(flat)))])
    y, x = divmod(index, region.shape[1])
    return float(x), float(y)


def random_points(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One point per mask, uniform over its pixels: ``(N, 2) float32`` xy (pixel indices).

    Raises:
        ValueError: an empty mask, naming its index.
    """
    masks = _as_masks(masks, "masks")
    points = np.zeros((len(masks), 2), np.float32)
    for i, mask in enumerate(masks):
        point = _uniform_pixel(mask, rng)
        if point is None:
            raise ValueError(f"masks[{i}] is empty")
        points[i] = point
    return points


def error_points(
    predicted: np.ndarray, target: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The next corrective point per object, uniform over the error region (training).

    A point on a false negative (in ``target``, not predicted) is positive (label 1); one on a
    false positive is negative (label 0). An object predicted exactly gets a padding point
    (label ``PADDING_LABEL``) at (0, 0).

    Args:
        predicted, target: ``(N, H, W) bool`` in the same frame.

    Returns:
        ``(N, 2) float32`` xy points and ``(N,) int64`` labels.
    """
    predicted = _as_masks(predicted, "predicted")
    target = _as_masks(target, "target")
    if predicted.shape != target.shape:
        raise ValueError(
            f"predicted {predicted.shape} and target {target.shape} must have the same shape"
        )
    points = np.zeros((len(target), 2), np.float32)
    labels = np.full(len(target), PADDING_LABEL, np.int64)
    for i in range(len(target)):
        point = _uniform_pixel(predicted[i] ^ target[i], rng)
        if point is not None:
            points[i] = point
            labels[i] = int(target[i, int(point[1]), int(point[0])])
    return points, labels
