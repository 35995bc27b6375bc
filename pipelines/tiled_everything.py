"""Segment everything, or object proposals, on huge images: a grid of crops at full
resolution through the generator's crop machinery, masks merged across seams on RLE.

Each tile is one crop of :meth:`AutomaticMaskGenerator.generate_crop` (its point grid, filters
and in-crop NMS), keeping the masks that touch a seam; those are merged with their other views
(:func:`~composeseg.pipelines.tiling.merge_across_tiles`), so an object larger than the
overlap is one mask, and duplicates in the overlaps go. Every mask lives as its tight-box
patch, so memory holds one tile's work plus compact RLEs, whatever the image's size.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from composeseg.detections import assemble
from composeseg.pipelines.amg import OUTPUTS, AmgConfig, AutomaticMaskGenerator
from composeseg.pipelines.config import resolve_config
from composeseg.pipelines.proposals import ProposalConfig
from composeseg.pipelines.runner import Runnable
from composeseg.pipelines.tiled import model_crop
from composeseg.pipelines.tiling import MaskPatch, TileGrid, merge_across_tiles, patch_iou
from composeseg.raster import ArrayRaster, Raster, open_raster
from composeseg.rle import decode, to_json

if TYPE_CHECKING:
    import supervision as sv

    from composeseg.image import ImageSource
    from composeseg.pipelines.runner import Job
    from composeseg.prediction import ImageEmbedding
    from composeseg.sam import Sam


@dataclass(frozen=True)
class TiledMaskConfig:
    """Options of :class:`TiledMaskGenerator` (the generator's own are an
    :class:`~composeseg.pipelines.AmgConfig`).

    Attributes:
        tile: side of the crops SAM sees, pixels; None: the model's input side (full
            resolution).
        overlap: pixels shared by neighbouring tiles, or a fraction of ``tile`` (a float
            below 1); must be smaller than the tile.
        upscale: allow a tile below the model's input (tiles are enlarged).
        merge_iou: masks of neighbouring tiles whose parts inside the tiles' common region
            have at least this IoU are one object.
        nms_iou: whole masks of one object above this mask IoU are duplicates.
        seam_margin: a mask whose box comes within this many pixels of a seam counts as cut
            there (Meta's crop-edge tolerance, 20 px).
        skip_uniform: tiles of one colour (blank scan background, nodata) are not encoded.
        max_masks: keep the best N masks of the image (None: all).
        rank: "iou": confidence = predicted IoU (the generator's); "proposals": the mean of
            predicted IoU and stability (:class:`~composeseg.pipelines.ObjectProposals`).
        output: "rle" (``mask`` None, ``data["rle"]``) or "mask" (``(N, H, W) bool``).
        large_image: open files above Pillow's pixel limit.
    """

    tile: int | None = None
    overlap: float = 0.2
    upscale: bool = False
    merge_iou: float = 0.7
    nms_iou: float = 0.7
    seam_margin: float = 20.0
    skip_uniform: bool = True
    max_masks: int | None = None
    rank: str = "iou"
    output: str = "rle"
    large_image: bool = False

    def __post_init__(self) -> None:
        if self.tile is not None:
            TileGrid.build((1, 1), self.tile, self.overlap)  # checks tile and overlap
        for name in ("merge_iou", "nms_iou"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.seam_margin < 0:
            raise ValueError(f"seam_margin must be >= 0, got {self.seam_margin}")
        if self.max_masks is not None and self.max_masks < 1:
            raise ValueError(f"max_masks must be >= 1 or None, got {self.max_masks}")
        if self.rank not in ("iou", "proposals"):
            raise ValueError(f"rank must be 'iou' or 'proposals', got {self.rank!r}")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")


class TiledMaskGenerator(Runnable):
    """Masks for everything in an image of any size, tile by tile at full resolution.

    Args:
        sam: a loaded model.
        config: a :class:`TiledMaskConfig`.
        generator: the per-tile :class:`~composeseg.pipelines.AmgConfig` (its crop layers
            must be 0: the tiles are the crops).
        progress: show a progress bar over tiles.
        **overrides: fields of :class:`TiledMaskConfig` or :class:`AmgConfig`
            (``tile=1024, points_per_side=16``).

    Calling it returns ``supervision.Detections`` as :class:`AutomaticMaskGenerator` does
    (boxes with inclusive max, confidence = predicted IoU, ``data["stability_score"]``,
    ``data["point"]``, ``data["crop_box"]`` = the tile), masks as ``data["rle"]`` by
    default. :meth:`proposals` builds the object-proposal variant.
    """

    def __init__(
        self,
        sam: Sam,
        *,
        config: TiledMaskConfig | None = None,
        generator: AmgConfig | None = None,
        progress: bool = False,
        **overrides: Any,
    ) -> None:
        own = {f.name for f in fields(TiledMaskConfig)}
        self.config = resolve_config(
            TiledMaskConfig,
            config,
            {k: v for k, v in overrides.items() if k in own},
            "TiledMaskGenerator",
        )
        amg = resolve_config(
            AmgConfig,
            generator,
            {k: v for k, v in overrides.items() if k not in own},
            "TiledMaskGenerator",
        )
        if amg.crop_n_layers:
            raise ValueError(
                f"crop_n_layers must be 0 in a tiled generator (the tiles are its crops), got "
                f"{amg.crop_n_layers}"
            )
        self.tile = model_crop(sam, self.config.tile, self.config.upscale, "tile")
        TileGrid.build((1, 1), self.tile, self.config.overlap)  # the overlap fits the tile
        self.sam = sam
        self.progress = progress
        self.generator = AutomaticMaskGenerator(sam, config=amg)
        self.progress_label = "segment everything (tiled)"

    @classmethod
    def proposals(cls, sam: Sam, **overrides: Any) -> TiledMaskGenerator:
        """Object proposals (the paper's §7.3 settings per tile: 64x64 points, no IoU or
        stability filter, box NMS 0.9), ranked by mean of predicted IoU and stability; keyword
        overrides as for the constructor (``max_masks=1000``)."""
        paper = ProposalConfig()
        settings: dict[str, Any] = {
            "points_per_side": paper.points_per_side,
            "points_per_batch": paper.points_per_batch,
            "pred_iou_thresh": 0.0,
            "stability_score_thresh": 0.0,
            "box_nms_thresh": paper.box_nms_thresh,
            "rank": "proposals",
        }
        pipe = cls(sam, **{**settings, **overrides})
        pipe.progress_label = "proposals (tiled)"
        return pipe

    def __repr__(self) -> str:
        return f"TiledMaskGenerator({self.sam!r}, {self.config}, {self.generator.config})"

    def __call__(self, image: ImageSource | Raster) -> sv.Detections:
        """Masks of one image: a path (read lazily where the format allows), an array or a
        :class:`~composeseg.raster.Raster`."""
        raster = open_raster(image, large_image=self.config.large_image)
        try:
            return self.generate(raster)
        finally:
            if raster is not image:
                raster.close()

    def job(self) -> Job:
        """This pipeline as the dataset runner's job (it encodes its own tiles)."""
        from composeseg.pipelines.runner import Job
        from composeseg.pipelines.visualize import annotate

        return Job(self.progress_label, self._predict, None, annotate=annotate)

    def _predict(
        self, rgb: np.ndarray, path: Any, embedding: ImageEmbedding | None
    ) -> sv.Detections:
        return self.generate(ArrayRaster(rgb))

    def generate(self, raster: Raster) -> sv.Detections:
        """Every tile through the generator, masks merged across seams."""
        size = (raster.height, raster.width)
        grid = TileGrid.build(size, self.tile, self.config.overlap)
        views: list[tuple[MaskPatch, float, float, np.ndarray, int]] = []
        bar = self._bar(len(grid))
        for t, window in enumerate(grid.boxes):
            views += self._tile(raster, window, size, t)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return self._merge(views, grid, size)

    def _tile(
        self, raster: Raster, window: np.ndarray, size: tuple[int, int], t: int
    ) -> list[tuple[MaskPatch, float, float, np.ndarray, int]]:
        box = [int(v) for v in window]
        rgb = np.ascontiguousarray(raster.read((box[0], box[1], box[2], box[3])))
        if self.config.skip_uniform and not np.ptp(rgb.reshape(-1, 3), axis=0).any():
            return []  # nothing to segment on one colour; saves an encoder pass
        found = self.generator.generate_crop(rgb, box, size, edge_masks=True)
        return [
            (
                MaskPatch.from_mask(decode(found.rles[i]), (box[0], box[1])),
                float(found.iou[i]),
                float(np.nan_to_num(found.stability[i], nan=0.0)),
                found.points[i],
                t,
            )
            for i in range(len(found))
        ]

    def _merge(
        self,
        views: list[tuple[MaskPatch, float, float, np.ndarray, int]],
        grid: TileGrid,
        size: tuple[int, int],
    ) -> sv.Detections:
        cfg = self.config
        patches = [v[0] for v in views]
        iou = np.array([v[1] for v in views], np.float32)
        stability = np.array([v[2] for v in views], np.float32)
        ranking = (iou + stability) / 2 if cfg.rank == "proposals" else iou
        objects = merge_across_tiles(
            np.array([p.box for p in patches], np.float64).reshape(-1, 4),
            np.array([v[4] for v in views], np.int64),
            ranking.astype(np.float64),
            grid,
            agreement=lambda i, j, region: patch_iou(patches[i], patches[j], region),
            duplicate=lambda i, j: patch_iou(patches[i], patches[j]),
            join_threshold=cfg.merge_iou,
            nms_threshold=cfg.nms_iou,
            margin=cfg.seam_margin,
        )
        merged = [
            patches[m[0]] if len(m) == 1 else MaskPatch.unite([patches[i] for i in m])
            for m in objects
        ]
        keep = [k for k, p in enumerate(merged) if p.area > 0]
        if cfg.max_masks is not None:
            keep = keep[: cfg.max_masks]  # objects come best first
        best = np.array([objects[k][0] for k in keep], np.int64)
        merged = [merged[k] for k in keep]
        n = len(merged)
        boxes = np.array([p.box for p in merged], np.float32).reshape(n, 4)
        boxes[:, 2:] -= 1  # the generator's (Meta's) inclusive-max boxes
        data: dict[str, Any] = {
            "stability_score": stability[best],
            "point": np.array([views[i][3] for i in best], np.float32).reshape(n, 2),
            "crop_box": grid.boxes[np.array([views[i][4] for i in best], np.int64)].reshape(n, 4),
        }
        masks = None
        if cfg.output == "rle":
            rles = np.empty(n, dtype=object)
            for k, patch in enumerate(merged):
                rles[k] = to_json(patch.to_image_rle(size))
            data["rle"] = rles
        else:
            masks = np.zeros((n, *size), bool)
            for k, patch in enumerate(merged):
                x0, y0, x1, y1 = (int(v) for v in patch.box)
                masks[k, y0:y1, x0:x1] = patch.decode()
        if cfg.rank == "proposals":
            data["predicted_iou"] = iou[best]
            return assemble(masks, xyxy=boxes, mask_score=ranking[best], data=data)
        return assemble(masks, xyxy=boxes, mask_score=iou[best], data=data)

    def _bar(self, total: int) -> Any:
        if not self.progress:
            return None
        from composeseg.progress import progress

        return progress(total=total, desc=self.progress_label, unit="tile")
