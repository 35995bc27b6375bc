"""``composeseg eval tracking``: HOTA, MOTA, IDF1, ID switches, mask IoU and flicker."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from composeseg.pipelines.cli.common import add_model_options

COLUMNS = ("HOTA", "MOTA", "IDF1", "IDSW", "mask_iou", "mask_flicker")


def register(eval_subparsers: Any) -> None:
    parser = eval_subparsers.add_parser(
        "tracking",
        help="multi-object tracking metrics (HOTA, MOTA, IDF1, ID switches, mask IoU)",
        description=(
            "Score a MOT-format result file against MOT-format ground truth (--gt, --pred; "
            "boxes, MOTChallenge rules), or run the video pipeline on generated videos "
            "(--synthetic SEED ...) with a simulated detector and score its masks and ids."
        ),
    )
    parser.add_argument("--gt", type=Path, default=None, metavar="GT.txt")
    parser.add_argument("--pred", type=Path, default=None, metavar="PRED.txt")
    parser.add_argument("--synthetic", type=int, nargs="+", default=None, metavar="SEED")
    parser.add_argument("--frames", type=int, default=60, help="frames per generated video")
    parser.add_argument("--size", type=int, default=256, help="generated frame side (pixels)")
    parser.add_argument("--tracker", default="bytetrack")
    parser.add_argument("--miss-rate", type=float, default=0.1, help="simulated missed detections")
    parser.add_argument("--jitter", type=float, default=0.05, help="simulated box noise")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also run without the consistency features (plain per-frame segmentation)",
    )
    parser.add_argument("--threshold", type=float, default=0.5, help="IoU for CLEAR / IDF1")
    parser.add_argument("-o", "--output", type=Path, default=None, metavar="METRICS.json")
    add_model_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from composeseg.evaluation.tracking import evaluate_mot_files
    from composeseg.io import check_output_file

    if args.output is not None:
        check_output_file(args.output)  # before any work
    rows: dict[str, Any] = {}
    if args.gt is not None or args.pred is not None:
        if args.gt is None or args.pred is None:
            raise ValueError("--gt and --pred go together")
        rows["mot"] = evaluate_mot_files(args.gt, args.pred, threshold=args.threshold)
    elif args.synthetic:
        rows.update(_synthetic(args))
    else:
        raise ValueError("give --gt GT.txt --pred PRED.txt, or --synthetic SEED ...")
    print(table(rows))
    if args.output is not None:
        from composeseg.io import write_json

        write_json(args.output, {name: m.as_dict() for name, m in rows.items()})
    return 0


def _synthetic(args: argparse.Namespace) -> dict[str, Any]:
    from composeseg.evaluation.tracking import TrackingEvaluator
    from composeseg.pipelines.cli.common import load_model
    from composeseg.pipelines.video import VideoSegmentation
    from composeseg.pipelines.video_config import PER_FRAME
    from composeseg.pipelines.video_sim import SimulatedDetector, SimulatedDetectorConfig
    from composeseg.progress import progress
    from composeseg.synthetic import VideoConfig, iter_video_frames

    sam = load_model(args)
    video = VideoConfig(height=args.size, width=args.size, n_frames=args.frames)
    noise = SimulatedDetectorConfig(jitter=args.jitter, miss_rate=args.miss_rate)
    variants: dict[str, dict[str, Any]] = {"consistent": {}}
    if args.compare:
        variants["per-frame"] = dict(PER_FRAME)
    out = {}
    bar = progress(total=len(variants) * len(args.synthetic) * args.frames, unit="frame")
    for name, options in variants.items():
        evaluator = TrackingEvaluator(threshold=args.threshold)
        for seed in args.synthetic:
            bar.set_description(f"eval tracking: {name}, clip {seed}")
            evaluator.new_sequence()
            detector = SimulatedDetector(iter_video_frames(seed, video), noise, seed=seed)
            pipe = VideoSegmentation(sam, detector, args.tracker, **options)
            for truth, detections in zip(
                iter_video_frames(seed, video), pipe(iter_video_frames(seed, video)), strict=True
            ):
                evaluator.add(truth, detections)
                bar.update()
        out[name] = evaluator.compute()
    bar.close()
    return out


def table(rows: dict[str, Any]) -> str:
    """A plain-text table of :class:`~composeseg.evaluation.TrackingMetrics` by row name."""
    width = max(len(name) for name in rows)
    lines = [" ".join([f"{'':<{width}}", *(f"{c:>12}" for c in COLUMNS)])]
    for name, metrics in rows.items():
        values = metrics.as_dict()
        cells = [
            f"{values[c]:>12d}" if isinstance(values[c], int) else f"{values[c]:>12.4f}"
            for c in COLUMNS
        ]
        lines.append(" ".join([f"{name:<{width}}", *cells]))
    return "\n".join(lines)
