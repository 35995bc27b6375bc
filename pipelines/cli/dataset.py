"""Dataset runs from the command line: every image command takes a folder, a list or a COCO
file as well as one image, and hands it to the one runner (:mod:`composeseg.pipelines.runner`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from composeseg.pipelines.runner import Job, RunSummary

DATASET_SOURCE_HELP = (
    "an image, or a dataset: a folder (recursive), a .txt list of paths, or a COCO .json"
)


def is_dataset(source: Path) -> bool:
    """A folder, a ``.txt`` list or a COCO ``.json``: anything but one image file."""
    return source.is_dir() or source.suffix.lower() in (".txt", ".json")


def add_run_options(
    parser: argparse.ArgumentParser, *, exports: bool = True, sources: bool = True
) -> None:
    """The dataset options every image command shares (``sources``: --glob, --image-dir and
    --save-images, for commands whose source is the positional argument)."""
    group = parser.add_argument_group(
        "datasets",
        "with a folder, list or COCO file: OUTDIR/records/<path>.json per image (resumable: "
        "run again to continue), then OUTDIR/predictions.json; unreadable images go to "
        "OUTDIR/failures.json",
    )
    if sources:
        group.add_argument("--glob", default=None, help="folder: only files matching this pattern")
        group.add_argument(
            "--image-dir", type=Path, default=None, help="COCO file: where its images are"
        )
        group.add_argument(
            "--save-images", action="store_true", help="also write OUTDIR/images/<path> pictures"
        )
    group.add_argument(
        "--batch-size",
        type=int,
        default=1,
        metavar="N",
        help="images per encoder pass (default: %(default)s)",
    )
    if exports:
        group.add_argument(
            "--format",
            action="append",
            choices=("yolo", "voc"),
            default=None,
            dest="formats",
            help="also export OUTDIR/yolo (YOLO-seg) or OUTDIR/voc (Pascal VOC) (repeat)",
        )
    group.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process; ray: a Ray Data actor pool (extra [ray]) (default: local)",
    )
    group.add_argument("--address", default=None, help="ray: the cluster to join")
    group.add_argument(
        "--workers", type=int, default=2, help="ray: actors, one model copy each (default: 2)"
    )
    group.add_argument(
        "--gpus-per-worker", type=float, default=0.0, help="ray: GPUs per actor (default: 0)"
    )


def quiet_job(build: Callable[[argparse.Namespace, bool], Any], args: argparse.Namespace) -> Job:
    """``build(args, progress=False).job()``: a dataset run draws one bar over images, not one
    per image. Module level, so ``partial(quiet_job, build)`` pickles for Ray actors."""
    job: Job = build(args, False).job()
    return job


def run_dataset(
    args: argparse.Namespace,
    build_job: Callable[[argparse.Namespace], Job],
    source: Path | None = None,
    output: Path | None = None,
) -> RunSummary:
    """Run ``build_job(args)`` over ``source`` (default ``args.image``) into ``output``
    (default ``args.output``) and print the summary. Ray actors call ``build_job``
    themselves, so models load in each actor, on its device."""
    from composeseg.pipelines.runner import run_job

    # a factory, not a built job: the output folder is checked (and locked) before any model
    # loads, and Ray actors load their own copy
    summary = run_job(
        partial(build_job, args),
        source if source is not None else args.image,
        write_to=output if output is not None else args.output,
        batch_size=args.batch_size,
        glob=getattr(args, "glob", None),
        image_dir=getattr(args, "image_dir", None),
        save_images=getattr(args, "save_images", False),
        formats=getattr(args, "formats", None) or (),
        engine=args.engine,
        address=args.address,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
    )
    print(summary)
    return summary


def complete(summary: RunSummary) -> RunSummary:
    """An evaluation scores every ground-truth image: refuse a prediction pass that could not
    read some (a missing image would silently count as a miss)."""
    if summary.failed:
        key, reason = summary.failed[0]
        raise ValueError(
            f"{len(summary.failed)} ground-truth image(s) could not be read, e.g. {key}: "
            f"{reason} (all in {summary.output / 'failures.json'})"
        )
    return summary
