"""A simulated detector for instance-segmentation evaluation: ground-truth boxes, degraded.

Measures how a box-prompted pipeline copes with a detector's typical errors without running
one: each box edge moves by a Gaussian of ``jitter`` x the box side, a ``drop`` share of the
objects is missed, and each kept box is scored by its IoU with the true box (a detector whose
confidence tracks its localisation).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def simulated_detections(
    gt: dict[str, Any], jitter: float, drop: float, seed: int = 0
) -> list[dict[str, Any]]:
    """COCO detection results made from the ground truth ``gt`` (a COCO dataset dict).

    Args:
        gt: COCO instances dict with ``images`` (``width``, ``height``) and ``annotations``
            (``bbox`` xywh in pixels). Crowd annotations are skipped.
        jitter: std of each edge's displacement, as a fraction of the box's width / height.
        drop: probability that an object gets no box.
        seed: seed of the displacements and drops.

    Returns:
        ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]``, boxes clipped to the
        image, the score the box IoU with the ground truth.
    """
    if jitter < 0 or not 0 <= drop <= 1:
        raise ValueError(f"need jitter >= 0 and drop in [0, 1], got {jitter}, {drop}")
    rng = np.random.default_rng(seed)
    sizes = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    out = []
    for ann in gt["annotations"]:
        if ann.get("iscrowd") or rng.random() < drop:
            continue
        x, y, w, h = ann["bbox"]
        x0, y0, x1, y1 = np.array([x, y, x + w, y + h]) + rng.normal(0, jitter, 4) * [w, h, w, h]
        width, height = sizes[ann["image_id"]]
        x0, x1 = np.clip([x0, x1], 0, width)
        y0, y1 = np.clip([y0, y1], 0, height)
        if x1 - x0 < 1 or y1 - y0 < 1:
            continue
        inter = max(0.0, min(x1, x + w) - max(x0, x)) * max(0.0, min(y1, y + h) - max(y0, y))
        iou = inter / ((x1 - x0) * (y1 - y0) + w * h - inter)
        out.append(
            {
                "image_id": ann["image_id"],
                "category_id": ann["category_id"],
                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                "score": float(iou),
            }
        )
    return out
