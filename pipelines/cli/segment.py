"""``composeseg segment``: masks from box and point prompts on one image, or from a detector's
boxes on an image or a directory of images (delegated to :mod:`composeseg.pipelines.cli.detect`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from composeseg.pipelines.cli.common import (
    add_model_options,
    add_zoom_option,
    load_model,
    write_results,
)
from composeseg.pipelines.cli.dataset import DATASET_SOURCE_HELP, add_run_options, is_dataset
from composeseg.pipelines.cli.detector_options import add_detector_options
from composeseg.pipelines.cli.tiled import add_tile_options


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment objects in an image from box / point prompts",
        description=(
            "Each --box is one object. The --point prompts together form one object (with the "
            "box, when exactly one --box is given), or one object each with --point-per-object. "
            "With --detector SPEC, every detected object is segmented, in one image or a dataset."
        ),
    )
    parser.add_argument(
        "image", type=Path, help=f"{DATASET_SOURCE_HELP} (a dataset needs --detector)"
    )
    parser.add_argument(
        "--box", action="append", default=[], metavar="X0,Y0,X1,Y1", help="box, pixels (repeat)"
    )
    parser.add_argument(
        "--point",
        action="append",
        default=[],
        metavar="X,Y[,LABEL]",
        help="point, pixels; LABEL 1 = on the object (default), 0 = off it (repeat)",
    )
    parser.add_argument(
        "--point-per-object", action="store_true", help="each --point is its own object"
    )
    parser.add_argument(
        "--multimask",
        action="store_true",
        help="decode SAM's 3 candidates per object and keep the most confident",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR")
    add_model_options(parser)
    add_zoom_option(parser)
    add_detector_options(parser, multimask=False)
    add_tile_options(parser, everything=False)
    add_run_options(parser)
    parser.set_defaults(handler=run)


def parse_numbers(text: str, counts: tuple[int, ...], what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in counts:
        raise ValueError(f"--{what} {text!r}: expected {' or '.join(map(str, counts))} numbers")
    return values


def build_prompts(boxes: list[str], points: list[str], point_per_object: bool) -> dict[str, Any]:
    """Turn ``--box`` / ``--point`` strings into ``Sam.segment`` keyword arrays."""
    box_array = np.array([parse_numbers(b, (4,), "box") for b in boxes], np.float32).reshape(-1, 4)
    parsed = [parse_numbers(p, (2, 3), "point") for p in points]
    xy = np.array([p[:2] for p in parsed], np.float32).reshape(-1, 2)
    for text, values in zip(points, parsed, strict=True):
        if len(values) == 3 and values[2] not in (0.0, 1.0):
            raise ValueError(f"--point {text!r}: the label must be 1 (on the object) or 0 (off it)")
    labels = np.array([int(p[2]) if len(p) == 3 else 1 for p in parsed], np.int32)
    if not len(box_array) and not len(xy):
        raise ValueError("give at least one --box or --point")
    if not len(xy):
        return {"boxes": box_array}
    if point_per_object:
        if len(box_array):
            raise ValueError("--point-per-object cannot be combined with --box")
        return {"points": xy[:, None], "point_labels": labels[:, None]}
    if len(box_array) > 1:
        raise ValueError(
            "points with several boxes are ambiguous: give one --box, or --point-per-object"
        )
    prompts: dict[str, Any] = {"points": xy[None], "point_labels": labels[None]}
    if len(box_array):
        prompts["boxes"] = box_array
    return prompts


def run(args: argparse.Namespace) -> int:
    from composeseg.image import load_image
    from composeseg.io import check_output_folder

    if args.tile is not None and args.detector is None:
        raise ValueError("--tile segments what a detector finds: give --detector SPEC")
    if args.tile is not None and args.zoom is not None:
        raise ValueError("--zoom and --tile: pick one (each tile is already a zoomed window)")
    if args.detector is not None or is_dataset(args.image):
        from composeseg.pipelines.cli.detect import run_detector

        return run_detector(args)
    prompts = build_prompts(args.box, args.point, args.point_per_object)
    image = load_image(args.image)
    check_output_folder(args.output)
    sam = load_model(args)
    options = {"multimask": args.multimask, "box_fit": args.box_fit and "boxes" in prompts}
    if args.zoom is not None:
        from composeseg.zoom import segment_zoomed

        prediction = segment_zoomed(sam, image, context=args.zoom, **options, **prompts)
    else:
        prediction = sam.segment(image, **options, **prompts)
    detections = prediction.to_detections()
    paths = write_results(args.output, image, detections, args.image.name)
    print(f"{len(detections)} object(s) from {sam.name} -> {paths['annotated']}")
    for i, score in enumerate(detections.data["mask_score"]):
        print(f"  object {i}: predicted IoU {score:.3f}, area {int(detections.area[i])} px")
    return 0
