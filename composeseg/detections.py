"""Results as ``supervision.Detections``: the one assembly every pipeline uses.

Masks and the prompts (or detector rows) they came from become one ``Detections`` here, so
every pipeline fills the same columns the same way:

- ``xyxy (N, 4) float32``: xyxy pixels of the original image, ``x1, y1`` exclusive
  (:mod:`composeseg.geometry`): given boxes, else the prompt's box, else the detector's box of a
  point prompt (``data["detector_xyxy"]``), else the mask's tight box.
- ``mask (N, H, W) bool`` (None when masks are kept as RLE in ``data["rle"]``).
- ``confidence (N,) float32``, **the one rule**: a detector's score times SAM's mask score
  (predicted IoU, clipped to [0, 1]) when both exist; the mask score alone when SAM was
  prompted without a score (points, boxes, a grid); the detector's score alone when no mask
  score exists (SAM 3 concepts, SAM 2 propagation, text ranking).
- ``class_id``, ``tracker_id``: from the prompts unless given.
- ``data``: every data column of the prompts (the detector's), then ``detector_score`` and
  ``mask_score`` where known, then the caller's extra columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import supervision as sv

    from composeseg.prompts import Prompts

DETECTOR_XYXY = "detector_xyxy"
"""Prompts data column: the detector's box of an object prompted by a point (a box that is
reported, not fed to SAM)."""


def confidence(detector_score: np.ndarray | None, mask_score: np.ndarray | None) -> np.ndarray:
    """The one confidence rule (see the module docstring), ``(N,) float32``."""
    if detector_score is not None and mask_score is not None:
        return (detector_score * np.clip(mask_score, 0, 1)).astype(np.float32)
    if mask_score is not None:
        return np.asarray(mask_score, np.float32)
    if detector_score is not None:
        return np.asarray(detector_score, np.float32)
    raise ValueError("confidence needs a detector score, a mask score or both")


def assemble(
    masks: np.ndarray | None,
    *,
    prompts: Prompts | None = None,
    mask_score: np.ndarray | None = None,
    detector_score: np.ndarray | None = None,
    xyxy: np.ndarray | None = None,
    class_id: np.ndarray | None = None,
    tracker_id: np.ndarray | None = None,
    data: Mapping[str, Any] | None = None,
) -> sv.Detections:
    """Build the ``Detections`` of N objects.

    Args:
        masks: ``(N, H, W) bool`` in pixels of the original image; None when the masks travel
            as RLE in ``data["rle"]`` (then ``xyxy`` is required).
        prompts: the N prompts the masks answer: boxes, ``confidence`` (the detector's score),
            ``class_id``, ``tracker_id`` and data columns are taken from them.
        mask_score: ``(N,)`` SAM's predicted IoU of each mask.
        detector_score: ``(N,)`` overrides ``prompts.confidence``.
        xyxy: ``(N, 4)`` boxes overriding the prompts' and the masks' boxes.
        class_id, tracker_id: ``(N,)`` int overriding the prompts'.
        data: extra ``(N,)`` columns, added last.
    """
    import supervision as sv

    if prompts is not None:
        detector_score = prompts.confidence if detector_score is None else detector_score
        class_id = prompts.class_id if class_id is None else class_id
        tracker_id = prompts.tracker_id if tracker_id is None else tracker_id
    columns: dict[str, Any] = {}
    if prompts is not None:
        columns |= {k: np.asarray(v) for k, v in prompts.data.items() if k != DETECTOR_XYXY}
    if detector_score is not None:
        detector_score = np.asarray(detector_score, np.float32)
        columns["detector_score"] = detector_score
    if mask_score is not None:
        mask_score = np.asarray(mask_score, np.float32)
        columns["mask_score"] = mask_score
    columns |= dict(data or {})
    boxes = _boxes(masks, prompts, xyxy)
    n = len(boxes)
    if detector_score is None and mask_score is None:
        detector_score = np.ones(n, np.float32)
    return sv.Detections(
        xyxy=boxes,
        mask=masks,
        confidence=confidence(detector_score, mask_score),
        class_id=None if class_id is None else np.asarray(class_id, np.int64),
        tracker_id=None if tracker_id is None else np.asarray(tracker_id, np.int64),
        data=columns,
    )


def _boxes(masks: np.ndarray | None, prompts: Prompts | None, xyxy: np.ndarray | None) -> Any:
    if xyxy is None and prompts is not None:
        if prompts.boxes is not None:
            xyxy = prompts.boxes
        elif DETECTOR_XYXY in prompts.data:
            xyxy = prompts.data[DETECTOR_XYXY]
    if xyxy is None:
        if masks is None:
            raise ValueError("without masks, give the boxes (xyxy)")
        from composeseg.geometry import tight_boxes

        return tight_boxes(masks)
    return np.asarray(xyxy, np.float32).reshape(-1, 4)


def empty_detections(
    size: tuple[int, int], data: Mapping[str, type] | None = None, *, tracker_id: bool = False
) -> sv.Detections:
    """A ``supervision.Detections`` with no rows but every column a non-empty result has.

    Args:
        size: ``(H, W)`` of the image: ``mask`` is ``(0, H, W) bool``, so code that stacks or
            draws masks needs no special case.
        data: ``data`` columns and their dtypes (e.g. ``{"mask_score": np.float32}``).
        tracker_id: add an empty ``int64`` ``tracker_id`` column (video pipelines).
    """
    columns: dict[str, Any] = {name: np.zeros(0, dtype) for name, dtype in (data or {}).items()}
    return assemble(
        np.zeros((0, *size), bool),
        class_id=np.zeros(0, np.int64),
        tracker_id=np.zeros(0, np.int64) if tracker_id else None,
        data=columns,
    )
