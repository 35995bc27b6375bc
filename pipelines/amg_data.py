"""Kept masks between the stages of automatic mask generation, and their final form.

:class:`MaskSet` holds decided masks as COCO RLE with their scores; the helpers here de-duplicate
them (box NMS), clean them (small regions) and turn them into ``supervision.Detections``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from composeseg import rle
from composeseg.pipelines.amg_utils import remove_small_regions, uncrop_mask
from composeseg.rle import Rle

if TYPE_CHECKING:
    import supervision as sv


@dataclass
class MaskSet:
    """Kept masks between stages (one row per mask).

    Attributes:
        rles: COCO RLEs, each in the frame ``frames[i]`` (a crop, or the whole image).
        frames: ``(N, 4) int64`` xyxy box of the image region each RLE covers.
        boxes: ``(N, 4) float32`` xyxy, pixels of the original image, max inclusive.
        iou: ``(N,) float32`` predicted IoU.
        stability: ``(N,) float32`` stability score.
        points: ``(N, 2) float32`` xy prompt point, pixels of the original image.
        crop_boxes: ``(N, 4) int64`` xyxy crop each mask was predicted in.
        logits: ``(N, M, M) float32`` low-res logits (kept only on request, for edges).
        input_sizes: ``(N, 2) int64`` (h, w) of the crop inside the model frame.
    """

    rles: list[Rle]
    frames: np.ndarray
    boxes: np.ndarray
    iou: np.ndarray
    stability: np.ndarray
    points: np.ndarray
    crop_boxes: np.ndarray
    logits: torch.Tensor | None = None
    input_sizes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rles)

    def select(self, index: np.ndarray) -> MaskSet:
        """Rows ``index`` (int indices, in that order, or a bool mask)."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        values: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                values[f.name] = None
            elif isinstance(value, list):
                values[f.name] = [value[i] for i in index]
            elif isinstance(value, torch.Tensor):
                values[f.name] = value[torch.as_tensor(index, dtype=torch.long)]
            else:
                values[f.name] = value[index]
        return MaskSet(**values)

    @staticmethod
    def concatenate(parts: list[MaskSet]) -> MaskSet:
        if not parts:
            return MaskSet.empty()
        values: dict[str, Any] = {}
        for f in fields(MaskSet):
            items = [getattr(p, f.name) for p in parts]
            if f.name == "rles":
                values[f.name] = [r for p in parts for r in p.rles]
            elif any(item is None for item in items):
                values[f.name] = None
            elif isinstance(items[0], torch.Tensor):
                values[f.name] = torch.cat(items)
            else:
                values[f.name] = np.concatenate(items)
        return MaskSet(**values)

    @staticmethod
    def empty() -> MaskSet:
        return MaskSet(
            rles=[],
            frames=np.zeros((0, 4), np.int64),
            boxes=np.zeros((0, 4), np.float32),
            iou=np.zeros(0, np.float32),
            stability=np.zeros(0, np.float32),
            points=np.zeros((0, 2), np.float32),
            crop_boxes=np.zeros((0, 4), np.int64),
        )

    def full_mask(self, i: int, image_size: tuple[int, int]) -> np.ndarray:
        """Mask ``i`` as ``(H, W) bool`` over the whole image."""
        return uncrop_mask(rle.decode(self.rles[i]), self.frames[i].tolist(), image_size)


def box_nms(boxes: np.ndarray, scores: np.ndarray | torch.Tensor, iou_thresh: float) -> np.ndarray:
    """Indices kept by class-agnostic box NMS, by decreasing score (torchvision)."""
    from torchvision.ops import batched_nms

    if not len(boxes):
        return np.zeros(0, np.int64)
    boxes_t = torch.as_tensor(boxes).float()
    keep = batched_nms(
        boxes_t, torch.as_tensor(scores), torch.zeros(len(boxes_t)), iou_threshold=iou_thresh
    )
    return keep.numpy()


def remove_small_regions_and_nms(
    data: MaskSet, image_size: tuple[int, int], min_area: int, nms_thresh: float
) -> MaskSet:
    """Fill small holes, drop small islands, then NMS again preferring untouched masks
    (Meta's ``postprocess_small_regions``; one full-size mask at a time)."""
    new_rles: list[Rle | None] = []
    boxes = data.boxes.copy()
    unchanged = np.ones(len(data), np.float32)
    for i in range(len(data)):
        mask = data.full_mask(i, image_size)
        mask, holes = remove_small_regions(mask, min_area, "holes")
        mask, islands = remove_small_regions(mask, min_area, "islands")
        if holes or islands:
            unchanged[i] = 0.0
            encoded = rle.encode(mask[None])[0]
            new_rles.append(encoded)
            boxes[i] = rle.boxes_inclusive([encoded])[0]
        else:
            new_rles.append(None)
    keep = box_nms(boxes, unchanged, nms_thresh)
    height, width = image_size
    for i in keep:
        cleaned = new_rles[i]
        if cleaned is not None:
            data.rles[i] = cleaned
            data.frames[i] = (0, 0, width, height)
            data.boxes[i] = boxes[i]
    return data.select(keep)


def to_detections(
    data: MaskSet, image_size: tuple[int, int], output: str = "mask"
) -> sv.Detections:
    """A :class:`MaskSet` as ``supervision.Detections`` over an ``(H, W)`` image; confidence
    is the predicted IoU, as in Meta's generator."""
    from composeseg.detections import assemble

    height, width = image_size
    payload: dict[str, Any] = {
        "stability_score": data.stability.astype(np.float32),
        "point": data.points.astype(np.float32),
        "crop_box": data.crop_boxes.astype(np.int64),
    }
    mask = None
    if output == "rle":
        rles = np.empty(len(data), dtype=object)
        for i in range(len(data)):
            whole = data.frames[i].tolist() == [0, 0, width, height]
            native = data.rles[i] if whole else rle.encode(data.full_mask(i, image_size)[None])[0]
            rles[i] = rle.to_json(native)
        payload["rle"] = rles
    else:
        mask = np.zeros((len(data), height, width), bool)
        for i in range(len(data)):
            mask[i] = data.full_mask(i, image_size)
    return assemble(mask, xyxy=data.boxes, mask_score=data.iou, data=payload)
