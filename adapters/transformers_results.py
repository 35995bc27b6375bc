"""transformers detection results -> ``Prompts``: the reading shared by closed-set detectors
(:mod:`composeseg.adapters.transformers_detectors`) and text grounders
(:mod:`composeseg.adapters.grounding`).
"""

from __future__ import annotations

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
