"""Class-agnostic object proposals from SAM (the paper's §7.3 settings).

A dense 64x64 point grid, no predicted-IoU or stability filtering, box NMS at 0.9, and at most
1000 masks ranked by the mean of predicted IoU and stability score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from composeseg.image import ImageSource, load_image
from composeseg.pipelines.amg import OUTPUTS, AutomaticMaskGenerator
from composeseg.pipelines.amg_data import MaskSet, to_detections
from composeseg.pipelines.config import resolve_config
from composeseg.pipelines.runner import Runnable
from composeseg.rle import area as rle_area

if TYPE_CHECKING:
    import supervision as sv

    from composeseg.pipelines.runner import Job
    from composeseg.prediction import ImageEmbedding
    from composeseg.sam import Sam


@dataclass(frozen=True)
class ProposalConfig:
    """Settings of :class:`ObjectProposals` (the paper's §7.3 defaults).

    Attributes:
        points_per_side: point grid (64 in the paper).
        points_per_batch: prompts decoded together.
        box_nms_thresh: box IoU above which duplicates are dropped (0.9).
        max_masks: proposals kept, best first (1000).
        crop_n_layers: extra crop layers, as in :class:`AutomaticMaskGenerator` (0).
        output: "mask" or "rle", as in :class:`AutomaticMaskGenerator`.
    """

    points_per_side: int = 64
    points_per_batch: int = 64
    box_nms_thresh: float = 0.9
    max_masks: int = 1000
    crop_n_layers: int = 0
    output: str = "mask"

    def __post_init__(self) -> None:
        if self.max_masks < 1:
            raise ValueError(f"max_masks must be >= 1, got {self.max_masks}")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")


def rank_proposals(masks: MaskSet, max_masks: int) -> MaskSet:
    """Drop empty masks, order by ``(predicted IoU + stability) / 2`` (NaN stability counts
    as 0) and keep the first ``max_masks``."""
    if not len(masks):
        return masks
    nonempty = np.flatnonzero(rle_area(masks.rles) > 0)
    masks = masks.select(nonempty)
    score = (masks.iou + np.nan_to_num(masks.stability, nan=0.0)) / 2
    order = np.argsort(-score, kind="stable")[:max_masks]
    return masks.select(order)


class ObjectProposals(Runnable):
    """Up to ``max_masks`` class-agnostic mask proposals per image.

    Args:
        sam: a loaded model.
        config: a :class:`ProposalConfig` (default: the paper's settings).
        progress: show a progress bar.
        **overrides: :class:`ProposalConfig` fields, e.g. ``max_masks=100``.
    """

    def __init__(
        self,
        sam: Sam,
        *,
        config: ProposalConfig | None = None,
        progress: bool = False,
        **overrides: Any,
    ) -> None:
        self.config = resolve_config(ProposalConfig, config, overrides, "ObjectProposals")
        cfg = self.config
        self.generator = AutomaticMaskGenerator(
            sam,
            progress=progress,
            points_per_side=cfg.points_per_side,
            points_per_batch=cfg.points_per_batch,
            pred_iou_thresh=0.0,
            stability_score_thresh=0.0,
            box_nms_thresh=cfg.box_nms_thresh,
            crop_n_layers=cfg.crop_n_layers,
            output=cfg.output,
        )
        self.generator.progress_label = "proposals"

    def __call__(self, image: ImageSource) -> sv.Detections:
        """Proposals for ``image``, best first.

        Returns:
            ``supervision.Detections`` as from :class:`AutomaticMaskGenerator`, with
            ``confidence`` = the ranking score (mean of predicted IoU and stability) and
            ``data["predicted_iou"]``.
        """
        return self._predict(load_image(image), None, None)

    def job(self) -> Job:
        """This pipeline as the dataset runner's :class:`~composeseg.pipelines.runner.Job`."""
        from composeseg.pipelines.runner import Job
        from composeseg.pipelines.visualize import annotate

        return Job("proposals", self._predict, self.generator.sam, annotate=annotate)

    def _predict(
        self, rgb: np.ndarray, path: Any, embedding: ImageEmbedding | None
    ) -> sv.Detections:
        found = self.generator.generate(rgb, embedding=embedding)
        masks = rank_proposals(found, self.config.max_masks)
        detections = to_detections(masks, rgb.shape[:2], self.config.output)
        detections.data["predicted_iou"] = masks.iou.astype(np.float32)
        detections.confidence = ((masks.iou + np.nan_to_num(masks.stability, nan=0.0)) / 2).astype(
            np.float32
        )
        return detections
