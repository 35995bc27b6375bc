"""``composeseg eval proposals``: class-agnostic mask AR@{10,100,1000} of SAM's proposals."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from composeseg.pipelines.cli.common import add_model_options
from composeseg.pipelines.cli.proposals import add_proposal_options


def register(eval_subparsers: Any) -> None:
    parser = eval_subparsers.add_parser(
        "proposals",
        help="class-agnostic mask average recall of object proposals",
        description="Runs ObjectProposals on every image of --gt (or scores --predictions) "
        "and reports AR@10/100/1000 and AR@1000 by size (pycocotools, useCats=0).",
    )
    parser.add_argument("--gt", type=Path, required=True, metavar="COCO.json")
    parser.add_argument("--images", type=Path, default=None, metavar="DIR")
    parser.add_argument(
        "--predictions", type=Path, default=None, metavar="RESULTS.json", help="score these"
    )
    parser.add_argument("--max-images", type=int, default=0, help="stop after N images")
    parser.add_argument("-o", "--output", type=Path, help="also write the metrics as JSON here")
    add_proposal_options(parser)
    add_model_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from composeseg.evaluation.proposals import proposal_recall
    from composeseg.io import write_json

    gt = json.loads(args.gt.read_text())
    images = gt.get("images", [])
    if args.max_images:
        images = images[: args.max_images]
        gt = {**gt, "images": images}
        keep = {image["id"] for image in images}
        gt["annotations"] = [a for a in gt.get("annotations", []) if a["image_id"] in keep]
    if args.predictions is not None:
        predictions: Any = args.predictions
    elif args.images is None:
        raise ValueError("give --images DIR (the ground-truth images) or --predictions")
    else:
        predictions = _predict(args, images)
    metrics = proposal_recall(predictions, gt)
    print(metrics.table())
    print(f"{metrics.num_proposals} proposals on {metrics.num_images} images")
    if args.output:
        write_json(args.output, metrics.to_dict())
    return 0


def _predict(args: argparse.Namespace, images: list[dict[str, Any]]) -> dict[int, Any]:
    from composeseg.image import load_image
    from composeseg.pipelines.cli.proposals import build
    from composeseg.progress import progress

    proposals = build(args, progress=False)
    out = {}
    for record in progress(images, desc="proposals", unit="img"):
        path = args.images / record["file_name"]
        if not path.exists():
            raise FileNotFoundError(f"image {record['id']}: {path} does not exist")
        out[int(record["id"])] = proposals(load_image(path))
    return out
