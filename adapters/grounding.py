"""Text grounders: an image and text queries in, box prompts out.

A grounder is any callable ``grounder(image, queries) -> Prompts`` (:class:`TextGrounder`).
:class:`TransformersGrounder` runs the transformers zero-shot detectors (OWLv2, OWL-ViT,
Grounding DINO, MM-Grounding-DINO, OmDet-Turbo) with all queries in one forward pass where the
model allows it. Queries are given per call, so one loaded model serves any vocabulary.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from composeseg.adapters.options import PromptOptions, build_prompts, resolve_options
from composeseg.adapters.transformers_results import result_columns, zero_shot_model_types
from composeseg.prompts import Prompts, text_prompts

DEMO_GROUNDER = "composeseg-demo-grounder"
"""Name of the embedded demo grounder (a tiny OWL-ViT trained on generated scenes)."""
DEMO_GROUNDER_THRESHOLD = 0.1
"""The demo grounder's default score threshold. Its focal-loss scores for present objects
lie around 0.1-0.22: on 60 validation scenes, 0.1 keeps 94 % of the named objects' top boxes
(0.15 keeps 65 %, 0.3 none)."""

# Detectors that read all queries as one ". "-joined text, capped at config.max_text_len tokens.
_JOINED_TEXT_TYPES = frozenset({"grounding-dino", "mm-grounding-dino"})


@runtime_checkable
class TextGrounder(Protocol):
    """``(image, queries) -> Prompts``: one box prompt per object matching a text query.

    ``image`` is a path, PIL image or ``(H, W, 3) uint8`` RGB array. The result has ``boxes``
    ``(N, 4) float32`` xyxy in pixels of that image, ``class_id (N,) int64`` indexing
    ``queries``, ``confidence (N,) float32`` and ``data["class_name"]`` the query text. No match
    gives an empty ``Prompts`` with the same fields; an empty ``queries`` is a ``ValueError``.
    """

    def __call__(self, image: Any, queries: Sequence[str]) -> Prompts: ...


class TransformersGrounder:
    """A transformers zero-shot detector as a :class:`TextGrounder`.

    Grounding DINO and MM-Grounding-DINO read the queries joined into one text of at most
    ``config.max_text_len`` tokens (256 for the released models): longer query lists are split
    into chunks that fit, each run as one forward pass on the same preprocessed image, and each
    box is labelled with the query whose tokens score highest. OWL-ViT, OWLv2 and OmDet-Turbo
    encode each query separately and take any number in one pass.

    Args:
        model_id_or_dir: a hub id or a ``save_pretrained`` directory (model + processor) of a
            model type in :func:`~composeseg.adapters.transformers_results.zero_shot_model_types`;
            None: the embedded demo grounder, a tiny OWL-ViT that knows the generated scenes'
            colours and shapes only (``composeseg.train.grounder``).
        threshold: keep boxes whose score exceeds this, in ``[0, 1]``; None: 0.3, or
            ``DEMO_GROUNDER_THRESHOLD`` (0.1) for the demo grounder, whose scores run lower.
        text_threshold: Grounding DINO family only: the best query's token score must exceed it
            too (transformers' phrase threshold: below it a box has no phrase).
        device: torch device; default: cuda when available, else cpu.
        max_queries_per_pass: at most this many queries per forward pass (bounds memory for
            OWL-style models, whose text batch grows with the queries); None: as many as fit.
        options, option_overrides: :class:`~composeseg.adapters.PromptOptions` applied to the
            merged detections of all passes (so ``top_k`` counts across passes).

    Raises:
        ValueError: the model is not a zero-shot detector, or a threshold is outside ``[0, 1]``.
    """

    def __init__(
        self,
        model_id_or_dir: str | os.PathLike | None = None,
        *,
        threshold: float | None = None,
        text_threshold: float = 0.25,
        device: str | None = None,
        max_queries_per_pass: int | None = None,
        options: PromptOptions | None = None,
        **option_overrides: Any,
    ) -> None:
        from transformers import AutoConfig, AutoModelForZeroShotObjectDetection, AutoProcessor

        if threshold is None:
            threshold = DEMO_GROUNDER_THRESHOLD if model_id_or_dir is None else 0.3
        _check_threshold("threshold", threshold)
        _check_threshold("text_threshold", text_threshold)
        if max_queries_per_pass is not None and (
            isinstance(max_queries_per_pass, bool) or max_queries_per_pass < 1
        ):
            raise ValueError(
                f"max_queries_per_pass must be an int >= 1 or None, got {max_queries_per_pass!r}"
            )
        from composeseg.device import pick_device, quiet_loading
        from composeseg.loading import DEMO_GROUNDER_DIR

        source = str(DEMO_GROUNDER_DIR if model_id_or_dir is None else model_id_or_dir)
        config = AutoConfig.from_pretrained(source)
        if config.model_type not in zero_shot_model_types():
            raise ValueError(
                f"{source} is a {config.model_type!r} model, not a zero-shot (text-prompted) "
                f"detector; text grounders load {sorted(zero_shot_model_types())} (a closed-set "
                "detector goes through TransformersDetector)"
            )
        self.options = resolve_options(options, option_overrides)
        with quiet_loading():
            self.processor = AutoProcessor.from_pretrained(source)
            self.model = AutoModelForZeroShotObjectDetection.from_pretrained(source)
        self.device = pick_device(device)
        self.model.to(self.device).eval()
        self.model_type: str = config.model_type
        self.threshold = threshold
        self.text_threshold = text_threshold
        self.max_queries_per_pass = max_queries_per_pass
        self.max_text_len: int | None = (
            int(config.max_text_len) if config.model_type in _JOINED_TEXT_TYPES else None
        )
        self.name = DEMO_GROUNDER if model_id_or_dir is None else source

    def __repr__(self) -> str:
        return f"TransformersGrounder({self.name!r}, {self.model_type})"

    def __call__(
        self,
        image: Any,
        queries: str | Sequence[str],
        *,
        threshold: float | None = None,
        text_threshold: float | None = None,
    ) -> Prompts:
        """Find the objects that ``queries`` describe in ``image``.

        Args:
            image: path, PIL image or ``(H, W, 3) uint8`` RGB array.
            queries: one text or a list of texts to look for, e.g. ``["cat", "remote control"]``.
            threshold, text_threshold: override the constructor's values for this call.

        Returns:
            ``Prompts`` with ``boxes (N, 4) float32`` xyxy pixels of ``image``, ``class_id``
            indexing ``queries``, ``confidence`` and ``data["class_name"]`` (the query text),
            highest confidence first; empty when nothing matches.

        Raises:
            ValueError: ``queries`` is empty or holds a blank / non-string entry,
                or a query alone exceeds the model's text length.
        """
        import torch

        from composeseg.image import load_image

        texts = text_prompts(queries, "queries")
        threshold = self.threshold if threshold is None else threshold
        text_threshold = self.text_threshold if text_threshold is None else text_threshold
        _check_threshold("threshold", threshold)
        _check_threshold("text_threshold", text_threshold)
        rgb = load_image(image)
        size = (int(rgb.shape[0]), int(rgb.shape[1]))
        with torch.inference_mode():
            if self.max_text_len is not None:
                columns = self._joined_text_passes(
                    rgb, texts, size, threshold, text_threshold, self.max_text_len
                )
            else:
                columns = self._per_query_passes(rgb, texts, size, threshold)
        boxes = np.concatenate([c[0] for c in columns]).reshape(-1, 4)
        scores = np.concatenate([c[1] for c in columns])
        ids = np.concatenate([c[2] for c in columns]).astype(np.int64)
        height, width = size
        # OWLv2 pads the image to a square: boxes wholly in the padding are not in the image
        inside = (boxes[:, 0] < width) & (boxes[:, 1] < height) & (boxes[:, 2:] > 0).all(axis=1)
        boxes, scores, ids = boxes[inside], scores[inside], ids[inside]
        return build_prompts(
            boxes,
            scores=scores,
            class_ids=ids,
            class_names=[texts[i] for i in ids],
            names=dict(enumerate(texts)),
            image_size=size,
            options=self.options,
            source=f"{self.model_type} detections",
        )

    def _per_query_passes(
        self, rgb: np.ndarray, texts: list[str], size: tuple[int, int], threshold: float
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """OWL-ViT / OWLv2 / OmDet-Turbo (and future types): the processor's own pre- and
        post-processing, whose integer labels index the pass's queries."""
        post = self.processor.post_process_grounded_object_detection
        accepted = inspect.signature(post).parameters
        step = self.max_queries_per_pass or len(texts)
        columns = []
        for start in range(0, len(texts), step):
            chunk = texts[start : start + step]
            # truncation: OWL reads 16 tokens per query and fails on longer ones without it
            inputs = self.processor(
                text=[chunk], images=[rgb], truncation=True, return_tensors="pt"
            )
            outputs = self.model(**inputs.to(self.device))
            kwargs: dict[str, Any] = {"threshold": threshold, "target_sizes": [size]}
            if "text_labels" in accepted:
                kwargs["text_labels"] = [chunk]
            if "input_ids" in accepted and "input_ids" in inputs:
                kwargs["input_ids"] = inputs["input_ids"]
            boxes, scores, ids, _ = result_columns(
                post(outputs, **kwargs)[0], dict(enumerate(chunk))
            )
            if ids is None:
                raise ValueError(f"{self.model_type} post-processing returned no labels")
            known = ids >= 0  # a phrase matching no query (future types) is no answer
            columns.append((boxes[known], scores[known], ids[known] + start))
        return columns

    def _joined_text_passes(
        self,
        rgb: np.ndarray,
        texts: list[str],
        size: tuple[int, int],
        threshold: float,
        text_threshold: float,
        max_text_len: int,
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Grounding DINO family: one pass per chunk of queries that fits ``max_text_len``."""
        import torch
        from torchvision.ops import box_convert

        image_inputs = self.processor.image_processor(images=[rgb], return_tensors="pt")
        image_inputs = image_inputs.to(self.device)
        height, width = size
        scale = np.array([width, height, width, height], np.float32)
        columns = []
        pending = self._text_chunks(texts, max_text_len)
        while pending:
            start, stop = pending.pop(0)
            text, char_spans = _join_queries(texts[start:stop])
            encoded = self.processor(text=text, return_offsets_mapping=True, return_tensors="pt")
            offsets = encoded.pop("offset_mapping")[0].tolist()
            if len(offsets) > max_text_len:
                # the joined text tokenized longer than its queries counted one by one
                if stop - start == 1:
                    raise ValueError(
                        f"query {texts[start]!r} is {len(offsets)} tokens long; "
                        f"{self.model_type} reads at most {max_text_len}"
                    )
                middle = (start + stop) // 2
                pending[:0] = [(start, middle), (middle, stop)]
                continue
            spans = _token_spans(offsets, char_spans, texts[start:stop])
            outputs = self.model(**image_inputs, **encoded.to(self.device))
            probs = outputs.logits[0].sigmoid()  # (boxes, max_text_len), token j <-> input j
            per_query = torch.stack([probs[:, a:b].amax(dim=1) for a, b in spans], dim=1)
            scores, ids = per_query.max(dim=1)
            keep = (scores > threshold) & (scores > text_threshold)
            boxes = box_convert(outputs.pred_boxes[0][keep], "cxcywh", "xyxy").float().cpu().numpy()
            columns.append(
                (boxes * scale, scores[keep].float().cpu().numpy(), ids[keep].cpu().numpy() + start)
            )
        return columns

    def _text_chunks(self, texts: list[str], max_text_len: int) -> list[tuple[int, int]]:
        """``[start, stop)`` query ranges whose joined text fits ``max_text_len`` tokens."""
        tokenizer = self.processor.tokenizer
        budget = max_text_len - tokenizer.num_special_tokens_to_add()
        counted = tokenizer([t.strip().lower() for t in texts], add_special_tokens=False)
        cost = [len(ids) + 1 for ids in counted["input_ids"]]  # + the "." after each query
        limit = self.max_queries_per_pass or len(texts)
        chunks: list[tuple[int, int]] = []
        start = used = 0
        for i, (text, n) in enumerate(zip(texts, cost, strict=True)):
            if n > budget:
                raise ValueError(
                    f"query {text!r} is {n - 1} tokens long; {self.model_type} reads at most "
                    f"{budget - 1} per query ({max_text_len} in all)"
                )
            if i > start and (used + n > budget or i - start >= limit):
                chunks.append((start, i))
                start, used = i, 0
            used += n
        chunks.append((start, len(texts)))
        return chunks


def _join_queries(texts: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """``"a cat. a dog."`` (Grounding DINO's prompt format) and each query's character span."""
    parts, spans, at = [], [], 0
    for text in texts:
        lowered = text.strip().lower()  # the transformers processor lowercases too
        spans.append((at, at + len(lowered)))
        parts.append(lowered + ".")
        at += len(lowered) + 2
    return " ".join(parts), spans


def _token_spans(
    offsets: list[list[int]], char_spans: list[tuple[int, int]], texts: Sequence[str]
) -> list[tuple[int, int]]:
    """Each query's ``[first, last + 1)`` token range, from the tokens' character offsets."""
    spans = []
    for (begin, end), text in zip(char_spans, texts, strict=True):
        inside = [j for j, (a, b) in enumerate(offsets) if b > a and begin <= a and b <= end]
        if not inside:
            raise ValueError(f"query {text!r} has no tokens the model can read")
        spans.append((inside[0], inside[-1] + 1))
    return spans


def _check_threshold(name: str, value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
