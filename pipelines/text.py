"""Text -> masks, three ways behind one call: a grounding detector, CLIP matching, or SAM 3.

- **grounder** (text -> boxes -> SAM): a zero-shot detector (OWLv2, Grounding DINO, ...) boxes
  every query; SAM turns the boxes into masks (:class:`InstanceSegmentation`'s decoding, with
  its refinement pass).
- **matcher** (SAM everything -> CLIP picks): automatic mask generation proposes masks and a
  :class:`~composeseg.adapters.ClipMatcher` scores each against each query, as the SAM paper
  sketched (§7.5).
- **SAM 3** (concepts natively): pass a :class:`composeseg.ConceptSam` as ``sam``.

A matcher given together with a grounder or SAM 3 re-ranks their masks. Duplicates across
queries are removed by mask NMS that also catches nested duplicates (:mod:`.mask_nms`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from composeseg.detections import assemble, empty_detections
from composeseg.geometry import tight_boxes
from composeseg.image import ImageSource, load_image
from composeseg.pipelines.amg_data import to_detections
from composeseg.pipelines.config import resolve_config
from composeseg.pipelines.instance import InstanceSegmentation
from composeseg.pipelines.mask_nms import mask_nms
from composeseg.prompts import Prompts, text_prompts

if TYPE_CHECKING:
    import supervision as sv

    from composeseg.adapters import ClipMatcher
    from composeseg.adapters.grounding import TextGrounder
    from composeseg.concepts import ConceptSam
    from composeseg.pipelines.amg import AutomaticMaskGenerator
    from composeseg.pipelines.detections import ImageResult
    from composeseg.pipelines.runner import Job, RunSummary
    from composeseg.prediction import ImageEmbedding
    from composeseg.sam import Sam


@dataclass(frozen=True)
class TextConfig:
    """Options of :class:`TextSegmentation`.

    Attributes:
        threshold: drop masks whose ``confidence`` is below this (per concept); None keeps all.
        top_k: keep at most this many masks per concept (best first); None keeps all.
            ``"auto"`` (the default) is resolved when the pipeline is built, and shows in its
            ``config``: 1 for the matcher alone without a ``threshold`` (every proposal gets
            a similarity to every text), None otherwise.
        nms_iou, nms_containment, nms_min_area_ratio: duplicate removal across all concepts
            (:func:`~composeseg.pipelines.mask_nms.mask_nms`); ``nms_iou=1`` disables it.
        refine: SAM's refinement pass for grounded boxes.
        quality_weight: with the matcher alone, masks rank by CLIP similarity +
            ``quality_weight`` x mask quality (mean of predicted IoU and stability score): a
            part of an object can look as much like the text as the whole, but is less stable.
            0.25 was the best of 0-1.5 on validation scenes (mean IoU 0.766 against 0.752).
    """

    threshold: float | None = None
    top_k: int | Literal["auto"] | None = "auto"
    nms_iou: float = 0.7
    nms_containment: float = 0.9
    nms_min_area_ratio: float = 0.5
    refine: bool = True
    quality_weight: float = 0.25

    def __post_init__(self) -> None:
        if not 0 <= self.quality_weight < float("inf"):
            raise ValueError(f"quality_weight must be >= 0 and finite, got {self.quality_weight}")
        if self.top_k is not None and self.top_k != "auto" and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {self.top_k}")
        if self.threshold is not None and not np.isfinite(self.threshold):
            raise ValueError(f"threshold must be finite or None, got {self.threshold}")
        for name in ("nms_iou", "nms_containment", "nms_min_area_ratio"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")


@dataclass(frozen=True)
class _Candidates:
    masks: np.ndarray  # (N, H, W) bool
    boxes: np.ndarray  # (N, 4) float32 xyxy
    class_id: np.ndarray  # (N,) int64, -1: not yet assigned (matcher route)
    score: np.ndarray  # (N,) float32, the source's own confidence
    quality: np.ndarray | None = None  # (N,) float32 mask quality of automatic masks


class TextSegmentation:
    """Segment what texts name.

    Args:
        sam: a :class:`~composeseg.Sam` (for the grounder and matcher routes) or a
            :class:`~composeseg.ConceptSam` (SAM 3: concepts natively).
        grounder: ``(image, queries) -> Prompts`` with boxes and ``class_id`` indexing the
            queries (:class:`~composeseg.adapters.TextGrounder`), e.g.
            :class:`~composeseg.adapters.TransformersGrounder` or a plain function.
        matcher: a :class:`~composeseg.adapters.ClipMatcher`; alone it picks among automatic
            masks, with a grounder or SAM 3 it re-ranks their masks.
        generator: the mask proposer of the matcher route; default an
            :class:`~composeseg.pipelines.AutomaticMaskGenerator` with a 16 x 16 grid and
            looser filters than Meta's (predicted IoU 0.5, stability 0.7): a missed object
            cannot be found by any text, an extra proposal is only one more for CLIP to reject.
        config: a :class:`TextConfig`.
        **overrides: :class:`TextConfig` fields, e.g. ``top_k=1``.

    ``pipe(image, "a red car")`` or ``pipe(image, ["cat", "remote control"])`` returns
    ``supervision.Detections``: ``mask (N, H, W) bool``, ``xyxy`` pixels of the image,
    ``class_id`` indexing the queries, ``data["class_name"]`` the query text, and
    ``confidence``: grounder score x SAM mask score, SAM 3's score, or (matcher alone) the
    CLIP cosine similarity. With a matcher, ``data["clip_similarity"]`` holds the similarity
    and ranks the masks of each concept.
    """

    def __init__(
        self,
        sam: Sam | ConceptSam,
        *,
        grounder: TextGrounder | None = None,
        matcher: ClipMatcher | None = None,
        generator: AutomaticMaskGenerator | None = None,
        config: TextConfig | None = None,
        **overrides: Any,
    ) -> None:
        self.native = hasattr(sam, "segment_concepts")
        if self.native and grounder is not None:
            raise ValueError("SAM 3 takes texts itself: give it no grounder")
        if not self.native and grounder is None and matcher is None:
            raise ValueError(
                "a SAM needs a grounder (text -> boxes) or a matcher (CLIP) to read text; "
                "or pass a ConceptSam (SAM 3)"
            )
        self.matcher_only = not self.native and grounder is None
        config = resolve_config(TextConfig, config, overrides, "TextSegmentation")
        if config.top_k == "auto":
            # every automatic mask is a candidate for every text: by default the matcher
            # keeps its best one per text, unless a threshold decides
            auto = 1 if self.matcher_only and config.threshold is None else None
            config = replace(config, top_k=auto)
        self.sam = sam
        self.grounder = grounder
        self.matcher = matcher
        self.config = config
        self._generator = generator
        # turns the grounder's boxes into masks (used by the grounder route only)
        self._segmenter = InstanceSegmentation(sam, refine=self.config.refine)

    def __repr__(self) -> str:
        route = "sam3" if self.native else ("grounder" if self.grounder else "matcher")
        return f"TextSegmentation({route}, matcher={self.matcher!r}, {self.config})"

    @property
    def generator(self) -> AutomaticMaskGenerator:
        """The matcher route's mask proposer (built on first use)."""
        if self._generator is None:
            from composeseg.pipelines.amg import AutomaticMaskGenerator

            self._generator = AutomaticMaskGenerator(
                self.sam,
                points_per_side=16,
                pred_iou_thresh=0.5,
                stability_score_thresh=0.7,
            )
        return self._generator

    def __call__(self, image: ImageSource, queries: str | Sequence[str]) -> sv.Detections:
        """Masks of everything ``queries`` name in ``image`` (path, PIL or ``(H, W, 3) uint8``).

        Raises:
            ValueError: no query, a blank or repeated query.
        """
        return self._predict(text_prompts(queries, "queries", unique=True), load_image(image))

    def job(self, queries: str | Sequence[str]) -> Job:
        """This pipeline, for ``queries``, as the dataset runner's
        :class:`~composeseg.pipelines.runner.Job`."""
        from composeseg.pipelines.runner import Job
        from composeseg.pipelines.visualize import annotate

        texts = text_prompts(queries, "queries", unique=True)
        # SAM 3 encodes inside its own call: no embedding to hand it
        sam = None if self.native else self.sam
        return Job("text", partial(self._predict, texts), sam, annotate=annotate)

    def run(
        self,
        source: str | os.PathLike | Iterable[Any],
        queries: str | Sequence[str],
        *,
        write_to: str | os.PathLike,
        **options: Any,
    ) -> RunSummary:
        """Masks of ``queries`` in every image of a dataset, one record per image (see
        :func:`~composeseg.pipelines.runner.run_job` for the options)."""
        from composeseg.pipelines.runner import run_job

        return run_job(self.job(queries), source, write_to=write_to, **options)

    def stream(
        self,
        source: str | os.PathLike | Iterable[Any],
        queries: str | Sequence[str],
        **options: Any,
    ) -> Iterator[ImageResult]:
        """Results image by image, no files (options as
        :func:`~composeseg.pipelines.runner.stream_job`)."""
        from composeseg.pipelines.runner import stream_job

        return stream_job(self.job(queries), source, **options)

    def _predict(
        self,
        texts: list[str],
        rgb: np.ndarray,
        path: Any = None,
        embedding: ImageEmbedding | None = None,
    ) -> sv.Detections:
        found = self._candidates(rgb, texts, embedding)
        similarity = None
        if self.matcher is not None and len(found.masks):
            similarity = self.matcher(rgb, found.masks, texts, boxes=found.boxes)
        return self._select(found, similarity, texts, rgb.shape[:2])

    def _candidates(
        self, rgb: np.ndarray, texts: list[str], embedding: ImageEmbedding | None = None
    ) -> _Candidates:
        size = rgb.shape[:2]
        if self.native:
            # SAM 3 drops instances below its own threshold (0.5 unless told): pass ours down.
            floor = self.config.threshold
            cut = {} if floor is None else {"threshold": float(np.clip(floor, 0.0, 1.0))}
            prediction = self.sam.segment_concepts(rgb, texts, **cut)  # type: ignore[union-attr]
            return _Candidates(
                prediction.masks, prediction.boxes, prediction.class_id, prediction.scores
            )
        if self.grounder is not None:
            prompts = self.grounder(rgb, texts)
            if not isinstance(prompts, Prompts):
                raise TypeError(f"the grounder returned {type(prompts).__name__}, not Prompts")
            if len(prompts) == 0:
                return _empty_candidates(size)
            ids = prompts.class_id
            if ids is None or ((ids < 0) | (ids >= len(texts))).any():
                got = None if ids is None else ids.tolist()
                raise ValueError(
                    f"the grounder's class_id must index the {len(texts)} queries, got {got}"
                )
            found = self._segmenter.segment(rgb, prompts, embedding=embedding)
            return _Candidates(
                found.mask, found.xyxy, found.class_id, np.asarray(found.confidence, np.float32)
            )
        generator = self.generator
        if embedding is not None and hasattr(generator, "generate"):
            found_masks = generator.generate(rgb, embedding=embedding)
            proposals = to_detections(found_masks, size, generator.config.output)
        else:
            proposals = generator(rgb)  # any callable image -> Detections
        n = len(proposals)
        if n == 0:
            return _empty_candidates(size)
        predicted_iou = (
            np.ones(n, np.float32)
            if proposals.confidence is None
            else np.asarray(proposals.confidence, np.float32)
        )
        stability = proposals.data.get("stability_score")
        quality = predicted_iou if stability is None else (predicted_iou + stability) / 2
        return _Candidates(
            proposals.mask,
            tight_boxes(proposals.mask),
            np.full(n, -1, np.int64),
            predicted_iou,
            quality=np.asarray(quality, np.float32),
        )

    def _select(
        self,
        found: _Candidates,
        similarity: np.ndarray | None,
        texts: list[str],
        size: tuple[int, int],
    ) -> sv.Detections:
        # One row per (mask, concept) it may answer: every pair for the matcher alone,
        # the source's own concept otherwise.
        sim: np.ndarray | None = None
        if self.matcher_only and similarity is not None:
            rows, concept = np.divmod(np.arange(similarity.size), len(texts))
            score = sim = similarity.reshape(-1)
            rank = sim
            if found.quality is not None:
                rank = sim + self.config.quality_weight * found.quality[rows]
        else:
            rows = np.arange(len(found.masks))
            concept = found.class_id.astype(np.int64)
            score = found.score
            if similarity is not None:
                sim = similarity[rows, concept]
            rank = score if sim is None else sim
        keep = self._per_concept(concept, score, rank)
        rows, concept, score, rank = rows[keep], concept[keep], score[keep], rank[keep]
        sim = None if sim is None else sim[keep]
        if len(rows) > 1 and self.config.nms_iou < 1:
            order = mask_nms(
                found.masks[rows],
                rank,
                iou_threshold=self.config.nms_iou,
                containment_threshold=self.config.nms_containment,
                min_area_ratio=self.config.nms_min_area_ratio,
            )
            rows, concept, score = rows[order], concept[order], score[order]
            sim = None if sim is None else sim[order]
        return _detections(found, rows, concept, score, sim, texts, size)

    def _per_concept(self, concept: np.ndarray, score: np.ndarray, rank: np.ndarray) -> np.ndarray:
        cfg = self.config
        keep: list[int] = []
        for c in np.unique(concept):
            idx = np.flatnonzero(concept == c)
            idx = idx[np.argsort(-rank[idx], kind="stable")]
            if cfg.threshold is not None:
                idx = idx[score[idx] >= cfg.threshold]
            keep.extend(idx[: cfg.top_k] if cfg.top_k else idx)
        return np.asarray(sorted(keep), np.int64)


def _detections(
    found: _Candidates,
    rows: np.ndarray,
    concept: np.ndarray,
    score: np.ndarray,
    similarity: np.ndarray | None,
    texts: list[str],
    size: tuple[int, int],
) -> sv.Detections:
    if not len(rows):
        return empty_detections(size, {"class_name": str})
    data: dict[str, Any] = {"class_name": np.asarray([texts[c] for c in concept])}
    if similarity is not None:
        data["clip_similarity"] = similarity.astype(np.float32)
    # the ranking score (grounder or matcher) already weighs in mask quality: no mask score
    return assemble(
        found.masks[rows],
        xyxy=found.boxes[rows],
        detector_score=score,
        class_id=concept,
        data=data,
    )


def _empty_candidates(size: tuple[int, int]) -> _Candidates:
    return _Candidates(
        np.zeros((0, *size), bool),
        np.zeros((0, 4), np.float32),
        np.zeros(0, np.int64),
        np.zeros(0, np.float32),
    )
