"""``supervision.Detections`` -> ``Prompts`` (read by attribute; supervision is not imported)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from composeseg.adapters.options import PromptOptions, build_prompts, resolve_options
from composeseg.prompts import Prompts


def from_detections(
    detections: Any,
    *,
    image_size: tuple[int, int] | None = None,
    names: Mapping[int, str] | Sequence[str] | None = None,
    options: PromptOptions | None = None,
    **option_overrides: Any,
) -> Prompts:
    """Turn ``supervision.Detections`` into :class:`~composeseg.Prompts`.

    Reads ``xyxy (N, 4)`` pixels, ``confidence``, ``class_id``, ``tracker_id``, ``mask
    (N, H, W)`` and ``data["class_name"]`` (supervision's connectors fill it).

    Args:
        detections: a ``supervision.Detections`` (anything with those attributes).
        image_size: ``(H, W)``; default: the mask size when there are masks. When known, boxes
            are clipped to the image.
        names: the detector's vocabulary (dict id -> name, or a list), to name classes and
            validate ``classes=`` names.
        options, option_overrides: :class:`~composeseg.adapters.PromptOptions`.
    """
    if not hasattr(detections, "xyxy"):
        raise TypeError(f"expected supervision.Detections, got {type(detections).__name__}")
    mask = getattr(detections, "mask", None)
    if image_size is None and mask is not None and np.ndim(mask) == 3:
        image_size = (int(mask.shape[1]), int(mask.shape[2]))
    data = getattr(detections, "data", None) or {}
    class_names = data.get("class_name")
    vocabulary = dict(enumerate(names)) if isinstance(names, Sequence) else names
    return build_prompts(
        detections.xyxy,
        scores=detections.confidence,
        class_ids=detections.class_id,
        class_names=None if class_names is None else [str(c) for c in class_names],
        names=vocabulary,
        masks=mask,
        tracker_ids=detections.tracker_id,
        image_size=image_size,
        options=resolve_options(options, option_overrides),
        source="supervision.Detections",
    )
