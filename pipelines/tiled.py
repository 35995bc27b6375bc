"""Detector -> SAM on huge images: detection on overlapping tiles, boxes merged across seams,
every object segmented at full resolution in a crop around it, masks kept as RLE.

The image is read window by window (:mod:`composeseg.raster`), so a tiled TIFF is never in
memory whole, and no image-sized mask exists: a mask lives as its tight-box patch
(:class:`~composeseg.pipelines.tiling.MaskPatch`) until it becomes a COCO RLE of the image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from composeseg.detections import assemble
from composeseg.pipelines.amg import OUTPUTS
from composeseg.pipelines.config import resolve_config
from composeseg.pipelines.instance import (
    Detector,
    InstanceConfig,
    InstanceSegmentation,
    MaskSelection,
)
from composeseg.pipelines.runner import Runnable
from composeseg.pipelines.tiling import (
    MaskPatch,
    TileGrid,
    box_pair_iou,
    clipped_box_overlap,
    merge_across_tiles,
    plan_crops,
    union_box,
)
from composeseg.prompts import Prompts
from composeseg.raster import Raster, open_raster
from composeseg.rle import to_json

if TYPE_CHECKING:
    import supervision as sv

    from composeseg.image import ImageSource
    from composeseg.pipelines.runner import Job
    from composeseg.prediction import ImageEmbedding
    from composeseg.sam import Sam


@dataclass(frozen=True)
class TiledInstanceConfig:
    """Options of :class:`TiledInstanceSegmentation`.

    Attributes:
        tile: side of the detector's tiles, pixels.
        overlap: pixels shared by neighbouring tiles, or a fraction of ``tile`` (a float
            below 1); must be smaller than the tile. Objects smaller than the overlap are
            seen whole by some tile.
        crop_size: side of SAM's crops, pixels; None: the model's input side, so SAM sees
            pixels one to one.
        upscale: allow ``crop_size`` below the model's input (crops are enlarged).
        merge_overlap: boxes of neighbouring tiles are one object when, cut to the tiles'
            common region, at least this share of the smaller one lies in the other.
        nms_iou: whole boxes of one object above this IoU are duplicates (the best stays).
        seam_margin: a box side within this many pixels of a seam counts as cut there.
        class_agnostic: merge boxes of different classes too.
        context: margin kept around each object in its crop on every side, a fraction of
            its longer side (at least 16 px). At 0.8 an object fills at most 40 % of its
            crop's side, the scale SAM likes (the demo model's box IoU on a large object:
            0.33 filling 77 % of the crop, 0.65 at 50 %, 0.92 at 38 %); objects larger than
            that get a larger crop of their own, shrunk to the model's input.
        refine, multimask, mask_selection, min_mask_area: as in
            :class:`~composeseg.pipelines.InstanceConfig`.
        output: "rle" (``mask`` None, ``data["rle"]`` COCO RLEs of the image) or "mask"
            (``(N, H, W) bool``, for images that fit in memory).
        large_image: open files above Pillow's pixel limit (:func:`composeseg.raster.open_raster`).
    """

    tile: int = 1024
    overlap: float = 0.2
    crop_size: int | None = None
    upscale: bool = False
    merge_overlap: float = 0.5
    nms_iou: float = 0.5
    seam_margin: float = 8.0
    class_agnostic: bool = False
    context: float = 0.8
    refine: bool = True
    multimask: bool = False
    mask_selection: MaskSelection = "score"
    min_mask_area: int = 0
    output: str = "rle"
    large_image: bool = False

    def __post_init__(self) -> None:
        TileGrid.build((1, 1), self.tile, self.overlap)  # checks tile and overlap
        crop = self.crop_size
        if crop is not None and (isinstance(crop, bool) or int(crop) != crop or crop < 2):
            raise ValueError(f"crop_size must be an int >= 2 or None, got {self.crop_size!r}")
        for name in ("merge_overlap", "nms_iou"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.seam_margin < 0 or self.context < 0:
            raise ValueError(
                f"seam_margin and context must be >= 0, got {self.seam_margin}, {self.context}"
            )
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        self.instance()  # checks its fields

    def instance(self) -> InstanceConfig:
        """The per-crop :class:`~composeseg.pipelines.InstanceConfig`."""
        return InstanceConfig(
            refine=self.refine,
            multimask=self.multimask,
            mask_selection=self.mask_selection,
            min_mask_area=0,  # applied to the final masks
        )


def model_crop(sam: Sam, size: int | None, upscale: bool, what: str) -> int:
    """The crop side SAM works on: ``size`` or the model's input side, refusing a crop that
    would be enlarged unless ``upscale``."""
    crop = int(size) if size is not None else int(sam.image_size)
    if crop < sam.image_size and not upscale:
        raise ValueError(
            f"{what} {crop} px is smaller than the model's {sam.image_size} px input: SAM "
            f"would see it enlarged {sam.image_size / crop:.2g}x; use {what} >= "
            f"{sam.image_size}, or upscale=True (command line: --upscale) to allow it"
        )
    return crop


class TiledInstanceSegmentation(Runnable):
    """Segment every object a detector finds in an image of any size.

    1. The detector runs on overlapping tiles (``tile``, ``overlap``); its boxes move to image
       pixels and are merged across seams (:func:`~composeseg.pipelines.tiling.merge_across_tiles`):
       duplicates in the overlaps go, boxes cut by a seam are joined, so an object that
       crosses seams is one box. A detector with ``detect_file`` (COCO boxes) given a path
       returns the image's boxes at once.
    2. Objects are grouped into crops of ``crop_size`` pixels (the model's input by default:
       full resolution), each object with context around it; the encoder runs once per
       crop, not once per object (:func:`~composeseg.pipelines.tiling.plan_crops`).
    3. Each crop's objects are segmented as by :class:`~composeseg.pipelines.InstanceSegmentation`
       (refinement pass included) and their masks pasted back as RLE of the image.

    Args:
        sam: a loaded :class:`~composeseg.Sam`.
        detector: any callable ``image -> Prompts`` with boxes (see :mod:`composeseg.adapters`).
        config: a :class:`TiledInstanceConfig`.
        progress: show a progress bar over tiles and crops.
        **overrides: :class:`TiledInstanceConfig` fields, e.g. ``tile=512``.

    Calling ``pipe(image)`` (a path, read lazily where the format allows; an array; or a
    :class:`~composeseg.raster.Raster`) returns ``supervision.Detections`` as
    ``InstanceSegmentation`` does, with ``mask`` None and ``data["rle"]`` (COCO RLEs of the
    image) by default, and ``data["crop_box"] (N, 4)`` the window SAM saw each object in.
    """

    def __init__(
        self,
        sam: Sam,
        detector: Detector,
        *,
        config: TiledInstanceConfig | None = None,
        progress: bool = False,
        **overrides: Any,
    ) -> None:
        self.config = resolve_config(
            TiledInstanceConfig, config, overrides, "TiledInstanceSegmentation"
        )
        self.crop = model_crop(sam, self.config.crop_size, self.config.upscale, "crop_size")
        self.sam = sam
        self.progress = progress
        self._instance = InstanceSegmentation(sam, detector, config=self.config.instance())

    @property
    def detector(self) -> Detector | None:
        return self._instance.detector

    def __repr__(self) -> str:
        return f"TiledInstanceSegmentation({self.sam!r}, {self.detector!r}, {self.config})"

    def __call__(self, image: ImageSource | Raster) -> sv.Detections:
        """Segment one image; a path is opened with :func:`~composeseg.raster.open_raster`."""
        path = Path(image) if isinstance(image, (str, os.PathLike)) else None
        raster = open_raster(image, large_image=self.config.large_image)
        try:
            return self.segment_raster(raster, path)
        finally:
            if raster is not image:
                raster.close()

    def job(self) -> Job:
        """This pipeline as the dataset runner's :class:`~composeseg.pipelines.runner.Job`:
        it encodes its own crops (``sam=None``); the runner hands it whole images."""
        from composeseg.pipelines.runner import Job
        from composeseg.pipelines.visualize import annotate

        return Job("segment (tiled)", self._predict, None, annotate=annotate)

    def _predict(
        self, rgb: np.ndarray, path: Path | None, embedding: ImageEmbedding | None
    ) -> sv.Detections:
        from composeseg.raster import ArrayRaster

        return self.segment_raster(ArrayRaster(rgb, str(path or "array")), path)

    def detect(self, raster: Raster, path: Path | None = None) -> Prompts:
        """The detector's boxes on every tile, merged across seams, in image pixels."""
        cfg = self.config
        detect_file = getattr(self.detector, "detect_file", None)
        if detect_file is not None and path is not None:
            # boxes read from a file are the image's already: nothing to tile, no pixels read
            found = detect_file(path, None)
            if not isinstance(found, Prompts):
                raise TypeError(f"{self.detector!r} returned {type(found).__name__}, not Prompts")
            return found
        grid = TileGrid.build((raster.height, raster.width), cfg.tile, cfg.overlap)
        views: list[Prompts] = []
        tiles: list[np.ndarray] = []
        bar = self._bar(len(grid), "detect (tiles)")
        for t, window in enumerate(grid.boxes):
            x0, y0, x1, y1 = (int(v) for v in window)
            found = _boxes_only(self._instance.detect(raster.read((x0, y0, x1, y1))), t)
            if len(found):
                from composeseg.sam import fit_to_image

                found = fit_to_image(found, (y1 - y0, x1 - x0))
                assert found.boxes is not None  # checked by _boxes_only
                views.append(
                    found.replace(boxes=found.boxes + np.array([x0, y0, x0, y0], np.float32))
                )
                tiles.append(np.full(len(found), t))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        if not views:
            return Prompts(boxes=np.zeros((0, 4), np.float32))
        every = Prompts.concatenate(views)
        return merge_boxes(every, np.concatenate(tiles), grid, cfg)

    def segment_raster(self, raster: Raster, path: Path | None = None) -> sv.Detections:
        """Detect and segment on a :class:`~composeseg.raster.Raster`."""
        return self.segment(raster, self.detect(raster, path))

    def segment(self, raster: Raster | ImageSource, prompts: Prompts) -> sv.Detections:
        """Masks for box ``prompts`` (image pixels) on an image of any size, each object in a
        crop around it; see the class docstring for the output."""

        source = raster
        raster = open_raster(source, large_image=self.config.large_image)
        try:
            return self._segment(raster, prompts)
        finally:
            if raster is not source:
                raster.close()

    def _segment(self, raster: Raster, prompts: Prompts) -> sv.Detections:
        from composeseg.sam import fit_to_image

        size = (raster.height, raster.width)
        prompts = _boxes_only(prompts, None)
        if len(prompts):
            prompts = fit_to_image(prompts, size)
        assert prompts.boxes is not None
        plans = plan_crops(prompts.boxes, size, self.crop, context=self.config.context)
        patches: list[MaskPatch | None] = [None] * len(prompts)
        mask_score = np.zeros(len(prompts), np.float32)
        crop_box = np.zeros((len(prompts), 4), np.int64)
        bar = self._bar(len(plans), "segment (crops)")
        for window, members in plans:
            self._segment_crop(raster, window, prompts, members, patches, mask_score)
            crop_box[members] = window
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        empty = MaskPatch.from_mask(np.zeros((0, 0), bool))
        done = [p if p is not None else empty for p in patches]
        return self._detections(prompts, done, mask_score, crop_box, size)

    def _segment_crop(
        self,
        raster: Raster,
        window: np.ndarray,
        prompts: Prompts,
        members: np.ndarray,
        patches: list[MaskPatch | None],
        mask_score: np.ndarray,
    ) -> None:
        x0, y0, x1, y1 = (int(v) for v in window)
        rgb = np.ascontiguousarray(raster.read((x0, y0, x1, y1)))
        embedding = self.sam.embed(rgb)
        local = prompts[members]
        assert local.boxes is not None
        local = local.replace(boxes=local.boxes - np.array([x0, y0, x0, y0], np.float32))
        # objects in slices, so a crop full of objects holds a bounded number of crop masks
        step = self.sam.decode_batch_size
        for start in range(0, len(members), step):
            chunk = local[start : start + step]
            found = self._instance.segment(rgb, chunk, embedding=embedding)
            assert found.mask is not None
            for k, mask in enumerate(found.mask):
                patches[members[start + k]] = MaskPatch.from_mask(mask, (x0, y0))
            mask_score[members[start : start + step]] = found.data["mask_score"]

    def _detections(
        self,
        prompts: Prompts,
        patches: list[MaskPatch],
        mask_score: np.ndarray,
        crop_box: np.ndarray,
        size: tuple[int, int],
    ) -> sv.Detections:
        n = len(prompts)
        scores = prompts.confidence if prompts.confidence is not None else np.ones(n, np.float32)
        keep = np.array([p.area >= self.config.min_mask_area for p in patches], bool)
        data: dict[str, Any] = {"crop_box": crop_box}
        masks = None
        if self.config.output == "rle":
            rles = np.empty(n, dtype=object)
            for i, patch in enumerate(patches):
                rles[i] = to_json(patch.to_image_rle(size))
            data["rle"] = rles
        else:
            masks = np.zeros((n, *size), bool)
            for i, patch in enumerate(patches):
                x0, y0, x1, y1 = (int(v) for v in patch.box)
                if x1 > x0:
                    masks[i, y0:y1, x0:x1] = patch.decode()
        detections = assemble(
            masks, prompts=prompts, mask_score=mask_score, detector_score=scores, data=data
        )
        return detections if keep.all() else detections[keep]  # type: ignore[return-value]

    def _bar(self, total: int, label: str) -> Any:
        if not self.progress:
            return None
        from composeseg.progress import progress

        return progress(total=total, desc=label, unit="tile")


def merge_boxes(
    prompts: Prompts, tiles: np.ndarray, grid: TileGrid, config: TiledInstanceConfig
) -> Prompts:
    """Boxes seen on tiles -> one box per object (see
    :func:`~composeseg.pipelines.tiling.merge_across_tiles`); an object no tile saw whole gets
    the box around its views, and the best view's score, class and data."""
    assert prompts.boxes is not None
    boxes = prompts.boxes.astype(np.float64)
    scores = (
        prompts.confidence if prompts.confidence is not None else np.ones(len(prompts), np.float32)
    )
    objects = merge_across_tiles(
        boxes,
        tiles,
        np.asarray(scores, np.float64),
        grid,
        agreement=clipped_box_overlap(boxes),
        duplicate=lambda i, j: box_pair_iou(boxes[i], boxes[j]),
        join_threshold=config.merge_overlap,
        nms_threshold=config.nms_iou,
        margin=config.seam_margin,
        classes=None if config.class_agnostic else prompts.class_id,
    )
    best = np.array([members[0] for members in objects], np.int64)
    merged = np.stack([union_box(boxes[members]) for members in objects]).astype(np.float32)
    return prompts[best].replace(boxes=merged)


def _boxes_only(prompts: Prompts, tile: int | None) -> Prompts:
    if len(prompts) == 0:
        return Prompts(boxes=np.zeros((0, 4), np.float32))
    where = f" on tile {tile}" if tile is not None else ""
    if prompts.boxes is None or prompts.points is not None or prompts.mask_input is not None:
        raise ValueError(
            f"tiled segmentation needs box prompts only; got {prompts!r}{where} (points and "
            "mask inputs cannot be moved between tiles)"
        )
    return prompts
