"""``composeseg everything``: segment everything in an image (automatic mask generation)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from composeseg.pipelines.cli.common import add_model_options, load_model, write_results


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
    parser = subparsers.add_parser(
        "everything",
        help="segment everything in an image (SAM's automatic mask generator)",
        description="Writes annotated.png, masks/NNN.png and predictions.json (COCO, RLE). "
        "Options have the names and defaults of Meta's SamAutomaticMaskGenerator.",
    )
    parser.add_argument("image", type=Path, help="image file")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR")
    add_grid_options(parser, 32)
    options: list[tuple[str, type, Any, str]] = [
        ("--pred-iou-thresh", float, 0.88, "keep masks whose predicted IoU is above this"),
        ("--stability-score-thresh", float, 0.95, "keep masks at least this stable"),
        ("--stability-score-offset", float, 1.0, "logit offset of the stability score"),
        ("--box-nms-thresh", float, 0.7, "box IoU above which a weaker mask is dropped"),
        ("--crop-n-layers", int, 0, "extra layers of overlapping crops (small objects)"),
        ("--crop-nms-thresh", float, 0.7, "box IoU for duplicates between crops"),
        ("--crop-overlap-ratio", float, 512 / 1500, "overlap of neighbouring crops"),
        ("--crop-n-points-downscale-factor", int, 1, "layer i: points-per-side / factor**i"),
        ("--min-mask-region-area", int, 0, "fill holes and drop islands below this (px)"),
    ]
    for flag, kind, default, text in options:
        parser.add_argument(
            flag, type=kind, default=default, help=f"{text} (default: {default:.4g})"
        )
    parser.add_argument(
        "--rle",
        action="store_true",
        help="huge images: keep masks as RLE and write only predictions.json",
    )
    add_model_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from composeseg.image import load_image
    from composeseg.pipelines.amg import AutomaticMaskGenerator

    image = load_image(args.image)
    generator = AutomaticMaskGenerator(
        load_model(args),
        points_per_side=args.points_per_side,
        points_per_batch=args.points_per_batch,
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_score_thresh,
        stability_score_offset=args.stability_score_offset,
        box_nms_thresh=args.box_nms_thresh,
        crop_n_layers=args.crop_n_layers,
        crop_nms_thresh=args.crop_nms_thresh,
        crop_overlap_ratio=args.crop_overlap_ratio,
        crop_n_points_downscale_factor=args.crop_n_points_downscale_factor,
        min_mask_region_area=args.min_mask_region_area,
        output="rle" if args.rle else "mask",
        progress=True,
    )
    detections = generator(image)
    paths = write_results(args.output, image, detections, args.image.name)
    print(f"{len(detections)} mask(s) -> {paths.get('annotated', paths['predictions'])}")
    return 0
