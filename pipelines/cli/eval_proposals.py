"""``composeseg eval proposals``: class-agnostic mask AR@{10,100,1000} of SAM's proposals."""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path
from typing import Any

from composeseg.pipelines.cli.common import add_model_options
from composeseg.pipelines.cli.dataset import add_run_options
from composeseg.pipelines.cli.proposals import add_proposal_options, build


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
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        help="also write the metrics as JSON here; the predictions go to a folder beside it "
        "(METRICS.run/), so an interrupted evaluation resumes",
    )
    add_proposal_options(parser)
    add_model_options(parser)
    add_run_options(parser, exports=False, sources=False)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from composeseg.coco import check_dataset, load_json
    from composeseg.evaluation.proposals import proposal_recall
    from composeseg.io import check_output_file, write_json

    # checked before any prediction: a broken file fails in a second, not after the run
    if args.output:
        check_output_file(args.output)
    gt = check_dataset(load_json(args.gt, "ground-truth file"), str(args.gt), need="segmentation")
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
        predictions = _predict(args, gt)
    metrics = proposal_recall(predictions, gt)
    print(metrics.table())
    print(f"{metrics.num_proposals} proposals on {metrics.num_images} images")
    if args.output:
        write_json(args.output, metrics.to_dict())
    return 0


def _predict(args: argparse.Namespace, gt: dict[str, Any]) -> list[dict[str, Any]]:
    """The prediction pass, through the dataset runner (with -o, resumable from
    ``OUTDIR/run/``): COCO result records keyed by the ground truth's image ids."""
    import tempfile

    from composeseg.io import write_json
    from composeseg.pipelines.cli.dataset import complete, quiet_job, run_dataset

    with tempfile.TemporaryDirectory(prefix="composeseg-eval-") as scratch:
        source = write_json(Path(scratch) / "images.json", {"images": gt["images"]})
        out = args.output.with_suffix(".run") if args.output else Path(scratch)
        args.image_dir = args.images
        job = partial(quiet_job, build)
        summary = complete(run_dataset(args, job, source=source, output=out))
        records: list[dict[str, Any]] = json.loads(summary.files[0].read_text())["annotations"]
        return records
