"""Zero-shot edge detection from SAM masks (the paper's §7.2 recipe).

A 16x16 point grid is segmented with every candidate kept (no IoU or stability filter) except
duplicates removed by box NMS at 0.7. Each kept mask's unthresholded probability map
(sigmoid of its logits, upsampled to the image) goes through a Sobel filter; the gradient is
kept only on the mask's boundary; the pixel-wise maximum over masks, normalised to [0, 1], is
thinned by structured-edge non-maximum suppression and morphological thinning.

With guided upsampling (the demo model's default, or ``upsampling="guided"``) each probability
map is first refitted to the image by the colour guided filter of :mod:`composeseg.upsampling`,
with a wider window and a stronger regulariser than mask drawing uses (:data:`EDGE_CELLS`,
:data:`EDGE_EPS`): the boundary moves onto the object's edge, and texture inside an object is
too faint to pull it. Bilinear maps are the paper's.

Edge NMS and thinning come from ``pyEdgeEval`` (ports of Dollár's ``edgesNmsMex`` and of
MATLAB's ``bwmorph(…, 'thin')``); install with ``pip install composeseg[edges]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from composeseg.image import ImageSource, load_image
from composeseg.pipelines.amg import AutomaticMaskGenerator
from composeseg.pipelines.amg_data import MaskSet
from composeseg.pipelines.config import resolve_config
from composeseg.pipelines.runner import Runnable
from composeseg.transforms import upscale_logits
from composeseg.upsampling import IMAGE_GUIDED, check_upsampling, guided_radius, guided_refine

if TYPE_CHECKING:
    from composeseg.pipelines.runner import Job
    from composeseg.prediction import ImageEmbedding
    from composeseg.sam import Sam

# Upsampled probability maps are produced this many bytes at a time.
_SLICE_BYTES = 64 * 2**20


def require_pyedgeeval() -> Any:
    """Import ``pyEdgeEval.preprocess`` or fail naming the extra that installs it."""
    from composeseg.extras import require

    return require("pyEdgeEval.preprocess", extra="edges", purpose="edge NMS", package="pyEdgeEval")


EDGE_CELLS = 4.0
"""Guided refit window radius for edges, in logit cells (mask drawing uses 3)."""
EDGE_EPS = 1e-3
"""Guided refit regulariser for edges (mask drawing uses 1e-4, which follows faint texture).
Both chosen on the independent family's validation split (README, Segment everything)."""

MIN_SIDE = 3
"""Smallest image side an edge map is computed for (NMS needs a gradient on both axes)."""


@dataclass(frozen=True)
class EdgeConfig:
    """Settings of :class:`EdgeDetection` (the paper's §7.2 defaults).

    Attributes:
        points_per_side: grid of point prompts (16 in the paper).
        points_per_batch: prompts decoded together.
        box_nms_thresh: box IoU above which duplicate masks are dropped (0.7).
        nms: apply structured-edge non-maximum suppression (needs ``pyEdgeEval``).
        thin: thin the suppressed edges to one pixel (needs ``pyEdgeEval``).
        weight_by_iou: scale each mask's boundary gradient by its predicted IoU (clipped to
            [0, 1]), so masks the model doubts (a ragged piece of textured background) add
            faint edges. Not in the paper's recipe, hence off by default.
        upsampling: probability maps ``"bilinear"`` (the paper's) or ``"guided"`` (refitted
            to the image's edges; ``"learned"`` draws them guided too); None: the model's own
            (``Sam.upsampling``; the demo model: guided).
    """

    points_per_side: int = 16
    points_per_batch: int = 64
    box_nms_thresh: float = 0.7
    nms: bool = True
    thin: bool = True
    weight_by_iou: bool = False
    upsampling: str | None = None

    def __post_init__(self) -> None:
        if self.points_per_side < 1 or self.points_per_batch < 1:
            raise ValueError(
                f"points_per_side and points_per_batch must be >= 1, got "
                f"{self.points_per_side} and {self.points_per_batch}"
            )
        if not 0.0 <= self.box_nms_thresh <= 1.0:
            raise ValueError(f"box_nms_thresh must be in [0, 1], got {self.box_nms_thresh}")
        if self.upsampling is not None:
            check_upsampling(self.upsampling)


class EdgeDetection(Runnable):
    """Edge maps from SAM's automatic masks.

    Args:
        sam: a loaded model.
        config: an :class:`EdgeConfig` (default: the paper's settings).
        progress: show a progress bar.
        **overrides: :class:`EdgeConfig` fields, e.g. ``nms=False``.
    """

    def __init__(
        self,
        sam: Sam,
        *,
        config: EdgeConfig | None = None,
        progress: bool = False,
        **overrides: Any,
    ) -> None:
        self.config = cfg = resolve_config(EdgeConfig, config, overrides, "EdgeDetection")
        if cfg.nms or cfg.thin:
            require_pyedgeeval()
        self.sam = sam
        self.generator = AutomaticMaskGenerator(
            sam,
            progress=progress,
            points_per_side=cfg.points_per_side,
            points_per_batch=cfg.points_per_batch,
            pred_iou_thresh=0.0,
            stability_score_thresh=0.0,
            box_nms_thresh=cfg.box_nms_thresh,
        )
        self.generator.progress_label = "edges"

    def __call__(self, image: ImageSource) -> np.ndarray:
        """Edge strength of ``image`` (path, PIL or ``(H, W, 3) uint8``).

        Returns:
            ``(H, W) float32`` in [0, 1]; 0 off edges.
        """
        return self._predict(load_image(image), None, None)

    def job(self) -> Job:
        """This pipeline as the dataset runner's :class:`~composeseg.pipelines.runner.Job`:
        one 8-bit edge PNG per image (``OUT/edges/<key>.png``)."""
        from composeseg.pipelines.records import EdgeRecords
        from composeseg.pipelines.runner import Job

        return Job("edges", self._predict, self.sam, records=EdgeRecords())

    def _predict(self, rgb: np.ndarray, path: Any, embedding: ImageEmbedding | None) -> np.ndarray:
        if min(rgb.shape[:2]) < MIN_SIDE:  # the edge NMS takes gradients across both axes
            height, width = rgb.shape[:2]
            raise ValueError(
                f"edges need an image at least {MIN_SIDE} px on each side, got {width}x{height}"
            )
        masks = self.generator.generate(rgb, keep_logits=True, embedding=embedding)
        edges = self.mask_edges(masks, rgb.shape[:2], image=rgb)
        return postprocess_edges(edges, nms=self.config.nms, thin=self.config.thin)

    @property
    def guided(self) -> bool:
        """Whether probability maps are refitted to the image (:attr:`EdgeConfig.upsampling`)."""
        return (self.config.upsampling or self.sam.upsampling) in IMAGE_GUIDED

    def mask_edges(
        self, masks: MaskSet, image_size: tuple[int, int], *, image: np.ndarray | None = None
    ) -> np.ndarray:
        """Pixel-wise max over masks of the Sobel magnitude of each probability map, kept on
        the mask's boundary (times the mask's predicted IoU with ``weight_by_iou``),
        normalised to [0, 1]: ``(H, W) float32`` (before NMS). ``image``, the ``(H, W, 3)
        uint8`` RGB the masks are of, is needed when the maps are refitted (:attr:`guided`).
        """
        import cv2

        height, width = image_size
        guide = None
        if self.guided:
            if image is None or image.shape != (height, width, 3):
                raise ValueError(
                    f"guided edges need the ({height}, {width}, 3) image the masks are of, got "
                    f"{None if image is None else image.shape}"
                )
            guide = image
        edges = np.zeros((height, width), np.float32)
        if not len(masks) or masks.logits is None or masks.input_sizes is None:
            return edges
        radius = guided_radius(image_size, self.sam.backend.mask_size, EDGE_CELLS)
        kernel = np.ones((3, 3), np.uint8)
        weights = np.clip(masks.iou, 0.0, 1.0) if self.config.weight_by_iou else None
        step = max(1, _SLICE_BYTES // (4 * (self.sam.image_size**2 + height * width)))
        for start in range(0, len(masks), step):
            stop = min(start + step, len(masks))
            input_size = tuple(int(v) for v in masks.input_sizes[start])
            logits = upscale_logits(
                masks.logits[start:stop, None],
                self.sam.image_size,
                (input_size[0], input_size[1]),
                (height, width),
                self.sam.backend.resize_mode,
            )[:, 0].numpy()
            if guide is not None:
                guided_refine(logits, guide, radius, EDGE_EPS, out=logits)
            for k, logit in enumerate(logits, start):
                probability = 0.5 + 0.5 * np.tanh(0.5 * logit)  # sigmoid; exp overflows
                gx = cv2.Sobel(probability, cv2.CV_32F, 1, 0, ksize=3)
                gy = cv2.Sobel(probability, cv2.CV_32F, 0, 1, ksize=3)
                mask = (logit > 0).astype(np.uint8)
                boundary = cv2.dilate(mask, kernel) != cv2.erode(mask, kernel)
                strength = np.hypot(gx, gy)
                if weights is not None:  # the paper's recipe skips a full-image multiply
                    strength *= weights[k]
                np.maximum(edges, np.where(boundary, strength, 0.0), out=edges)
        peak = float(edges.max())
        return edges / peak if peak > 0 else edges


def postprocess_edges(edges: np.ndarray, *, nms: bool = True, thin: bool = True) -> np.ndarray:
    """Structured-edge NMS (radius 1, 5-pixel border suppression, multiplier 1.01) and
    thinning of an ``(H, W)`` edge map in [0, 1]; returns ``(H, W) float32`` in [0, 1]."""
    if not (nms or thin):
        return edges.astype(np.float32)
    preprocess = require_pyedgeeval()
    out = edges.astype(np.float64)
    if nms:
        out = preprocess.fast_nms(out, r=1, s=5, m=1.01)
    if thin:
        out = np.where(preprocess.binary_thin(out > 0), out, 0.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def sobel_edges(image: ImageSource, *, nms: bool = True) -> np.ndarray:
    """Baseline: Sobel gradient magnitude of the grey image, normalised to [0, 1], with the
    same NMS and thinning as :class:`EdgeDetection`; ``(H, W) float32``."""
    import cv2

    grey = cv2.cvtColor(load_image(image), cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    magnitude = np.hypot(
        cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    )
    peak = float(magnitude.max())
    edges = magnitude / peak if peak > 0 else magnitude
    return postprocess_edges(edges, nms=nms, thin=nms)


def canny_edges(image: ImageSource, *, levels: int = 16) -> np.ndarray:
    """Baseline: OpenCV Canny at ``levels`` hysteresis settings, averaged into a soft map
    (a pixel's value is the fraction of settings that mark it), ``(H, W) float32``.

    A single Canny run gives one precision/recall point; sweeping the high threshold (low =
    high / 2) gives the curve that ODS / AP need.
    """
    import cv2

    grey = cv2.cvtColor(load_image(image), cv2.COLOR_RGB2GRAY)
    grey = cv2.GaussianBlur(grey, (5, 5), 1.0)
    edges = np.zeros(grey.shape, np.float32)
    for high in np.linspace(20, 400, levels):
        edges += cv2.Canny(grey, float(high) / 2, float(high)) > 0
    return edges / levels
