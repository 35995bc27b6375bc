"""Box and mask geometry: the one home of tight boxes, clipping and IoU.

One convention everywhere: boxes are ``(N, 4)`` xyxy in pixels of the original image, with
``x1, y1`` **exclusive** (a one-pixel mask at ``(x, y)`` has the box ``(x, y, x + 1, y + 1)``);
masks are ``(N, H, W) bool`` in the same pixels. The automatic mask generator alone reports
inclusive-max boxes, as Meta's does (:func:`composeseg.rle.boxes_inclusive`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


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


def clip_boxes(boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """``(N, 4)`` (or one ``(4,)``) xyxy boxes clipped to an ``(H, W)`` image: a new array
    of the same shape, float32 unless the boxes are float64."""
    height, width = image_size
    boxes = np.asarray(boxes)
    out = np.array(boxes, dtype=np.result_type(boxes.dtype, np.float32)).reshape(-1, 4)
    out[:, 0::2] = out[:, 0::2].clip(0, width)
    out[:, 1::2] = out[:, 1::2].clip(0, height)
    return out.reshape(boxes.shape)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M) float32`` IoU between ``(N, 4)`` and ``(M, 4)`` xyxy boxes (supervision's)."""
    import supervision as sv

    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)), np.float32)
    return np.asarray(sv.box_iou_batch(a, b), np.float32)


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M) float32`` IoU between ``(N, H, W)`` and ``(M, H, W)`` bool masks; 0 for two
    empty masks.

    One float32 matrix product: several times faster on CPU than supervision's
    ``mask_iou_batch``, which it matches.
    """
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    fa = np.asarray(a).reshape(len(a), -1).astype(np.float32)
    fb = np.asarray(b).reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-6), 0.0).astype(np.float32)


def paired_mask_iou(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """IoU of each of ``(N, ..., H, W)`` bool predictions with its own ``(N, H, W)`` target ->
    ``(N, ...)`` float64 (row i against target i only, unlike :func:`mask_iou`'s all pairs);
    two empty masks count as a perfect match (1.0)."""
    target = target.reshape(target.shape[0], *([1] * (predicted.ndim - 3)), *target.shape[1:])
    inter = (predicted & target).sum((-2, -1))
    union = (predicted | target).sum((-2, -1))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def mask_box_iou(masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """IoU between the tight box of each of ``(N, K, M, M) bool`` masks (K candidates per
    object, on any grid) and its object's ``(N, 4)`` xyxy box in the same grid's units:
    ``(N, K) float32``, 0 for an empty mask. Torch, so low-res candidates never leave the
    device."""
    import torch

    height, width = masks.shape[-2:]
    rows, cols = masks.any(dim=3), masks.any(dim=2)  # (N, K, M)
    ys = torch.arange(height, device=masks.device).float()
    xs = torch.arange(width, device=masks.device).float()
    big = float(max(height, width))
    x0 = torch.where(cols, xs, big).amin(-1)
    x1 = torch.where(cols, xs + 1, -1.0).amax(-1)
    y0 = torch.where(rows, ys, big).amin(-1)
    y1 = torch.where(rows, ys + 1, -1.0).amax(-1)
    b = boxes[:, None, :].float()
    iw = (torch.minimum(x1, b[..., 2]) - torch.maximum(x0, b[..., 0])).clamp(min=0)
    ih = (torch.minimum(y1, b[..., 3]) - torch.maximum(y0, b[..., 1])).clamp(min=0)
    inter = iw * ih
    area_m = (x1 - x0).clamp(min=0) * (y1 - y0).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area_m + area_b - inter).clamp(min=1e-6)
