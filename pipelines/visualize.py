"""Pictures of results, drawn with supervision's annotators."""

from __future__ import annotations

import numpy as np
import supervision as sv


def annotate(
    image: np.ndarray,
    detections: sv.Detections,
    *,
    labels: list[str] | None = None,
    opacity: float = 0.45,
) -> np.ndarray:
    """Draw masks, boxes and labels on an ``(H, W, 3) uint8`` RGB image; returns a new array.

    ``opacity`` is the masks' (0: outlines only, 1: solid).

    Colours follow ``tracker_id`` when present, else ``class_id``, else the detection index, so
    the same object keeps its colour across frames. ``labels`` default to
    ``data["class_name"]`` (or the class id) with the confidence.
    """
    if len(detections) == 0:
        return image.copy()
    lookup = (
        sv.ColorLookup.TRACK
        if detections.tracker_id is not None
        else sv.ColorLookup.CLASS
        if detections.class_id is not None
        else sv.ColorLookup.INDEX
    )
    scene = image.copy()
    if detections.mask is not None:
        scene = sv.MaskAnnotator(opacity=opacity, color_lookup=lookup).annotate(scene, detections)
        scene = sv.PolygonAnnotator(thickness=1, color_lookup=lookup).annotate(scene, detections)
    else:
        scene = sv.BoxAnnotator(thickness=2, color_lookup=lookup).annotate(scene, detections)
    text = labels if labels is not None else default_labels(detections)
    scale = max(0.35, min(image.shape[:2]) / 1200)
    label_annotator = sv.LabelAnnotator(
        color_lookup=lookup, text_scale=scale, text_padding=3, smart_position=True
    )
    return label_annotator.annotate(scene, detections, labels=text)


def default_labels(detections: sv.Detections) -> list[str]:
    """``"name 0.87"`` per detection (``#i`` when there is no class)."""
    names = detections.data.get("class_name")
    out = []
    for i in range(len(detections)):
        if names is not None:
            head = str(names[i])
        elif detections.class_id is not None:
            head = f"class {detections.class_id[i]}"
        else:
            head = f"#{i}"
        if detections.tracker_id is not None:
            head = f"{head} id{detections.tracker_id[i]}"
        if detections.confidence is not None:
            head = f"{head} {detections.confidence[i]:.2f}"
        out.append(head)
    return out
