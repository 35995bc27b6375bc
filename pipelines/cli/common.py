"""Options and output writing shared by the CLI commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import supervision as sv

    from composeseg.sam import Sam

DTYPES = ("float32", "bfloat16", "float16")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sam",
        metavar="SOURCE",
        default=None,
        help="hub id, save_pretrained directory or Meta .pth checkpoint "
        "(default: the embedded demo model)",
    )
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="model dtype")


def load_model(args: argparse.Namespace) -> Sam:
    import torch

    from composeseg.loading import load_sam

    return load_sam(args.sam, device=args.device, dtype=getattr(torch, args.dtype))


def write_results(
    out_dir: Path, image: np.ndarray, detections: sv.Detections, image_name: str
) -> dict[str, Path]:
    """Write ``annotated.png``, ``masks/NNN.png`` and ``predictions.json`` (COCO, RLE masks).

    Every file is written atomically; returns the paths by role.
    """
    from composeseg.io import mask_to_rle, write_image, write_json
    from composeseg.pipelines.visualize import annotate

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"annotated": write_image(out_dir / "annotated.png", annotate(image, detections))}
    annotations: list[dict[str, Any]] = []
    masks = detections.mask if detections.mask is not None else np.zeros((0, 1, 1), bool)
    for i, mask in enumerate(masks):
        write_image(out_dir / "masks" / f"{i:03d}.png", mask)
        x0, y0, x1, y1 = (float(v) for v in detections.xyxy[i])
        record: dict[str, Any] = {
            "id": i + 1,
            "image_id": 1,
            "category_id": int(detections.class_id[i]) if detections.class_id is not None else 1,
            "segmentation": mask_to_rle(mask),
            "area": int(mask.sum()),
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "iscrowd": 0,
        }
        if detections.confidence is not None:
            record["score"] = float(detections.confidence[i])
        for key, values in detections.data.items():
            value = np.asarray(values)[i]
            record[key] = value.tolist() if isinstance(value, np.ndarray) else value.item()
        annotations.append(record)
    height, width = image.shape[:2]
    payload = {
        "images": [{"id": 1, "file_name": image_name, "height": height, "width": width}],
        "annotations": annotations,
        "categories": _categories(detections),
    }
    paths["predictions"] = write_json(out_dir / "predictions.json", payload)
    return paths


def _categories(detections: sv.Detections) -> list[dict[str, Any]]:
    if detections.class_id is None:
        return [{"id": 1, "name": "object"}]
    names = detections.data.get("class_name")
    seen: dict[int, str] = {}
    for i, class_id in enumerate(detections.class_id):
        seen.setdefault(int(class_id), str(names[i]) if names is not None else str(class_id))
    return [{"id": k, "name": v} for k, v in sorted(seen.items())]
