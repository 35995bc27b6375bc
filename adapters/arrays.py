"""Plain ``(N, 4)`` box arrays in any common convention -> ``Prompts``.

The convention is always explicit (``format=``): guessing between xyxy and xywh from the numbers
is how boxes silently end up in the wrong place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from composeseg.adapters.options import PromptOptions, build_prompts, resolve_options
from composeseg.prompts import Prompts

BOX_FORMATS = ("xyxy", "xywh", "cxcywh", "xyxyn", "xywhn", "cxcywhn")
"""Accepted ``format=`` values; the ``n`` suffix means normalised to ``[0, 1]`` by W and H."""


@dataclass(frozen=True)
class Letterbox:
    """How a detector resized and padded the image before predicting boxes in its input frame.

    YOLO-style letterboxing scales the ``(H, W)`` image by ``ratio`` and pads it to
    ``input_size``; boxes predicted in that frame map back by removing the padding and dividing
    by the ratio.

    Attributes:
        input_size: ``(h, w)`` of the detector's input, in pixels.
        ratio: the scale applied to the original image; default ``min(h / H, w / W)``.
        pad: ``(left, top)`` padding in pixels; default: the padding split evenly on both
            sides (ultralytics' ``LetterBox(center=True)``).
    """

    input_size: tuple[int, int]
    ratio: float | None = None
    pad: tuple[float, float] | None = None

    def to_original(self, boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
        """Map ``(N, 4)`` xyxy boxes from the input frame to the ``(H, W)`` original image.

        Raises:
            ValueError: when the scaled image plus padding does not fit ``input_size``, or a
                parameter is not a positive finite number.
        """
        in_h, in_w = (float(v) for v in self.input_size)
        height, width = image_size
        if not (in_h > 0 and in_w > 0 and np.isfinite([in_h, in_w]).all()):
            raise ValueError(f"letterbox input_size must be positive, got {self.input_size}")
        ratio = self.ratio if self.ratio is not None else min(in_h / height, in_w / width)
        if not (np.isfinite(ratio) and ratio > 0):
            raise ValueError(f"letterbox ratio must be a positive number, got {self.ratio!r}")
        content_w, content_h = width * ratio, height * ratio
        if self.pad is None:
            left, top = (in_w - content_w) / 2, (in_h - content_h) / 2
        else:
            left, top = (float(v) for v in self.pad)
        # one pixel of slack: detectors round the resized size
        if left < -1 or top < -1 or left + content_w > in_w + 1 or top + content_h > in_h + 1:
            raise ValueError(
                f"letterbox does not fit: a {width}x{height} image scaled by {ratio:.4g} "
                f"({content_w:.1f}x{content_h:.1f}) with pad (left, top) = ({left:.1f}, "
                f"{top:.1f}) exceeds the {in_w:.0f}x{in_h:.0f} input"
            )
        offset = np.array([left, top, left, top], np.float32)
        return ((boxes - offset) / ratio).astype(np.float32)


def convert_boxes(boxes: Any, format: str, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """``(N, 4)`` boxes in ``format`` (see :data:`BOX_FORMATS`) -> ``(N, 4) float32`` xyxy.

    Normalised formats need ``image_size = (H, W)``.
    """
    if format not in BOX_FORMATS:
        raise ValueError(f"format must be one of {BOX_FORMATS}, got {format!r}")
    array = np.asarray(boxes, np.float32)
    if array.size == 0:
        return np.zeros((0, 4), np.float32)
    if array.ndim == 1 and array.shape == (4,):
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {array.shape}")
    base = format.rstrip("n")
    if base == "xywh":
        array = np.concatenate([array[:, :2], array[:, :2] + array[:, 2:]], axis=1)
    elif base == "cxcywh":
        half = array[:, 2:] / 2
        array = np.concatenate([array[:, :2] - half, array[:, :2] + half], axis=1)
    if format.endswith("n"):
        if image_size is None:
            raise ValueError(f"format {format!r} is normalised: pass image_size=(H, W)")
        height, width = image_size
        array = array * np.array([width, height, width, height], np.float32)
    return array.astype(np.float32)


def from_boxes(
    boxes: Any,
    *,
    format: str,
    image_size: tuple[int, int] | None = None,
    letterbox: Letterbox | None = None,
    scores: Any = None,
    class_ids: Any = None,
    class_names: Sequence[str] | None = None,
    names: Mapping[int, str] | Sequence[str] | None = None,
    tracker_ids: Any = None,
    masks: np.ndarray | None = None,
    options: PromptOptions | None = None,
    **option_overrides: Any,
) -> Prompts:
    """Box arrays -> :class:`~composeseg.Prompts`.

    Args:
        boxes: ``(N, 4)`` (or ``(4,)``) numbers in ``format``; pixels of the original image, of
            the letterboxed input when ``letterbox`` is given, or ``[0, 1]`` for ``...n``.
        format: one of :data:`BOX_FORMATS`, e.g. ``"xywh"`` for COCO, ``"cxcywhn"`` for YOLO
            label files.
        image_size: ``(H, W)`` of the original image: needed for normalised formats and
            letterboxing; when given, boxes are clipped to the image.
        letterbox: the detector's resize-and-pad, to map boxes back to the original image.
        scores, class_ids, tracker_ids: ``(N,)`` columns, optional.
        class_names: per-box names; or ``names``: the vocabulary (dict id -> name or list).
        masks: ``(N, H, W) bool`` detector masks, for ``points="mask"``.
        options, option_overrides: :class:`PromptOptions` (keywords override fields).
    """
    if letterbox is not None:
        if image_size is None:
            raise ValueError("letterbox needs image_size=(H, W) of the original image")
        if format.endswith("n"):
            xyxy = convert_boxes(boxes, format, tuple(letterbox.input_size))  # type: ignore[arg-type]
        else:
            xyxy = convert_boxes(boxes, format)
        xyxy = letterbox.to_original(xyxy, image_size)
    else:
        xyxy = convert_boxes(boxes, format, image_size)
    vocabulary = dict(enumerate(names)) if isinstance(names, Sequence) else names
    return build_prompts(
        xyxy,
        scores=scores,
        class_ids=class_ids,
        class_names=class_names,
        names=vocabulary,
        masks=masks,
        tracker_ids=tracker_ids,
        image_size=image_size,
        options=resolve_options(options, option_overrides),
        source="boxes",
    )
