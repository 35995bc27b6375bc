"""``composeseg edges``: zero-shot edge map of an image (SAM paper §7.2 recipe)."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composeseg.pipelines.cli.common import add_model_options, load_model
from composeseg.pipelines.cli.dataset import (
    DATASET_SOURCE_HELP,
    add_run_options,
    is_dataset,
    quiet_job,
    run_dataset,
)

if TYPE_CHECKING:
    pass


def add_edge_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--points-per-side",
        type=int,
        default=16,
        metavar="N",
        help="prompt points: an N x N grid over the image (default: %(default)s)",
    )
    parser.add_argument(
        "--box-nms-thresh",
        type=float,
        default=0.7,
        help="box IoU above which a weaker mask is dropped (default: %(default)s)",
    )
    parser.add_argument("--no-nms", action="store_true", help="skip edge NMS and thinning")
    parser.add_argument(
        "--weight-by-iou",
        action="store_true",
        help="scale each mask's edges by its predicted IoU (not in the paper's recipe; fewer "
        "edges from masks the model doubts)",
    )


def build(args: argparse.Namespace, progress: bool) -> Any:
    from composeseg.pipelines.edges import EdgeDetection

    return EdgeDetection(
        load_model(args),
        points_per_side=args.points_per_side,
        box_nms_thresh=args.box_nms_thresh,
        nms=not args.no_nms,
        thin=not args.no_nms,
        weight_by_iou=args.weight_by_iou,
        progress=progress,
    )


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "edges",
        help="edge map of an image or a dataset from SAM's automatic masks",
        description="Writes an 8-bit grey PNG (255 = strongest edge).",
    )
    parser.add_argument("image", type=Path, help=DATASET_SOURCE_HELP)
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="OUT",
        help="OUT.png for an image; a folder for a dataset (OUT/edges/<path>.png)",
    )
    add_edge_options(parser)
    add_model_options(parser)
    add_run_options(parser, exports=False)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    if is_dataset(args.image):
        run_dataset(args, partial(quiet_job, build))
        return 0
    from composeseg.image import load_image
    from composeseg.io import check_output_file, write_image

    image = load_image(args.image)
    check_output_file(args.output, (".png",))  # before any model loads
    edges = build(args, progress=True)(image)
    write_image(args.output, np.round(edges * 255).astype(np.uint8))
    print(f"edge map ({int((edges > 0).sum())} edge pixels) -> {args.output}")
    return 0
