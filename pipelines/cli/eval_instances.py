"""``composeseg eval instances``: COCO or LVIS mask AP of detector + SAM, or of a predictions
file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composeseg.pipelines.cli.common import add_model_options, add_zoom_option
from composeseg.pipelines.cli.dataset import add_run_options
from composeseg.pipelines.cli.detector_options import add_detector_options

if TYPE_CHECKING:
    from composeseg.pipelines.runner import Job


def register(eval_subparsers: Any) -> None:
    parser = eval_subparsers.add_parser(
        "instances",
        help="COCO or LVIS mask AP of instance segmentation",
        description=(
            "Score --detections (a COCO results or dataset JSON with masks), or run --detector "
            "+ SAM on every ground-truth image. --detector given the --gt file itself prompts "
            "SAM with the ground-truth boxes (oracle boxes). An LVIS --gt is scored with the "
            "LVIS rules (needs pip install 'composeseg[lvis]')."
        ),
    )
    parser.add_argument("--gt", type=Path, required=True, metavar="COCO.json")
    parser.add_argument("--images", type=Path, default=None, metavar="DIR")
    parser.add_argument("--detections", type=Path, metavar="DETS.json", help="masks to score")
    add_detector_options(parser, results_dataset="--gt")
    parser.add_argument("--iou-type", choices=("segm", "bbox"), default="segm")
    parser.add_argument(
        "--protocol",
        choices=("auto", "coco", "lvis"),
        default="auto",
        help="lvis: federated LVIS AP (APr/APc/APf, 300 detections per image); "
        "auto (default): lvis when --gt is in LVIS format, else coco",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        metavar="OUTDIR",
        help="write predictions.json and metrics.json here",
    )
    add_model_options(parser)
    add_zoom_option(parser)
    add_run_options(parser, exports=False, sources=False)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from composeseg.evaluation import evaluate_instances
    from composeseg.io import check_output_folder

    if args.output is not None:
        check_output_folder(args.output)  # before any prediction
    if args.detections is None and args.detector is None:
        raise ValueError("give --detections DETS.json or --detector SPEC")
    if args.detections is not None:
        source: Any = args.detections
    else:
        if args.images is None:
            raise ValueError("--detector needs --images DIR (the ground-truth images)")
        source = _predict(args)
    metrics = evaluate_instances(
        source,
        args.gt,
        args.images,
        iou_type=args.iou_type,
        protocol=args.protocol,
        out_dir=args.output,
    )
    print(metrics.table())
    print(f"{metrics.num_predictions} predictions on {metrics.num_images} images")
    return 0


def _predict(args: argparse.Namespace) -> Any:
    """The prediction pass, through the dataset runner: with -o it resumes from
    ``OUTDIR/run/`` (one record per ground-truth image); returns the merged predictions."""
    import json
    import tempfile

    from composeseg.pipelines.cli.dataset import complete, run_dataset

    with tempfile.TemporaryDirectory(prefix="composeseg-eval-") as scratch:
        out = args.output / "run" if args.output is not None else Path(scratch)
        args.image_dir = args.images
        summary = complete(run_dataset(args, instances_job, source=args.gt, output=out))
        return json.loads(summary.files[0].read_text())


def instances_job(args: argparse.Namespace) -> Job:
    """The runner's job: detector (given the ground truth, for oracle boxes) + SAM."""
    from composeseg.pipelines.cli.detector_options import build_pipeline

    job: Job = build_pipeline(args, args.detector, dataset=args.gt).job()
    return job
