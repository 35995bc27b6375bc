"""``composeseg everything``: segment everything in an image or a dataset (automatic mask
generation)."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composeseg.pipelines.cli.common import add_model_options, load_model, write_results
from composeseg.pipelines.cli.dataset import (
    DATASET_SOURCE_HELP,
    add_run_options,
    is_dataset,
    quiet_job,
    run_dataset,
)
from composeseg.pipelines.cli.tiled import add_tile_options

if TYPE_CHECKING:
    pass

# option -> (AmgConfig field's help); the defaults are read from AmgConfig itself
_OPTIONS = {
    "pred_iou_thresh": "keep masks whose predicted IoU is above this",
    "stability_score_thresh": "keep masks at least this stable",
    "stability_score_offset": "logit offset of the stability score",
    "box_nms_thresh": "box IoU above which a weaker mask is dropped",
    "crop_n_layers": "extra layers of overlapping crops (small objects)",
    "crop_nms_thresh": "box IoU for duplicates between crops",
    "crop_overlap_ratio": "overlap of neighbouring crops",
    "crop_n_points_downscale_factor": "layer i: points-per-side / factor**i",
    "min_mask_region_area": "fill holes and drop islands below this (px)",
}


def add_grid_options(parser: argparse.ArgumentParser, points_per_side: int) -> None:
    parser.add_argument(
        "--points-per-side",
        type=int,
        default=points_per_side,
        metavar="N",
        help="prompt points: an N x N grid over the image (default: %(default)s)",
    )
    parser.add_argument(
        "--points-per-batch",
        type=int,
        default=64,
        metavar="N",
        help="points decoded per model call; lower it to save memory (default: %(default)s)",
    )


def register(subparsers: Any) -> None:
    from composeseg.pipelines.amg import AmgConfig

    parser = subparsers.add_parser(
        "everything",
        help="segment everything in an image or a dataset (SAM's automatic mask generator)",
        description="Writes annotated.png, masks/NNN.png and predictions.json (COCO, RLE) for "
        "an image. Options have the names and defaults of Meta's SamAutomaticMaskGenerator.",
    )
    parser.add_argument("image", type=Path, help=DATASET_SOURCE_HELP)
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR")
    defaults = AmgConfig()
    add_grid_options(parser, int(defaults.points_per_side or 32))
    for name, text in _OPTIONS.items():
        default = getattr(defaults, name)
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=type(default),
            default=default,
            help=f"{text} (default: {default:.4g})",
        )
    parser.add_argument(
        "--rle",
        action="store_true",
        help="huge images: keep masks as RLE and write only predictions.json",
    )
    add_tile_options(parser, everything=True)
    add_model_options(parser)
    add_run_options(parser)
    parser.set_defaults(handler=run)


def build(args: argparse.Namespace, progress: bool) -> Any:
    """The :class:`~composeseg.pipelines.AutomaticMaskGenerator` the options describe."""
    from composeseg.pipelines.amg import AutomaticMaskGenerator

    if getattr(args, "tile", None) is not None:
        from composeseg.pipelines.cli.tiled import tiled_generator

        return tiled_generator(args, proposals=False, progress=progress)
    return AutomaticMaskGenerator(
        load_model(args),
        points_per_side=args.points_per_side,
        points_per_batch=args.points_per_batch,
        output="rle" if args.rle else "mask",
        progress=progress,
        **{name: getattr(args, name) for name in _OPTIONS},
    )


def run(args: argparse.Namespace) -> int:
    from composeseg.image import load_image
    from composeseg.io import check_output_folder

    if is_dataset(args.image):
        run_dataset(args, partial(quiet_job, build))
        return 0
    check_output_folder(args.output)  # before any model loads
    if args.tile is not None:
        from composeseg.pipelines.cli.tiled import run_tiled

        return run_tiled(args, build(args, progress=True))
    image = load_image(args.image)
    detections = build(args, progress=True)(image)
    paths = write_results(args.output, image, detections, args.image.name)
    print(f"{len(detections)} mask(s) -> {paths.get('annotated', paths['predictions'])}")
    return 0
