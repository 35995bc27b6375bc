"""transformers detectors -> ``Prompts``: closed-set (DETR, RT-DETR, D-FINE, ...) through their
processors' post-processing, and zero-shot text detectors (OWLv2, OWL-ViT, Grounding DINO,
OmDet-Turbo) with fixed queries through :mod:`composeseg.adapters.grounding`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from composeseg.adapters.options import PromptOptions, resolve_options
from composeseg.adapters.transformers_results import from_transformers, zero_shot_model_types
from composeseg.device import pick_device
from composeseg.prompts import Prompts


class TransformersDetector:
    """A transformers object detector as an ``image -> Prompts`` callable.

    Zero-shot models run through :class:`~composeseg.adapters.grounding.TransformersGrounder`
    with ``labels`` as its fixed queries.

    Args:
        model_id_or_dir: a hub id or a ``save_pretrained`` directory (model + processor).
        labels: text queries for zero-shot detectors (required there), e.g.
            ``["cat", "remote control"]``; for closed-set detectors an optional subset of the
            model's classes to keep (same as ``classes=``).
        threshold: the post-processing score threshold (read at each call).
        text_threshold: Grounding DINO's token threshold (read at each call; see
            :class:`~composeseg.adapters.grounding.TransformersGrounder`).
        device: torch device; default: cuda when available, else cpu.
        options, option_overrides: :class:`~composeseg.adapters.PromptOptions`.

    Raises:
        ValueError: a zero-shot model without ``labels``, or a closed-set ``labels`` entry the
            model does not know.
    """

    def __init__(
        self,
        model_id_or_dir: str | os.PathLike,
        labels: Sequence[str] | None = None,
        threshold: float = 0.3,
        *,
        text_threshold: float = 0.25,
        device: str | None = None,
        options: PromptOptions | None = None,
        **option_overrides: Any,
    ) -> None:
        from transformers import AutoConfig, AutoImageProcessor, AutoModelForObjectDetection

        from composeseg.adapters.grounding import TransformersGrounder

        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold must lie in [0, 1], got {threshold!r}")
        source = str(model_id_or_dir)
        config = AutoConfig.from_pretrained(source)
        self.zero_shot = config.model_type in zero_shot_model_types()
        self.labels = None if labels is None else [str(v) for v in labels]
        opts = resolve_options(options, option_overrides)
        self._grounder: TransformersGrounder | None = None
        if self.zero_shot:
            if not self.labels:
                raise ValueError(
                    f"{config.model_type} is a zero-shot detector: pass labels=[...] (text queries)"
                )
            self._grounder = TransformersGrounder(
                source,
                threshold=threshold,
                text_threshold=text_threshold,
                device=device,
                options=opts,
            )
            self.processor = self._grounder.processor
            self.model = self._grounder.model
            self.device = self._grounder.device
        else:
            self.processor = AutoImageProcessor.from_pretrained(source)
            self.model = AutoModelForObjectDetection.from_pretrained(source)
            if self.labels:
                known = set(self.model.config.id2label.values())
                unknown = [v for v in self.labels if v not in known]
                if unknown:
                    raise ValueError(
                        f"unknown class name {unknown[0]!r} for {source}; known: "
                        f"{sorted(known)[:20]}"
                    )
                opts = resolve_options(opts, {"classes": tuple(self.labels)})
            self.device = pick_device(device)
            self.model.to(self.device).eval()
        self.threshold = threshold
        self.text_threshold = text_threshold
        self.options = opts
        self.name = source

    @property
    def names(self) -> dict[int, str]:
        """Class id -> name: the text queries (zero-shot) or the model's ``id2label``."""
        if self.zero_shot and self.labels:
            return dict(enumerate(self.labels))
        return {int(k): str(v) for k, v in self.model.config.id2label.items()}

    def __repr__(self) -> str:
        kind = "zero-shot" if self.zero_shot else "closed-set"
        return f"TransformersDetector({self.name!r}, {kind}, {len(self.names)} classes)"

    def __call__(self, image: Any) -> Prompts:
        """Detect in an image (path, PIL or ``(H, W, 3) uint8`` RGB); boxes in its pixels."""
        import torch

        from composeseg.image import load_image

        if self._grounder is not None and self.labels:
            return self._grounder(
                image, self.labels, threshold=self.threshold, text_threshold=self.text_threshold
            )
        rgb = load_image(image)
        size = (int(rgb.shape[0]), int(rgb.shape[1]))
        inputs = self.processor(images=[rgb], return_tensors="pt").to(self.device)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        result = self.processor.post_process_object_detection(
            outputs, threshold=self.threshold, target_sizes=[size]
        )[0]
        return from_transformers(result, labels=self.names, image_size=size, options=self.options)
