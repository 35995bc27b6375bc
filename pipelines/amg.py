"""Segment everything: SAM prompted by a grid of points, filtered, de-duplicated.

Same parameters and results as Meta's ``SamAutomaticMaskGenerator``, computed leaner: candidates
are filtered by predicted IoU at low resolution, only the survivors are upsampled (in slices of
bounded size) to score their stability, and every kept mask becomes a COCO RLE at once, so no
stage holds all candidate masks at full resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from composeseg import rle
from composeseg.image import ImageSource, load_image
from composeseg.pipelines.amg_data import (
    MaskSet,
    box_nms,
    remove_small_regions_and_nms,
    to_detections,
)
from composeseg.pipelines.amg_utils import (
    build_all_layer_point_grids,
    generate_crop_boxes,
    is_box_near_crop_edge,
    stability_score_np,
)
from composeseg.pipelines.config import resolve_config
from composeseg.pipelines.runner import Runnable
from composeseg.prediction import ImageEmbedding
from composeseg.prompts import Prompts
from composeseg.rle import Rle
from composeseg.transforms import upscale_logits
from composeseg.upsampling import IMAGE_GUIDED, guided_masks

if TYPE_CHECKING:
    import supervision as sv

    from composeseg.pipelines.runner import Job
    from composeseg.sam import Sam

OUTPUTS = ("mask", "rle")
# Float buffers of upsampled logits are produced in slices of at most this many bytes.
_SLICE_BYTES = 128 * 2**20


@dataclass(frozen=True)
class AmgConfig:
    """Settings of :class:`AutomaticMaskGenerator` (names and meanings as in Meta's generator).

    Attributes:
        points_per_side: grid points along each side (``points_per_side**2`` prompts per
            crop); None when ``point_grids`` is given.
        points_per_batch: prompts decoded and post-processed together (memory vs speed).
        pred_iou_thresh: keep masks whose predicted IoU is above this (0 disables).
        stability_score_thresh: keep masks whose stability score (IoU of the masks at logit
            cut-offs ``±stability_score_offset``) is at least this (0 disables).
        stability_score_offset: the logit offset of the stability score.
        box_nms_thresh: box IoU above which a less confident mask of the same crop is dropped.
        crop_n_layers: extra layers of crops; layer i has ``(2**i)**2`` overlapping crops.
        crop_nms_thresh: box IoU for removing duplicates between crops (smaller crops win).
        crop_overlap_ratio: overlap of neighbouring crops, a fraction of the short side.
        crop_n_points_downscale_factor: layer i uses ``points_per_side / factor**i`` points.
        point_grids: explicit ``(P, 2)`` xy grids in [0, 1], one per layer.
        min_mask_region_area: fill holes and drop islands smaller than this (pixels), then
            NMS again.
        output: "mask": ``Detections.mask`` is ``(N, H, W) bool``; "rle": ``mask`` is None and
            ``data["rle"]`` holds N COCO RLEs (``{"size": [H, W], "counts": str}``), for huge
            images.
    """

    points_per_side: int | None = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    point_grids: tuple[np.ndarray, ...] | None = None
    min_mask_region_area: int = 0
    output: str = "mask"

    def __post_init__(self) -> None:
        if self.point_grids is not None and not isinstance(self.point_grids, tuple):
            object.__setattr__(self, "point_grids", tuple(self.point_grids))
        if (self.points_per_side is None) == (self.point_grids is None):
            raise ValueError(
                "give exactly one of points_per_side and point_grids, got "
                f"points_per_side={self.points_per_side}, point_grids="
                f"{'None' if self.point_grids is None else 'a list'}"
            )
        for name in ("points_per_batch", "crop_n_points_downscale_factor"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.points_per_side is not None and self.points_per_side < 1:
            raise ValueError(f"points_per_side must be >= 1, got {self.points_per_side}")
        if self.crop_n_layers < 0 or self.min_mask_region_area < 0:
            raise ValueError(
                f"crop_n_layers and min_mask_region_area must be >= 0, got "
                f"{self.crop_n_layers} and {self.min_mask_region_area}"
            )
        for name in ("box_nms_thresh", "crop_nms_thresh", "crop_overlap_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        if self.point_grids is not None:
            if len(self.point_grids) != self.crop_n_layers + 1:
                raise ValueError(
                    f"point_grids needs one grid per crop layer ({self.crop_n_layers + 1}), "
                    f"got {len(self.point_grids)}"
                )
            for i, grid in enumerate(self.point_grids):
                if np.ndim(grid) != 2 or np.shape(grid)[1] != 2:
                    raise ValueError(f"point_grids[{i}] must be (P, 2), got {np.shape(grid)}")

    def grids(self) -> list[np.ndarray]:
        """``(P, 2) float64`` normalised xy grids, one per crop layer."""
        if self.point_grids is not None:
            return [np.asarray(g, np.float64) for g in self.point_grids]
        assert self.points_per_side is not None  # checked in __post_init__
        return build_all_layer_point_grids(
            self.points_per_side, self.crop_n_layers, self.crop_n_points_downscale_factor
        )


class AutomaticMaskGenerator(Runnable):
    """Masks for everything in an image, from a grid of point prompts.

    Parameter names and meanings are those of Meta's ``SamAutomaticMaskGenerator``, so code
    moves over by renaming the class; on the same weights the two return the same masks
    (``tests/pipelines/test_amg_parity.py``). Differences: the result is a
    ``supervision.Detections``, and ``output="rle"`` replaces Meta's ``output_mode``.

    Args:
        sam: a loaded model (:func:`composeseg.load_sam`).
        config: an :class:`AmgConfig` (default: Meta's defaults).
        progress: show a progress bar over crops and prompt batches.
        **overrides: :class:`AmgConfig` fields, e.g. ``points_per_side=16``.
    """

    def __init__(
        self,
        sam: Sam,
        *,
        config: AmgConfig | None = None,
        progress: bool = False,
        **overrides: Any,
    ) -> None:
        self.sam = sam
        self.config = resolve_config(AmgConfig, config, overrides, "AutomaticMaskGenerator")
        self.progress = progress
        self.progress_label = "segment everything"
        """The progress bar's label; pipelines built on this generator name themselves."""
        self._grids = self.config.grids()

    def __call__(self, image: ImageSource) -> sv.Detections:
        """Segment everything in ``image`` (path, PIL or ``(H, W, 3) uint8``).

        Returns:
            ``supervision.Detections``: ``xyxy (N, 4)`` pixels of the image (max inclusive),
            ``mask (N, H, W) bool`` (None with ``output="rle"``), ``confidence`` = predicted
            IoU; ``data["stability_score"] (N,)``, ``data["point"] (N, 2)`` xy prompt,
            ``data["crop_box"] (N, 4)`` xyxy crop; with ``output="rle"`` also ``data["rle"]``.
        """
        rgb = load_image(image)
        return to_detections(self.generate(rgb), rgb.shape[:2], self.config.output)

    def job(self) -> Job:
        """This pipeline as the dataset runner's :class:`~composeseg.pipelines.runner.Job`."""
        from composeseg.pipelines.runner import Job
        from composeseg.pipelines.visualize import annotate

        return Job(self.progress_label, self._predict, self.sam, annotate=annotate)

    def _predict(
        self, rgb: np.ndarray, path: Any, embedding: ImageEmbedding | None
    ) -> sv.Detections:
        return to_detections(
            self.generate(rgb, embedding=embedding), rgb.shape[:2], self.config.output
        )

    def generate(
        self,
        image: np.ndarray,
        *,
        keep_logits: bool = False,
        embedding: ImageEmbedding | None = None,
    ) -> MaskSet:
        """All stages up to (and including) small-region cleanup, on an ``(H, W, 3) uint8``
        image; ``keep_logits`` also returns each kept mask's low-res logits. ``embedding``
        (of the whole image) replaces the first crop's encoder pass."""
        config = self.config
        size = (int(image.shape[0]), int(image.shape[1]))
        crop_boxes, layers = generate_crop_boxes(
            size, config.crop_n_layers, config.crop_overlap_ratio
        )
        bar = self._bar(sum(-(-len(self._grids[i]) // config.points_per_batch) for i in layers))
        parts = [
            self._process_crop(image, box, layer, keep_logits, bar, embedding if i == 0 else None)
            for i, (box, layer) in enumerate(zip(crop_boxes, layers, strict=True))
        ]
        if bar is not None:
            bar.close()
        data = MaskSet.concatenate(parts)
        if len(crop_boxes) > 1 and len(data):
            from torchvision.ops import box_area

            # smaller crops see objects at a higher resolution: prefer their masks
            scores = 1 / box_area(torch.as_tensor(data.crop_boxes))
            data = data.select(box_nms(data.boxes, scores, config.crop_nms_thresh))
        if config.min_mask_region_area > 0 and len(data):
            data = remove_small_regions_and_nms(
                data,
                size,
                config.min_mask_region_area,
                max(config.box_nms_thresh, config.crop_nms_thresh),
            )
        return data

    def _bar(self, total: int) -> Any:
        if not self.progress:
            return None
        from composeseg.progress import progress

        return progress(total=total, desc=self.progress_label, unit="batch")

    def _process_crop(
        self,
        image: np.ndarray,
        crop_box: list[int],
        layer: int,
        keep_logits: bool,
        bar: Any,
        embedding: ImageEmbedding | None,
    ) -> MaskSet:
        x0, y0, x1, y1 = crop_box
        return self.generate_crop(
            image[y0:y1, x0:x1],
            crop_box,
            (int(image.shape[0]), int(image.shape[1])),
            layer=layer,
            keep_logits=keep_logits,
            embedding=embedding,
            bar=bar,
        )

    def generate_crop(
        self,
        crop: np.ndarray,
        crop_box: list[int],
        image_size: tuple[int, int],
        *,
        layer: int = 0,
        edge_masks: bool = False,
        keep_logits: bool = False,
        embedding: ImageEmbedding | None = None,
        bar: Any = None,
    ) -> MaskSet:
        """Masks of one crop of a (possibly huge, never loaded) image, after this crop's NMS.

        Args:
            crop: ``(h, w, 3) uint8``, the pixels of ``crop_box``.
            crop_box: ``[x0, y0, x1, y1]`` of the crop, pixels of the image.
            image_size: ``(H, W)`` of the whole image.
            layer: the crop layer, whose point grid is used.
            edge_masks: keep masks that touch a crop edge inside the image (Meta's generator
                drops them; tiled pipelines merge them across seams).
            embedding: of ``crop``, to skip the encoder.

        Returns:
            A :class:`MaskSet` whose RLEs are in the crop's frame (``frames``), boxes in
            pixels of the image.
        """
        x0, y0, x1, y1 = crop_box
        if embedding is None:
            embedding = self.sam.embed(crop)
        height, width = y1 - y0, x1 - x0
        points = self._grids[layer] * np.array([[width, height]], np.float64)
        step = self.config.points_per_batch
        parts = []
        for start in range(0, len(points), step):
            batch = points[start : start + step]
            parts.append(
                self._process_batch(embedding, batch, crop_box, image_size, keep_logits, edge_masks)
            )
            if bar is not None:
                bar.update(1)
        data = MaskSet.concatenate(parts)
        data = data.select(box_nms(data.boxes, data.iou, self.config.box_nms_thresh))
        data.crop_boxes = np.tile(np.asarray(crop_box, np.int64), (len(data), 1))
        if self.sam.upsampling in IMAGE_GUIDED and len(data):  # the refiner needs logits
            data = self._guided(data, embedding, crop_box)
        return data

    def _guided(self, data: MaskSet, embedding: ImageEmbedding, crop_box: list[int]) -> MaskSet:
        """Refit the masks NMS kept to the crop's edges. Candidates are scored, filtered and
        deduplicated as bilinear masks, then only the survivors are refined (a tenth of them or
        less); their bilinear masks start the filter as well as their logits would."""
        height, width = embedding.original_size
        step = max(1, _SLICE_BYTES // (5 * height * width))  # bool masks + float32 logits
        rles: list[Rle] = []
        for start in range(0, len(data), step):
            masks = np.stack([rle.decode(r) for r in data.rles[start : start + step]])
            rles.extend(rle.encode(guided_masks(masks, embedding, self.sam.backend.mask_size)))
        data.rles = rles
        data.boxes = rle.boxes_inclusive(rles) + np.array(crop_box[:2] * 2, np.float32)
        return data

    def _process_batch(
        self,
        embedding: ImageEmbedding,
        points: np.ndarray,
        crop_box: list[int],
        image_size: tuple[int, ...],
        keep_logits: bool,
        edge_masks: bool = False,
    ) -> MaskSet:
        config, sam = self.config, self.sam
        prompts = Prompts(points=points[:, None], point_labels=np.ones((len(points), 1)))
        logits, iou = sam.decode_low_res(embedding, prompts, multimask=True)
        logits, iou = logits.flatten(0, 1), iou.flatten(0, 1)
        candidates = np.repeat(np.arange(len(points)), logits.shape[0] // max(len(points), 1))
        if config.pred_iou_thresh > 0.0:
            keep = torch.nonzero(iou > config.pred_iou_thresh)[:, 0]
            logits, iou, candidates = logits[keep], iou[keep], candidates[keep.cpu().numpy()]
        rles: list[Rle] = []
        kept: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        height, width = embedding.original_size
        step = max(1, _SLICE_BYTES // (4 * (sam.image_size**2 + 2 * height * width)))
        for start in range(0, len(logits), step):
            # Upsampled transposed, the masks come out in the column-major order COCO RLE
            # reads, with no copy (bilinear resizing treats both axes alike).
            full = upscale_logits(
                logits[start : start + step, None].transpose(-1, -2),
                sam.image_size,
                embedding.input_size[::-1],
                embedding.original_size[::-1],
                sam.backend.resize_mode,
            )[:, 0]
            values = full.cpu().numpy()
            stability = stability_score_np(values, 0.0, config.stability_score_offset)
            index = np.arange(start, start + len(values))
            if config.stability_score_thresh > 0.0:
                ok = stability >= config.stability_score_thresh
                values, stability, index = values[ok], stability[ok], index[ok]
            rles.extend(rle.encode_transposed(values > 0.0))
            kept.append(index)
            scores.append(stability)
            del full, values
        index = np.concatenate(kept) if kept else np.zeros(0, np.int64)
        x0, y0 = crop_box[0], crop_box[1]
        boxes = rle.boxes_inclusive(rles) + np.array([x0, y0, x0, y0], np.float32)
        height_full, width_full = int(image_size[0]), int(image_size[1])
        edge = is_box_near_crop_edge(boxes, crop_box, [0, 0, width_full, height_full])
        ok_np = np.ones(len(edge), bool) if edge_masks else ~edge
        index_np = index[ok_np]
        return MaskSet(
            rles=[r for r, ok in zip(rles, ok_np, strict=True) if ok],
            frames=np.tile(np.asarray(crop_box, np.int64), (len(index_np), 1)),
            boxes=boxes[ok_np],
            iou=iou.cpu().numpy()[index_np].astype(np.float32),
            stability=(np.concatenate(scores) if scores else np.zeros(0, np.float32))[ok_np],
            points=(points[candidates[index_np]] + np.array([x0, y0])).astype(np.float32),
            crop_boxes=np.tile(np.asarray(crop_box, np.int64), (len(index_np), 1)),
            logits=logits[torch.as_tensor(index_np, dtype=torch.long)].cpu()
            if keep_logits
            else None,
            input_sizes=np.tile(np.asarray(embedding.input_size, np.int64), (len(index_np), 1))
            if keep_logits
            else None,
        )
