"""``composeseg track``: a video in; an annotated MP4 with stable ids, MOT and COCO results out."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from composeseg.pipelines.cli.common import add_model_options

SYNTHETIC = "synthetic"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "track",
        help="segment and track every detected object in a video",
        description=(
            "Detector -> tracker -> SAM masks per frame, written as an annotated MP4. VIDEO is a "
            "video file, a folder of frames, or 'synthetic:SEED[:FRAMES]' (a generated video; "
            "with --detector synthetic its ground-truth boxes, jittered, act as the detector)."
        ),
    )
    parser.add_argument("video", metavar="VIDEO")
    parser.add_argument(
        "--detector",
        required=True,
        metavar="SPEC",
        help="ultralytics weights (.pt), a transformers model id or directory, or 'synthetic'",
    )
    parser.add_argument("--classes", nargs="+", default=None, metavar="NAME")
    parser.add_argument("--threshold", type=float, default=0.3, help="detector score threshold")
    parser.add_argument(
        "--tracker",
        default="bytetrack",
        choices=("bytetrack", "ocsort", "sort", "botsort", "none"),
        help="'none': the detector's own track ids (ultralytics weights: its model.track)",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.mp4")
    parser.add_argument("--mot", type=Path, default=None, metavar="OUT.txt", help="MOT results")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT.json", help="COCO-style")
    parser.add_argument("--fps", type=float, default=None, help="frame rate of folders/synthetic")
    parser.add_argument("--max-gap", type=int, default=5, help="frames to bridge missed detections")
    parser.add_argument("--no-mask-prompt", action="store_true", help="no previous-mask prompts")
    parser.add_argument("--no-association", action="store_true", help="no mask-IoU association")
    parser.add_argument(
        "--overlapping-masks", action="store_true", help="let objects' masks overlap"
    )
    parser.add_argument(
        "--engine",
        choices=("sam", "sam2"),
        default="sam",
        help="sam: detector + tracker + SAM per frame (default); sam2: SAM 2 propagation "
        "(--sam must then be a Sam2VideoModel directory)",
    )
    parser.add_argument(
        "--detect-every", type=int, default=10, help="sam2: run the detector every K frames"
    )
    parser.add_argument("--no-progress", action="store_true")
    add_model_options(parser)
    parser.set_defaults(handler=run)


def synthetic_source(spec: str) -> tuple[Any, Any, int] | None:
    """``synthetic:SEED[:FRAMES]`` -> (frames, ground truth) iterators over the same video,
    and its length."""
    if not spec.startswith(f"{SYNTHETIC}:"):
        return None
    from composeseg.synthetic import VideoConfig, iter_video_frames

    parts = spec.split(":")[1:]
    try:
        seed = int(parts[0])
        frames = int(parts[1]) if len(parts) > 1 else 60
    except (ValueError, IndexError):
        raise ValueError(f"expected synthetic:SEED[:FRAMES], got {spec!r}") from None
    config = VideoConfig(n_frames=frames)
    return iter_video_frames(seed, config), iter_video_frames(seed, config), frames


def build_detector(args: argparse.Namespace, ground_truth: Any) -> Any:
    if args.detector == SYNTHETIC:
        if ground_truth is None:
            raise ValueError("--detector synthetic works only with VIDEO = synthetic:SEED")
        from composeseg.pipelines.video_sim import SimulatedDetector

        return SimulatedDetector(ground_truth, seed=0)
    from composeseg.adapters import load_detector

    if args.tracker == "none" and Path(args.detector).suffix.lower() in (".pt", ".yaml", ".onnx"):
        # "none" means the detector tracks: run ultralytics' own tracker (model.track)
        from composeseg.adapters import PromptOptions, UltralyticsDetector

        options = PromptOptions(classes=tuple(args.classes) if args.classes else None)
        return UltralyticsDetector(args.detector, conf=args.threshold, track=True, options=options)
    return load_detector(args.detector, labels=args.classes, threshold=args.threshold)


def run(args: argparse.Namespace) -> int:
    from composeseg.io import check_output_file
    from composeseg.pipelines.cli.common import load_model
    from composeseg.pipelines.video import VideoSegmentation
    from composeseg.pipelines.video_io import DEFAULT_FPS, probe
    from composeseg.pipelines.video_out import ResultsWriter, VideoWriter
    from composeseg.pipelines.visualize import annotate

    check_output_file(args.output)  # before any model loads or frame is read
    for extra in (args.mot, args.json):
        if extra is not None:
            check_output_file(extra)
    synthetic = synthetic_source(args.video)
    source, ground_truth, length = synthetic if synthetic is not None else (args.video, None, None)
    info = probe(source) if synthetic is None else None
    fps = args.fps or (info.fps if info is not None else None) or DEFAULT_FPS
    detector = build_detector(args, ground_truth)
    pipe: Any
    if args.engine == "sam2":
        from composeseg.pipelines.video_sam2 import Sam2Propagation

        if args.sam is None:
            raise ValueError("--engine sam2 needs --sam DIR (a Sam2VideoModel)")
        pipe = Sam2Propagation(
            args.sam, detector, detect_every=args.detect_every, device=args.device
        )
    else:
        pipe = VideoSegmentation(
            load_model(args),
            detector,
            args.tracker,
            mask_prompt=not args.no_mask_prompt,
            mask_association=not args.no_association,
            exclusive_masks=not args.overlapping_masks,
            max_gap=args.max_gap,
            frame_rate=fps,
        )
    total = info.frame_count if info is not None else length
    count, ids = 0, set[int]()
    with (
        VideoWriter(args.output, fps) as video,
        ResultsWriter(mot_path=args.mot, json_path=args.json, video_name=str(args.video)) as out,
    ):
        for frame, detections in pipe.frames(source, progress=not args.no_progress, total=total):
            video.write(annotate(frame.image, detections))
            out.write(frame.index, detections, frame.image.shape[:2])
            ids.update(int(i) for i in detections.tracker_id if i >= 0)
            count += 1
    print(f"{count} frames, {len(ids)} tracks -> {args.output}")
    return 0
