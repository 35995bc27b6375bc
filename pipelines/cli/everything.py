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
    if args.rle:
        path = write_rle_results(args.output, image.shape[:2], detections, args.image.name)
    else:
        path = write_results(args.output, image, detections, args.image.name)["annotated"]
    print(f"{len(detections)} mask(s) -> {path}")
    return 0


def write_rle_results(
    out_dir: Path, image_size: tuple[int, int], detections: Any, image_name: str
) -> Path:
    """``predictions.json`` (COCO, RLE masks) from detections whose masks are in
    ``data["rle"]``; written atomically."""
    from composeseg.io import write_json

    annotations = []
    for i in range(len(detections)):
        x0, y0, x1, y1 = (float(v) for v in detections.xyxy[i])
        rle = detections.data["rle"][i]
        annotations.append(
            {
                "id": i + 1,
                "image_id": 1,
                "category_id": 1,
                "segmentation": rle,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "iscrowd": 0,
                "score": float(detections.confidence[i]),
                "stability_score": float(detections.data["stability_score"][i]),
                "point": detections.data["point"][i].tolist(),
                "crop_box": detections.data["crop_box"][i].tolist(),
            }
        )
    height, width = image_size
    payload = {
        "images": [{"id": 1, "file_name": image_name, "height": height, "width": width}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "object"}],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_json(out_dir / "predictions.json", payload)
