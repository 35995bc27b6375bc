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

MaskSelection = Literal["score", "box_iou", "largest"]


@dataclass(frozen=True)
class InstanceConfig:
    """Options of :class:`InstanceSegmentation`.

    Attributes:
        refine: one refinement pass (best logits + box fed back); SAM's own evaluation does it.
        multimask: decode SAM's 3 candidates per object and keep one (``mask_selection``);
            with a box prompt one candidate is usually enough, so it defaults to off.
        mask_selection: with ``multimask``: ``"score"`` (highest predicted IoU),
            ``"box_iou"`` (candidate whose tight box best matches the prompt box, robust when
            predicted IoU is poorly calibrated) or ``"largest"``.
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
        if self.mask_selection not in ("score", "box_iou", "largest"):
            raise ValueError(
                f"mask_selection must be 'score', 'box_iou' or 'largest', got "
                f"{self.mask_selection!r}"
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

        cfg = self.config
        logits, scores = self.sam.decode_low_res(embedding, prompts, multimask=cfg.multimask)
        index = self._select(logits, scores, prompts, embedding)
        rows = torch.arange(len(prompts), device=logits.device)
        best, best_score = logits[rows, index], scores[rows, index]
        if cfg.refine:
            # the best logits go back as the mask prompt, staying on the device
            logits, scores = self.sam.decode_low_res(
                embedding, prompts, multimask=False, mask_logits=best
            )
            best, best_score = logits[:, 0], scores[:, 0]
        masks = self.sam.masks_from_logits(best[:, None], embedding)[:, 0]
        return masks, best_score.float().cpu().numpy()

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
            context=zoom,
            embedding=embedding,
        ).best()
        return prediction.dense()[:, 0], prediction.scores[:, 0]

    def _select(
        self, logits: torch.Tensor, scores: torch.Tensor, prompts: Prompts, embedding: Any
    ) -> torch.Tensor:
        import torch

        if logits.shape[1] == 1 or self.config.mask_selection == "score":
            return scores.argmax(dim=1)
        fg = logits > 0  # (N, K, M, M) in the model's low-res input frame
        if self.config.mask_selection == "largest" or prompts.boxes is None:
            return fg.flatten(2).sum(-1).argmax(dim=1)
        from composeseg.transforms import boxes_to_input_frame

        scale = logits.shape[-1] / self.sam.image_size
        frame = boxes_to_input_frame(prompts.boxes, embedding.original_size, embedding.input_size)
        boxes = torch.as_tensor(frame * scale, device=logits.device, dtype=torch.float32)
        return _box_iou_of_masks(fg, boxes).argmax(dim=1)

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


def _box_iou_of_masks(masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """IoU between each ``(N, K, M, M)`` mask's tight box and its object's ``(N, 4)`` box."""
    import torch

    height, width = masks.shape[-2:]
    rows, cols = masks.any(dim=3), masks.any(dim=2)  # (N, K, M)
    ys = torch.arange(height, device=masks.device).float()
    xs = torch.arange(width, device=masks.device).float()
    big = float(max(height, width))
    x0 = torch.where(cols, xs, big).amin(-1)
    x1 = torch.where(cols, xs + 1, -1.0).amax(-1)
    y0 = torch.where(rows, ys, big).amin(-1)
    y1 = torch.where(rows, ys + 1, -1.0).amax(-1)
    b = boxes[:, None, :]
    iw = (torch.minimum(x1, b[..., 2]) - torch.maximum(x0, b[..., 0])).clamp(min=0)
    ih = (torch.minimum(y1, b[..., 3]) - torch.maximum(y0, b[..., 1])).clamp(min=0)
    inter = iw * ih
    area_m = (x1 - x0).clamp(min=0) * (y1 - y0).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area_m + area_b - inter).clamp(min=1e-6)
