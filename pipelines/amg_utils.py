"""Pure helpers of automatic mask generation: point grids, crops, scores, small regions.

Ports of ``segment_anything.utils.amg`` where the automatic mask generator must behave the same
(point grids, crop boxes, crop-edge test, stability score, small-region cleanup), with masks kept
as COCO RLE (:mod:`composeseg.rle`) instead of dense arrays once they are decided.
"""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import torch

from composeseg.transforms import build_point_grid


def build_all_layer_point_grids(
    n_per_side: int, n_layers: int, scale_per_layer: int
) -> list[np.ndarray]:
    """One normalised grid per crop layer; layer i has ``n_per_side / scale_per_layer**i``."""
    return [build_point_grid(int(n_per_side / (scale_per_layer**i))) for i in range(n_layers + 1)]


def generate_crop_boxes(
    image_size: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[list[int]], list[int]]:
    """Crop boxes (xyxy ints, pixels of the ``(H, W)`` image) and their layer index.

    Layer 0 is the whole image; layer i >= 1 has ``(2**i)**2`` overlapping crops (Meta's
    ``generate_crop_boxes``, same rounding).
    """
    height, width = image_size
    short_side = min(height, width)
    boxes, layers = [[0, 0, width, height]], [0]

    def crop_len(orig_len: int, n_crops: int, overlap: int) -> int:
        return math.ceil((overlap * (n_crops - 1) + orig_len) / n_crops)

    for layer in range(n_layers):
        n_crops = 2 ** (layer + 1)
        overlap = int(overlap_ratio * short_side * (2 / n_crops))
        crop_w = crop_len(width, n_crops, overlap)
        crop_h = crop_len(height, n_crops, overlap)
        x0s = [int((crop_w - overlap) * i) for i in range(n_crops)]
        y0s = [int((crop_h - overlap) * i) for i in range(n_crops)]
        for x0, y0 in product(x0s, y0s):
            boxes.append([x0, y0, min(x0 + crop_w, width), min(y0 + crop_h, height)])
            layers.append(layer + 1)
    return boxes, layers


def is_box_near_crop_edge(
    boxes: np.ndarray, crop_box: list[int], image_box: list[int], atol: float = 20.0
) -> np.ndarray:
    """``(N,) bool``: the box (xyxy, original image pixels) touches a crop edge that is not an
    edge of the image, within ``atol`` pixels."""
    crop = np.asarray(crop_box, np.float32)[None]
    full = np.asarray(image_box, np.float32)[None]
    boxes = boxes.astype(np.float32)
    near_crop = np.abs(boxes - crop) <= atol
    near_image = np.abs(boxes - full) <= atol
    return np.asarray((near_crop & ~near_image).any(axis=1))


def stability_score_np(logits: np.ndarray, mask_threshold: float, offset: float) -> np.ndarray:
    """Stability score of ``(N, ...)`` float32 logit maps, ``(N,) float32``: the IoU of the
    masks thresholded at ``mask_threshold ± offset`` (the high one lies inside the low one, so
    it is a ratio of counts; an all-negative map gives NaN, as in Meta's code).

    NumPy counts booleans several times faster than torch on CPU; the float32 division is the
    one torch does, so scores match Meta's bit for bit.
    """
    flat = logits.reshape(len(logits), -1)
    inner = np.count_nonzero(flat > (mask_threshold + offset), axis=1)
    outer = np.count_nonzero(flat > (mask_threshold - offset), axis=1)
    return (torch.from_numpy(inner) / torch.from_numpy(outer)).numpy().astype(np.float32)


def uncrop_mask(mask: np.ndarray, crop_box: list[int], image_size: tuple[int, int]) -> np.ndarray:
    """Paste an ``(h, w)`` crop-frame mask into a zero ``(H, W) bool`` image mask."""
    x0, y0, x1, y1 = crop_box
    if (x0, y0, x1, y1) == (0, 0, image_size[1], image_size[0]):
        return mask
    full = np.zeros(image_size, bool)
    full[y0:y1, x0:x1] = mask
    return full


def remove_small_regions(
    mask: np.ndarray, area_thresh: float, mode: str
) -> tuple[np.ndarray, bool]:
    """Fill holes (``mode="holes"``) or drop islands (``"islands"``) smaller than
    ``area_thresh`` pixels in an ``(H, W) bool`` mask (8-connectivity, OpenCV).

    Returns the new mask and whether it changed. If every island is small, the largest stays
    (Meta's ``remove_small_regions``).
    """
    import cv2

    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == "holes"
    working = (holes ^ mask).astype(np.uint8)
    n_labels, regions, stats, _ = cv2.connectedComponentsWithStats(working, connectivity=8)
    sizes = stats[:, -1][1:]
    small = [i + 1 for i, s in enumerate(sizes) if s < area_thresh]
    if not small:
        return mask, False
    fill = [0, *small]
    if not holes:
        fill = [i for i in range(n_labels) if i not in fill]
        if not fill:
            fill = [int(np.argmax(sizes)) + 1]
    return np.isin(regions, fill), True
