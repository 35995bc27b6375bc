"""``composeseg serve [IMAGE_OR_DIR]``: the interactive app, click-to-segment in the browser."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from composeseg.pipelines.cli.common import add_model_options
from composeseg.pipelines.cli.detector_options import add_detector_options


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="label images in the browser: clicks, boxes, detector and text proposals -> COCO",
        description=(
            "Starts a local web app on IMAGE_OR_DIR (a folder, recursive, or one image; none: "
            "uploads only) and prints its URL. Click on an object for its mask, right click "
            "off it, drag a box; accept with a class name; 'Save' writes OUT/annotations/"
            "<image>.json (COCO, RLE), OUT/masks/<image>/NNN.png and OUT/annotations.json. "
            'Opening the folder again resumes the saved work. Needs pip install "composeseg[app]".'
        ),
    )
    parser.add_argument("source", nargs="?", type=Path, metavar="IMAGE_OR_DIR")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("composeseg-labels"),
        metavar="OUT",
        help="where annotations are saved (default: %(default)s)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    parser.add_argument(
        "--labels", nargs="+", default=(), metavar="NAME", help="class names to pick from"
    )
    text = parser.add_argument_group("text button")
    text.add_argument(
        "--grounder",
        metavar="MODEL",
        help="transformers zero-shot detector id or directory, or 'demo' (default: the demo "
        "CLIP model picks among automatic masks)",
    )
    text.add_argument("--matcher", metavar="MODEL", help="CLIP / SigLIP id or directory, or 'demo'")
    parser.add_argument(
        "--points-per-side",
        type=int,
        default=16,
        metavar="N",
        help="'segment everything' button: an N x N point grid (default: %(default)s; 32 finds "
        "smaller objects, 4x slower)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch CPU threads (default: all cores); 1 keeps clicks fast on a CPU shared with "
        "other jobs, where threads that wait for each other stall",
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--cache-size", type=int, default=8, metavar="N", help="image embeddings kept (default 8)"
    )
    limits.add_argument(
        "--max-upload-mb", type=float, default=64, help="largest upload (default: 64 MB)"
    )
    limits.add_argument(
        "--max-pixels",
        type=int,
        default=64_000_000,
        help="refuse larger images unread (decompression bombs; default: %(default)s)",
    )
    add_model_options(parser)
    add_detector_options(parser, multimask=False)
    parser.set_defaults(handler=run)


def build_workspace(args: argparse.Namespace) -> Any:
    """The :class:`~composeseg.pipelines.app.workspace.Workspace` the options describe."""
    from composeseg.pipelines.app.workspace import Workspace
    from composeseg.pipelines.cli.common import load_model
    from composeseg.pipelines.cli.detector_options import mask_options

    sam = load_model(args)
    detector = None
    if args.detector:
        from composeseg.pipelines.cli.detector_options import build_detector

        detector = build_detector(args, args.detector)
    grounder = matcher = None
    if args.grounder:
        from composeseg.adapters.grounding import TransformersGrounder

        source = None if args.grounder == "demo" else args.grounder
        grounder = TransformersGrounder(source, device=args.device)
    if args.matcher or not args.grounder:
        from composeseg.adapters.clip import ClipMatcher

        source = None if args.matcher in (None, "demo") else args.matcher
        matcher = ClipMatcher(source, device=args.device)
    return Workspace(
        sam,
        args.source,
        args.output,
        detector=detector,
        grounder=grounder,
        matcher=matcher,
        labels=args.labels,
        cache_size=args.cache_size,
        max_pixels=args.max_pixels,
        amg_options={"points_per_side": args.points_per_side},
        instance_options={"refine": not args.no_refine, **mask_options(args)},
    )


def run(args: argparse.Namespace) -> int:
    from composeseg.extras import require
    from composeseg.pipelines.app.server import LOOPBACK, create_app, is_loopback

    uvicorn = require("uvicorn", extra="app", purpose="composeseg serve")
    require("fastapi", extra="app", purpose="composeseg serve")
    if args.source is not None and not args.source.exists():
        raise FileNotFoundError(f"image or folder not found: {args.source}")
    if args.output is not None:
        from composeseg.io import check_output_folder

        check_output_folder(args.output)  # before the model loads
    loopback = is_loopback(args.host)
    if not loopback:
        print(
            f"composeseg serve: warning: listening on {args.host}, not the loopback interface: "
            "anyone who can reach this machine can read the images and write to "
            f"{args.output}",
            file=sys.stderr,
        )
    if args.threads is not None:
        import torch

        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)  # before any worker thread exists: they inherit it
    workspace = build_workspace(args)
    app = create_app(
        workspace,
        allowed_hosts=LOOPBACK if loopback else None,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
    )
    host = f"[{args.host}]" if ":" in args.host else args.host
    count = len(workspace.images.items())
    print(
        f"composeseg serve: {count} image(s), model {workspace.sam.name}, saving to {args.output}"
    )
    print(f"open http://{host}:{args.port}/  (Ctrl+C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    unsaved = workspace.unsaved()
    if unsaved:
        print(f"composeseg serve: unsaved changes lost on: {', '.join(unsaved)}", file=sys.stderr)
    return 0
