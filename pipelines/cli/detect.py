"""``composeseg segment --detector SPEC SOURCE``: detector boxes -> SAM masks, on one image or
a dataset (the runner: resumable, one record per image, ``predictions.json``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from composeseg.pipelines.cli.common import write_results
from composeseg.pipelines.cli.dataset import is_dataset, run_dataset

if TYPE_CHECKING:
    from composeseg.pipelines.runner import Job


def run_detector(args: argparse.Namespace) -> int:
    """Segment what the detector finds: ``OUTDIR/annotated.png``, ``masks/`` and
    ``predictions.json`` for one image; the runner's layout for a dataset."""
    from composeseg.image import load_image
    from composeseg.io import check_output_folder
    from composeseg.pipelines.cli.detector_options import build_pipeline

    if args.detector is None:
        raise ValueError(f"{args.image} is a dataset: give --detector SPEC")
    if args.box or args.point:
        raise ValueError("--box / --point cannot be combined with --detector")
    if not args.image.exists():
        raise FileNotFoundError(f"image not found: {args.image}")
    if is_dataset(args.image):
        run_dataset(args, segment_job)
        return 0
    check_output_folder(args.output)  # before any model loads
    if getattr(args, "tile", None) is not None:
        from composeseg.pipelines.cli.tiled import run_tiled, tiled_instance

        return run_tiled(args, tiled_instance(args))
    pipe = build_pipeline(args, args.detector)
    image = load_image(args.image)
    detections = pipe.segment(image, pipe.detect(image, args.image))
    write_results(args.output, image, detections, args.image.name)
    print(f"{args.image.name}: {len(detections)} object(s) -> {args.output}")
    return 0


def segment_job(args: argparse.Namespace) -> Job:
    """The runner's job for ``segment --detector`` (module level: Ray actors unpickle it)."""
    from composeseg.pipelines.cli.detector_options import build_pipeline

    if getattr(args, "tile", None) is not None:
        from composeseg.pipelines.cli.tiled import tiled_instance

        tiled: Job = tiled_instance(args, progress=False).job()
        return tiled
    job: Job = build_pipeline(args, args.detector).job()
    return job
