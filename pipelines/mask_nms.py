"""Non-maximum suppression on masks, across classes, that also catches nested duplicates.

Two open-vocabulary queries often find one object twice ("cat" and "kitten"), and a grounder
may box a whole object for one phrase and most of it for another: the two masks then have a
modest IoU although one lies inside the other. Box NMS misses both cases; this does not.
"""

from __future__ import annotations

import numpy as np

_MAX_SIDE = 256  # overlaps are measured on masks shrunk to at most this side: fast, and exact
# enough to tell a duplicate from a neighbour


def mask_overlaps(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairwise overlap of ``(N, H, W) bool`` masks.

    Returns:
        ``(iou, containment, area_ratio)``, each ``(N, N) float32``: IoU; the share of the
        smaller mask inside the larger; smaller area / larger area.
    """
    n = len(masks)
    if n == 0:
        empty = np.zeros((0, 0), np.float32)
        return empty, empty, empty
    h, w = masks.shape[1:]
    step = max(1, int(np.ceil(max(h, w) / _MAX_SIDE)))
    flat = masks[:, ::step, ::step].reshape(n, -1).astype(np.float32)
    inter = flat @ flat.T
    area = np.diag(inter).copy()
    union = area[:, None] + area[None, :] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0)
    smaller = np.minimum(area[:, None], area[None, :])
    larger = np.maximum(area[:, None], area[None, :])
    containment = np.where(smaller > 0, inter / np.maximum(smaller, 1), 0)
    ratio = np.where(larger > 0, smaller / np.maximum(larger, 1), 0)
    return iou.astype(np.float32), containment.astype(np.float32), ratio.astype(np.float32)


def mask_nms(
    masks: np.ndarray,
    scores: np.ndarray,
    *,
    iou_threshold: float = 0.7,
    containment_threshold: float = 0.9,
    min_area_ratio: float = 0.5,
) -> np.ndarray:
    """Indices of the masks to keep, best score first.

    A mask is dropped when a better-scored kept mask either overlaps it with IoU above
    ``iou_threshold``, or nests with it (``containment_threshold`` of the smaller inside the
    larger) while being at least ``min_area_ratio`` of its size: a duplicate, not a part.
    A small part well inside a large object (a wheel in a car) survives.

    Args:
        masks: ``(N, H, W) bool``.
        scores: ``(N,)``, higher is better.

    Returns:
        ``(K,) int64`` indices into ``masks``, in decreasing score order.
    """
    masks = np.asarray(masks, bool)
    scores = np.asarray(scores, np.float64).reshape(-1)
    if masks.ndim != 3 or len(masks) != len(scores):
        raise ValueError(f"masks (N, H, W) and scores (N,) disagree: {masks.shape}, {scores.shape}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    iou, containment, ratio = mask_overlaps(masks)
    duplicate = (iou > iou_threshold) | (
        (containment >= containment_threshold) & (ratio >= min_area_ratio)
    )
    order = np.argsort(-scores, kind="stable")
    suppressed = np.zeros(len(masks), bool)
    keep = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= duplicate[i]
    return np.asarray(keep, np.int64)
