"""Detector + SAM instance segmentation (SAM paper §7.4): boxes in, masks with classes out.

One encoder pass per image; all of the image's prompts go through the decoder in batched calls;
then, by default, one refinement pass that feeds each object's best low-resolution logits back
as a mask prompt together with its box.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from composeseg.detections import assemble, empty_detections
from composeseg.image import ImageSource, load_image
from composeseg.pipelines.config import resolve_config
from composeseg.pipelines.runner import Runnable
from composeseg.prompts import Prompts

if TYPE_CHECKING:
    import supervision as sv
    import torch

    from composeseg.pipelines.runner import Job
    from composeseg.prediction import ImageEmbedding
    from composeseg.sam import Sam

Detector = Callable[[Any], Prompts]
"""Any callable ``image -> Prompts``. A detector with a ``detect_file(path, image)`` method
(e.g. :class:`~composeseg.adapters.CocoBoxes`) is given the file path when there is one."""

MaskSelection = Literal["score", "box_fit", "box_iou", "largest"]


@dataclass(frozen=True)
class InstanceConfig:
    """Options of :class:`InstanceSegmentation`.

    Attributes:
        refine: one refinement pass (the chosen logits + box fed back); SAM's own evaluation
            does it.
        mask_selection: which of SAM's masks an object keeps. ``"score"`` (default): the most
            confident, which without ``multimask`` is SAM's single mask (the paper's protocol).
            ``"box_fit"``: SAM's single mask and its 3 candidates, the one whose tight box best
            matches the prompt box, predicted IoU breaking near-ties (:mod:`composeseg.box_fit`;
            objects without a box keep the single mask): better on crowded scenes the demo SAM
            never saw, a little worse on its own (README, "Box prompts"). With ``multimask``:
            ``"box_iou"`` (tight box closest to the prompt box, predicted IoU ignored) and
            ``"largest"`` pick among the 3 candidates too.
        multimask: decode SAM's 3 candidates per object and keep one by ``"score"``,
            ``"box_iou"`` or ``"largest"``; ``"box_fit"`` always weighs them, so it refuses it.
        min_mask_area: drop objects whose final mask has fewer pixels (0 keeps empty masks).
        zoom: segment each object in its own window, ``zoom`` times its box, enlarged to the
            model's input (:mod:`composeseg.zoom`; 5 is its default): much better masks for
            small objects, one encoder pass per object. None: one pass for the whole image.
            With ``multimask`` the candidate is chosen by score and not refined.
    """

    refine: bool = True
    multimask: bool = False
    mask_selection: MaskSelection = "score"
    min_mask_area: int = 0
    zoom: float | None = None

    def __post_init__(self) -> None:
        if self.mask_selection not in ("score", "box_fit", "box_iou", "largest"):
            raise ValueError(
                f"mask_selection must be 'score', 'box_fit', 'box_iou' or 'largest', got "
                f"{self.mask_selection!r}"
            )
        if self.multimask and self.mask_selection == "box_fit":
            raise ValueError(
                "mask_selection='box_fit' already weighs SAM's 3 candidates and its single mask; "
                "multimask=True picks among the 3 by mask_selection='score', 'box_iou' or "
                "'largest'"
            )
        if self.min_mask_area < 0:
            raise ValueError(f"min_mask_area must be >= 0, got {self.min_mask_area}")
        if self.zoom is not None:
            from composeseg.zoom import check_context

            check_context(self.zoom, "zoom")
            if self.multimask and self.mask_selection != "score":
                raise ValueError(
                    f"zoom picks multimask candidates by score; mask_selection="
                    f"{self.mask_selection!r} needs zoom=None"
                )


class InstanceSegmentation(Runnable):
    """Segment every object a detector finds.

    Args:
        sam: a loaded :class:`~composeseg.Sam`.
        detector: any callable ``image -> Prompts`` (see :mod:`composeseg.adapters`); None
            when the prompts come from elsewhere and only :meth:`segment` is called.
        config: an :class:`InstanceConfig`.
        **overrides: :class:`InstanceConfig` fields, e.g. ``refine=False``.

    Calling ``pipe(image)`` returns ``supervision.Detections`` with ``mask (N, H, W) bool``,
    the detector's boxes (``xyxy``, pixels of the image, clipped to it), ``class_id``,
    ``tracker_id``, ``data["class_name"]``, and ``confidence`` = detector score x mask
    quality (predicted IoU clipped to [0, 1]); both factors are kept in
    ``data["detector_score"]`` and ``data["mask_score"]``. No detections give an empty
    ``Detections``.
    """

    def __init__(
        self,
        sam: Sam,
        detector: Detector | None = None,
        *,
        config: InstanceConfig | None = None,
        **overrides: Any,
    ) -> None:
        if detector is not None and not callable(detector) and not hasattr(detector, "detect_file"):
            raise TypeError(f"detector must be callable image -> Prompts, got {detector!r}")
        self.sam = sam
        self.detector = detector
        self.config = resolve_config(InstanceConfig, config, overrides, "InstanceSegmentation")

    def __repr__(self) -> str:
        return f"InstanceSegmentation({self.sam!r}, {self.detector!r}, {self.config})"

    def __call__(self, image: ImageSource) -> sv.Detections:
        """Segment one image (path, PIL image or ``(H, W, 3) uint8`` RGB array)."""
        rgb = load_image(image)
        path = Path(image) if isinstance(image, (str, os.PathLike)) else None
        return self.segment(rgb, self.detect(rgb, path))

    def detect(self, rgb: np.ndarray, path: Path | None = None) -> Prompts:
        """Run the detector on an ``(H, W, 3) uint8`` image (by path when it wants one)."""
        if self.detector is None:
            raise ValueError(
                "this InstanceSegmentation has no detector: give one, or call segment(rgb, prompts)"
            )
        detect_file = getattr(self.detector, "detect_file", None)
        if detect_file is not None and path is not None:
            prompts = detect_file(path, rgb)
        else:
            prompts = self.detector(rgb)
        if not isinstance(prompts, Prompts):
            raise TypeError(
                f"the detector returned {type(prompts).__name__}; it must return "
                "composeseg.Prompts (see composeseg.adapters)"
            )
        return prompts

    def segment(
        self, rgb: np.ndarray, prompts: Prompts, *, embedding: ImageEmbedding | None = None
    ) -> sv.Detections:
        """Masks for ``prompts`` on an ``(H, W, 3) uint8`` image: one encoder pass, none when
        ``embedding`` (of this image, from ``sam.embed``/``embed_batch``) is given; with
        ``zoom``, one per object window."""
        from composeseg.sam import fit_to_image

        size = (int(rgb.shape[0]), int(rgb.shape[1]))
        if len(prompts) == 0:
            return empty_detections(size, {"detector_score": np.float32, "mask_score": np.float32})
        prompts = fit_to_image(prompts, size)
        if self.config.zoom is not None:
            masks, mask_score = self._zoomed(rgb, prompts, embedding, self.config.zoom)
        else:
            embedding = embedding if embedding is not None else self.sam.embed(rgb)
            masks, mask_score = self._decode(embedding, prompts)
        return self._detections(prompts, masks, mask_score)

    def job(self) -> Job:
        """This pipeline as the dataset runner's :class:`~composeseg.pipelines.runner.Job`
        (``run`` / ``stream`` use it)."""
        from composeseg.pipelines.runner import Job
        from composeseg.pipelines.visualize import annotate

        # zoomed objects are encoded in their windows: a whole-image batch would be wasted
        sam = self.sam if self.config.zoom is None else None
        return Job("segment", self._predict, sam, annotate=annotate)

    def _predict(
        self, rgb: np.ndarray, path: Path | None, embedding: ImageEmbedding | None
    ) -> sv.Detections:
        return self.segment(rgb, self.detect(rgb, path), embedding=embedding)

    def _decode(self, embedding: ImageEmbedding, prompts: Prompts) -> tuple[np.ndarray, np.ndarray]:
        import torch

        from composeseg.box_fit import decode_box_fitted

        cfg = self.config
        # best: (N, 1, M, M) low-res logits, best_score: (N, 1), as decode_low_res gives them
        if cfg.mask_selection == "box_fit":
            best, best_score = decode_box_fitted(self.sam, embedding, prompts, refine=cfg.refine)
        else:
            logits, scores = self.sam.decode_low_res(embedding, prompts, multimask=cfg.multimask)
            index = self._select(logits, scores, prompts, embedding)
            rows = torch.arange(len(prompts), device=logits.device)
            best, best_score = logits[rows, index, None], scores[rows, index, None]
            if cfg.refine:
                # the best logits go back as the mask prompt, staying on the device
                best, best_score = self.sam.decode_low_res(
                    embedding, prompts, multimask=False, mask_logits=best[:, 0]
                )
        masks = self.sam.masks_from_logits(best, embedding)[:, 0]
        return masks, best_score[:, 0].float().cpu().numpy()

    def _zoomed(
        self, rgb: np.ndarray, prompts: Prompts, embedding: ImageEmbedding | None, zoom: float
    ) -> tuple[np.ndarray, np.ndarray]:
        from composeseg.zoom import segment_zoomed

        cfg = self.config
        prediction = segment_zoomed(
            self.sam,
            rgb,
            prompts,
            multimask=cfg.multimask,
            refine=cfg.refine,
            box_fit=cfg.mask_selection == "box_fit",
            context=zoom,
            embedding=embedding,
        ).best()
        return prediction.dense()[:, 0], prediction.scores[:, 0]

    def _select(
        self, logits: torch.Tensor, scores: torch.Tensor, prompts: Prompts, embedding: Any
    ) -> torch.Tensor:
        if logits.shape[1] == 1 or self.config.mask_selection == "score":
            return scores.argmax(dim=1)
        fg = logits > 0  # (N, K, M, M) in the model's low-res input frame
        if self.config.mask_selection == "largest" or prompts.boxes is None:
            return fg.flatten(2).sum(-1).argmax(dim=1)
        from composeseg.box_fit import low_res_boxes
        from composeseg.geometry import mask_box_iou

        return mask_box_iou(fg, low_res_boxes(self.sam, prompts, embedding)).argmax(dim=1)

    def _detections(
        self, prompts: Prompts, masks: np.ndarray, mask_score: np.ndarray
    ) -> sv.Detections:
        # a detector without scores counts as sure of every box: confidence = mask score
        n = len(prompts)
        scores = prompts.confidence if prompts.confidence is not None else np.ones(n, np.float32)
        detections = assemble(masks, prompts=prompts, mask_score=mask_score, detector_score=scores)
        if self.config.min_mask_area:
            keep = masks.reshape(n, -1).sum(1) >= self.config.min_mask_area
            return detections[keep]  # type: ignore[return-value]
        return detections
