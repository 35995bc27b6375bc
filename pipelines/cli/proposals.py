"""``composeseg proposals``: class-agnostic object proposals (SAM paper §7.3 settings)."""

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
from composeseg.pipelines.cli.everything import add_grid_options
from composeseg.pipelines.cli.tiled import add_tile_options

if TYPE_CHECKING:
    pass


def add_proposal_options(parser: argparse.ArgumentParser) -> None:
    add_grid_options(parser, 64)
    parser.add_argument(
        "--box-nms-thresh",
        type=float,
        default=0.9,
        help="box IoU above which a weaker proposal is dropped (default: %(default)s)",
    )
    parser.add_argument(
        "--max-masks",
        type=int,
        default=1000,
        metavar="N",
        help="keep the N best proposals (default: %(default)s)",
    )


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "proposals",
        help="class-agnostic mask proposals for an image or a dataset",
        description="Writes predictions.json (COCO, RLE masks, best first).",
    )
    parser.add_argument("image", type=Path, help=DATASET_SOURCE_HELP)
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR")
    add_proposal_options(parser)
    add_tile_options(parser, everything=True)
    add_model_options(parser)
    add_run_options(parser)
    parser.set_defaults(handler=run)


def build(args: argparse.Namespace, progress: bool) -> Any:
    from composeseg.pipelines.proposals import ObjectProposals

    if getattr(args, "tile", None) is not None:
        from composeseg.pipelines.cli.tiled import tiled_generator

        return tiled_generator(args, proposals=True, progress=progress)
    return ObjectProposals(
        load_model(args),
        points_per_side=args.points_per_side,
        points_per_batch=args.points_per_batch,
        box_nms_thresh=args.box_nms_thresh,
        max_masks=args.max_masks,
        output="rle",
        progress=progress,
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
    path = write_results(args.output, image, detections, args.image.name)["predictions"]
    print(f"{len(detections)} proposal(s) -> {path}")
    return 0
