"""Prompt-to-mask quality with the SAM paper's protocols: box, one point, interactive points.

- **box**: the tight ground-truth box of each instance, one mask.
- **one point**: the point farthest from the instance boundary (maximum of the distance
  transform inside the mask; the image border counts as boundary); 3 candidate masks, scored
  both as the best of the three (oracle) and as the most confident one.
- **interactive**: the first point as above (most confident of 3 masks); each next point is
  placed farthest from the boundary of the larger error region, positive on a false negative,
  negative on a false positive, and the previous low-res logits are fed back as mask prompt.

``zoom`` runs every protocol through :func:`composeseg.zoom.segment_zoomed`: each object in its
own window, ``zoom`` times its extent (the box; for points, a first pass's masks, then the
current mask and the clicks). Its interactive clicks feed no mask prompt back, since the
previous logits belong to another window; each click's decode is refined in its window instead.

Works on any model :func:`composeseg.load_sam` loads and on any source of ``(image, masks)``:
a COCO-format folder (:func:`coco_instances`) or generated scenes (:func:`scene_instances`).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from composeseg.geometry import paired_mask_iou

if TYPE_CHECKING:
    from composeseg.prediction import MaskPrediction
    from composeseg.sam import Sam
    from composeseg.synthetic import SceneConfig

PADDING = -1


def farthest_point(mask: np.ndarray) -> tuple[float, float] | None:
    """The pixel of ``(H, W) bool`` ``mask`` farthest from its boundary, as ``(x, y)``.

    Pixels outside the image count as outside the mask, so an object cut by the image border
    gets its point away from that border too. Ties go to the first pixel in row-major order.
    Returns None for an empty mask.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    if not mask.any():
        return None
    padded = np.pad(mask.astype(np.uint8), 1)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return float(x), float(y)


def next_click(predicted: np.ndarray, target: np.ndarray) -> tuple[tuple[float, float], int] | None:
    """The next corrective click of the interactive protocol, or None when nothing is wrong.

    Returns ``((x, y), label)``: label 1 at the point farthest from the boundary of the false
    negatives, or 0 at that of the false positives, whichever lies deeper inside its region.
    """
    false_neg = target & ~predicted
    false_pos = predicted & ~target
    best: tuple[float, int, np.ndarray] | None = None
    for label, region in ((1, false_neg), (0, false_pos)):
        if not region.any():
            continue
        padded = np.pad(region.astype(np.uint8), 1)
        dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
        depth = float(dist.max())
        if best is None or depth > best[0]:  # ties keep the false negative
            best = (depth, label, dist)
    if best is None:
        return None
    _, label, dist = best
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return (float(x), float(y)), label


@dataclass(frozen=True)
class PointPromptMetrics:
    """Mean IoU over all instances under each protocol.

    Attributes:
        box: tight ground-truth box, SAM's single mask (the paper's protocol).
        box_fit: the same box, the mask of SAM's four that fits it best, refined once
            (``Sam.segment(box_fit=True)``, :mod:`composeseg.box_fit`).
        one_point_oracle: one farthest-from-boundary point, best of the 3 masks.
        one_point_confident: same point, the mask with the highest predicted IoU.
        interactive: after ``interactive_points`` clicks.
        interactive_points: clicks in the interactive protocol.
        instances, images: how much was evaluated.
        zoom: the windows' context factor when objects were segmented zoomed, else None.
    """

    box: float
    box_fit: float
    one_point_oracle: float
    one_point_confident: float
    interactive: float
    interactive_points: int
    instances: int
    images: int
    zoom: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def add_clicks(
    points: np.ndarray, labels: np.ndarray, predicted: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(N, P, 2)`` points and ``(N, P)`` labels with each object's :func:`next_click` on its
    ``(N, H, W) bool`` predicted mask appended: ``(N, P + 1, 2)`` and ``(N, P + 1)``, padding
    (label -1) where the mask has nothing wrong."""
    new_points = np.zeros((len(targets), 1, 2), np.float32)
    new_labels = np.full((len(targets), 1), PADDING, np.int64)
    for i, (mask, target) in enumerate(zip(predicted, targets, strict=True)):
        click = next_click(mask, target)
        if click is not None:
            new_points[i, 0], new_labels[i, 0] = click
    points = np.concatenate([points, new_points], axis=1)
    return points, np.concatenate([labels, new_labels], axis=1)


def image_ious(
    sam: Sam,
    image: np.ndarray,
    masks: np.ndarray,
    *,
    interactive_points: int = 3,
    zoom: float | None = None,
) -> dict[str, np.ndarray]:
    """Per-instance IoU of one image under each protocol.

    Args:
        image: ``(H, W, 3) uint8``.
        masks: ``(N, H, W) bool`` non-empty ground-truth masks.
        zoom: segment each object in a window this many times its extent
            (:func:`composeseg.zoom.segment_zoomed`); None: the whole image, one encoder pass.

    Returns:
        ``{"box", "box_fit", "one_point_oracle", "one_point_confident", "interactive"}``
        -> ``(N,)``.
    """
    from composeseg.geometry import tight_boxes
    from composeseg.zoom import segment_zoomed

    if interactive_points < 1:
        raise ValueError(f"interactive_points must be >= 1, got {interactive_points}")
    masks = np.asarray(masks, bool)
    if masks.ndim != 3 or masks.shape[1:] != image.shape[:2]:
        raise ValueError(
            f"masks must be (N, {image.shape[0]}, {image.shape[1]}), got {masks.shape}"
        )
    empty = ~masks.reshape(len(masks), -1).any(1)
    if empty.any():
        raise ValueError(f"masks[{int(np.argmax(empty))}] is empty")
    embedding = sam.embed(image)

    def segment(extents: Any = None, **prompts: Any) -> MaskPrediction:
        if zoom is None:
            return sam.segment(embedding, **prompts)
        prompts.pop("mask_input", None)
        return segment_zoomed(
            sam, image, extents=extents, context=zoom, embedding=embedding, **prompts
        )

    boxes = tight_boxes(masks)
    box = segment(boxes=boxes)
    box_fit = segment(boxes=boxes, box_fit=True)
    points = np.array([farthest_point(m) for m in masks], np.float32).reshape(-1, 1, 2)
    labels = np.ones((len(masks), 1), np.int64)
    one = segment(points=points, point_labels=labels, multimask=True)
    one_iou = paired_mask_iou(one.dense(), masks)
    confident = one.scores.argmax(1)
    rows = np.arange(len(masks))
    current = one.dense()[rows, confident]
    logits = one.logits[rows, confident]
    for _ in range(interactive_points - 1):
        points, labels = add_clicks(points, labels, current, masks)
        # a lost mask leaves the window to the clicks (segment_zoomed always adds them)
        extents = np.where(current.reshape(len(masks), -1).any(1)[:, None], tight_boxes(current), 0)
        step = segment(extents, points=points, point_labels=labels, mask_input=logits)
        current, logits = step.dense()[:, 0], step.logits[:, 0]
    return {
        "box": paired_mask_iou(box.dense()[:, 0], masks),
        "box_fit": paired_mask_iou(box_fit.dense()[:, 0], masks),
        "one_point_oracle": one_iou.max(1),
        "one_point_confident": one_iou[rows, confident],
        "interactive": paired_mask_iou(current, masks),
    }


def point_prompt_miou(
    sam: Sam,
    samples: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    interactive_points: int = 3,
    zoom: float | None = None,
    progress: bool = False,
    total: int | None = None,
) -> PointPromptMetrics:
    """Mean IoU of ``sam`` over every instance of ``samples`` under each protocol.

    Args:
        sam: any loaded model (:func:`composeseg.load_sam`).
        samples: ``(image (H, W, 3) uint8, masks (N, H, W) bool)`` pairs, e.g. from
            :func:`coco_instances` or :func:`scene_instances`. Images without instances and
            empty masks are skipped.
        interactive_points: clicks of the interactive protocol (the paper reports 1 to 9).
        zoom: segment each object in its own window (:func:`image_ious`); None: whole image.
        progress: show a progress bar over images.
        total: number of samples, for the bar's ETA when ``samples`` has no length.

    Raises:
        ValueError: no instance to evaluate.
    """
    from composeseg.progress import progress as bar

    collected: dict[str, list[np.ndarray]] = {}
    images = 0
    for image, masks in bar(samples, total=total, desc="eval points", unit="img", enabled=progress):
        masks = np.asarray(masks, bool)
        masks = masks[masks.reshape(len(masks), -1).any(1)] if len(masks) else masks
        if not len(masks):
            continue
        images += 1
        for name, values in image_ious(
            sam, image, masks, interactive_points=interactive_points, zoom=zoom
        ).items():
            collected.setdefault(name, []).append(values)
    if not collected:
        raise ValueError("no instance to evaluate: every image was empty")
    means = {name: float(np.concatenate(v).mean()) for name, v in collected.items()}
    return PointPromptMetrics(
        box=means["box"],
        box_fit=means["box_fit"],
        one_point_oracle=means["one_point_oracle"],
        one_point_confident=means["one_point_confident"],
        interactive=means["interactive"],
        interactive_points=interactive_points,
        instances=int(sum(len(v) for v in collected["box"])),
        images=images,
        zoom=zoom,
    )


def coco_instances(
    annotation_file: str | os.PathLike, image_dir: str | os.PathLike, *, max_images: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(image, masks)`` per image of a COCO-format dataset (crowd annotations skipped).

    ``max_images`` > 0 stops after that many images (in image-id order).
    """
    from pycocotools.coco import COCO

    from composeseg.coco import check_dataset, load_json
    from composeseg.image import load_image

    dataset = load_json(annotation_file, "COCO annotation file")
    check_dataset(dataset, str(annotation_file), need="segmentation")
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
    ids = sorted(coco.getImgIds())
    for count, image_id in enumerate(ids):
        if max_images and count >= max_images:
            return
        info = coco.imgs[image_id]
        image = load_image(Path(image_dir) / info["file_name"])
        anns = [a for a in coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        masks = [coco.annToMask(a).astype(bool) for a in anns]
        shape = (0, *image.shape[:2])
        yield image, (np.stack(masks) if masks else np.zeros(shape, bool))


def scene_instances(
    seeds: Iterable[int], config: SceneConfig | None = None, *, family: str = "training"
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(image, masks)`` of the generated scene of each seed in ``family``
    (:func:`~composeseg.evaluation.families.family_scene`; ``config`` for the ``"training"``
    family)."""
    from composeseg.evaluation.families import check_family, family_scene

    check_family(family)
    for seed in seeds:
        scene = family_scene(family, seed, config)
        yield scene.image, scene.masks()
