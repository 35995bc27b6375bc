"""Prompt adapters: turn detector, tracker, annotation and array outputs into ``Prompts``.

Installed as ``composeseg.adapters``. Each adapter reads a foreign result object by its
attributes, so importing this package imports no detector library; names resolve lazily.

A detector, for :class:`composeseg.pipelines.InstanceSegmentation`, is any callable
``image -> Prompts``; the classes here (and a plain function) all qualify.
"""

from __future__ import annotations

from composeseg._lazy import lazy_attributes

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "PromptOptions": "composeseg.adapters.options",
    "build_prompts": "composeseg.adapters.options",
    "BOX_FORMATS": "composeseg.adapters.arrays",
    "Letterbox": "composeseg.adapters.arrays",
    "convert_boxes": "composeseg.adapters.arrays",
    "from_boxes": "composeseg.adapters.arrays",
    "from_detections": "composeseg.adapters.sv_detections",
    "CocoBoxes": "composeseg.adapters.coco",
    "from_transformers": "composeseg.adapters.transformers_results",
    "TransformersDetector": "composeseg.adapters.transformers_detectors",
    "TextGrounder": "composeseg.adapters.grounding",
    "TransformersGrounder": "composeseg.adapters.grounding",
    "from_ultralytics": "composeseg.adapters.ultralytics",
    "UltralyticsDetector": "composeseg.adapters.ultralytics",
    "load_detector": "composeseg.adapters.spec",
    "ClipMatcher": "composeseg.adapters.clip",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
