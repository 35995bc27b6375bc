"""transformers detectors -> ``Prompts``: closed-set (DETR, RT-DETR, D-FINE, ...) through their
processors' post-processing, and zero-shot text detectors (OWLv2, OWL-ViT, Grounding DINO,
OmDet-Turbo) with fixed queries through :mod:`composeseg.adapters.grounding`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from composeseg.adapters.options import PromptOptions, build_prompts, resolve_options
from composeseg.prompts import Prompts


def from_transformers(
    result: Mapping[str, Any],
    *,
    labels: Mapping[int, str] | Sequence[str] | None = None,
    image_size: tuple[int, int] | None = None,
    options: PromptOptions | None = None,
    **option_overrides: Any,
) -> Prompts:
    """Turn one image's post-processed detections into prompts.

    Args:
        result: one element of the list returned by ``post_process_object_detection`` or
            ``post_process_grounded_object_detection``, computed **with**
            ``target_sizes=[(H, W)]`` so that ``boxes`` are xyxy pixels of the original image.
            ``labels`` are class indexes (or, for Grounding DINO, phrases); ``text_labels``
            (zero-shot) are the matched query texts.
        labels: the vocabulary: ``model.config.id2label`` for closed-set detectors, the list of
            text queries for zero-shot ones. Phrases are mapped to the index of the query they
            equal (or contain); a phrase matching no query gets class id -1.
        image_size: ``(H, W)``; when given, boxes are clipped to the image.
        options, option_overrides: :class:`~composeseg.adapters.PromptOptions`.
    """
    vocabulary: dict[int, str] | None
    if labels is None:
        vocabulary = None
    elif isinstance(labels, Mapping):
        vocabulary = {int(k): str(v) for k, v in labels.items()}
    else:
        vocabulary = dict(enumerate(str(v) for v in labels))
    boxes, scores, ids, class_names = result_columns(result, vocabulary)
    return build_prompts(
        boxes,
        scores=scores,
        class_ids=ids,
        class_names=class_names,
        names=vocabulary,
        image_size=image_size,
        options=resolve_options(options, option_overrides),
        source="transformers detections",
    )


def result_columns(
    result: Mapping[str, Any], vocabulary: Mapping[int, str] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str] | None]:
    """Read one post-processed result: ``(boxes (N, 4), scores (N,), class ids (N,) int64 or
    None, class names or None)``. Phrase labels (Grounding DINO) are matched to
    ``vocabulary`` by :func:`_phrase_id` (-1 when none matches)."""
    for key in ("boxes", "scores"):
        if key not in result:
            raise ValueError(f"detector result has no {key!r}; keys: {sorted(result)}")
    text = result.get("text_labels")
    # dict.get: Grounding DINO's result dict warns when its (phrase) "labels" key is read
    raw = dict.get(result, "labels") if isinstance(result, dict) else result.get("labels")
    class_names: list[str] | None = None
    if isinstance(raw, (list, tuple)) and (not raw or isinstance(raw[0], str)):
        text = text if text is not None else raw  # Grounding DINO: labels are phrases
        raw = None
    if text is not None:
        class_names = [str(t) for t in text]
    if raw is not None:
        ids = _to_numpy(raw).astype(np.int64)
    elif class_names is not None:
        ids = np.array([_phrase_id(p, vocabulary) for p in class_names], np.int64)
    else:
        ids = None
    return _to_numpy(result["boxes"]), _to_numpy(result["scores"]), ids, class_names


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy() if value.is_floating_point() else value.cpu()
    return np.asarray(value)


def _phrase_id(phrase: str, vocabulary: Mapping[int, str] | None) -> int:
    if not vocabulary:
        return -1
    phrase = phrase.strip().lower()
    for key, name in vocabulary.items():
        if name.strip().lower() == phrase:
            return key
    for key, name in vocabulary.items():
        name = name.strip().lower()
        if name and phrase and (name in phrase or phrase in name):
            return key
    return -1


def zero_shot_model_types() -> set[str]:
    """transformers ``model_type`` names loaded as zero-shot (text-prompted) detectors."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_ZERO_SHOT_OBJECT_DETECTION_MAPPING_NAMES,
    )

    return set(MODEL_FOR_ZERO_SHOT_OBJECT_DETECTION_MAPPING_NAMES)


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
        import torch
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
            self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
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
