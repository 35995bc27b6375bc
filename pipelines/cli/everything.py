"""``composeseg everything``: segment everything in an image (automatic mask generation)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from composeseg.pipelines.cli.common import add_model_options, load_model, write_results


def add_grid_options(parser: argparse.ArgumentParser, points_per_side: int) -> None:
    parser.add_argument("--points-per-side", type=int, default=points_per_side, metavar="N")
    parser.add_argument("--points-per-batch", type=int, default=64, metavar="N")


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
    parser.add_argument("--pred-iou-thresh", type=float, default=0.88)
    parser.add_argument("--stability-score-thresh", type=float, default=0.95)
    parser.add_argument("--stability-score-offset", type=float, default=1.0)
    parser.add_argument("--box-nms-thresh", type=float, default=0.7)
    parser.add_argument("--crop-n-layers", type=int, default=0)
    parser.add_argument("--crop-nms-thresh", type=float, default=0.7)
    parser.add_argument("--crop-overlap-ratio", type=float, default=512 / 1500)
    parser.add_argument("--crop-n-points-downscale-factor", type=int, default=1)
    parser.add_argument("--min-mask-region-area", type=int, default=0)
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
