"""One image's result of a folder run (the assembly of ``Detections`` lives in
:mod:`composeseg.detections`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import supervision as sv


@dataclass(frozen=True)
class ImageResult:
    """One image's output of :meth:`InstanceSegmentation.run`.

    Attributes:
        name: the image's file name (or ``image_<i>`` for arrays).
        detections: masks ``(N, H, W) bool``, boxes, classes and scores.
        image_size: ``(H, W)``.
        path: the source file, when the image came from one.
    """

    name: str
    detections: sv.Detections
    image_size: tuple[int, int]
    path: Path | None = None
