"""``load_detector``: a detector from a command-line style SPEC string."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from composeseg.adapters.options import PromptOptions
from composeseg.prompts import Prompts

_ULTRALYTICS_SUFFIXES = (".pt", ".yaml", ".yml", ".onnx", ".engine", ".torchscript")


def load_detector(
    spec: str | os.PathLike,
    *,
    labels: Sequence[str] | None = None,
    threshold: float = 0.3,
    dataset: str | os.PathLike | None = None,
    options: PromptOptions | None = None,
) -> Callable[[Any], Prompts]:
    """Build a detector from ``spec``:

    - ``*.json``: a COCO dataset (its boxes as oracle prompts) or a COCO results file (then
      ``dataset`` names the COCO dataset it refers to) -> :class:`CocoBoxes`;
    - ``*.pt`` / ``*.yaml`` / ``*.onnx`` …: ultralytics weights -> :class:`UltralyticsDetector`
      (``threshold`` is its ``conf``);
    - anything else: a transformers hub id or ``save_pretrained`` directory ->
      :class:`TransformersDetector` (``labels`` are the text queries of zero-shot models).

    ``labels`` on a closed-set detector keeps only those classes.
    """
    text = str(spec)
    suffix = Path(text).suffix.lower()
    if suffix == ".json":
        from composeseg.adapters.coco import CocoBoxes

        return CocoBoxes(text, dataset=dataset, options=_with_classes(options, labels))
    if suffix in _ULTRALYTICS_SUFFIXES:
        from composeseg.adapters.ultralytics import UltralyticsDetector

        return UltralyticsDetector(text, conf=threshold, options=_with_classes(options, labels))
    from composeseg.adapters.transformers_detectors import TransformersDetector

    return TransformersDetector(text, labels=labels, threshold=threshold, options=options)


def _with_classes(options: PromptOptions | None, labels: Sequence[str] | None) -> PromptOptions:
    from dataclasses import replace

    base = options or PromptOptions()
    return replace(base, classes=tuple(labels)) if labels else base
