"""The empty result every pipeline returns when it finds nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import supervision as sv


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
    import supervision as sv

    return sv.Detections(
        xyxy=np.zeros((0, 4), np.float32),
        mask=np.zeros((0, *size), bool),
        confidence=np.zeros(0, np.float32),
        class_id=np.zeros(0, np.int64),
        tracker_id=np.zeros(0, np.int64) if tracker_id else None,
        data={name: np.zeros(0, dtype) for name, dtype in (data or {}).items()},
    )
