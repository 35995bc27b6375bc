"""``--detector`` and related options, shared by ``segment`` and ``eval instances``."""

from __future__ import annotations

import argparse
from typing import Any


def add_detector_options(
    parser: argparse.ArgumentParser, *, multimask: bool = True, results_dataset: str | None = None
) -> None:
    """Add --detector, --classes, --threshold, --top-k, --box-padding, --no-refine, --box-fit
    and (unless the command has its own) --multimask. ``results_dataset`` names the option that
    gives the COCO dataset a results-list detector refers to; without it, results lists are not
    offered.
    """
    results = (
        f"; a COCO results list: its boxes, on the images of {results_dataset}"
        if results_dataset
        else ""
    )
    parser.add_argument(
        "--detector",
        metavar="SPEC",
        help="ultralytics weights (.pt/.yaml/.onnx), a transformers model id or directory, or a "
        f"COCO JSON (a dataset: its boxes as oracle prompts{results}). A .pt file is a pickle "
        "that ultralytics loads with code execution: only use .pt files you trust",
    )
    parser.add_argument(
        "--classes",
        nargs="+",
        default=None,
        metavar="NAME",
        help="keep only these classes; the text queries of zero-shot detectors (OWLv2, "
        "Grounding DINO)",
    )
    parser.add_argument(
        "--threshold", type=float, default=0.3, help="detector score threshold (default 0.3)"
    )
    parser.add_argument("--top-k", type=int, default=None, help="at most K objects per image")
    parser.add_argument(
        "--box-padding", type=float, default=0.0, help="grow boxes by this many pixels"
    )
    parser.add_argument(
        "--no-refine", action="store_true", help="skip SAM's refinement pass (faster)"
    )
    parser.add_argument(
        "--box-fit",
        action="store_true",
        help="keep, per box, the one of SAM's 4 masks whose extent fits the box best instead of "
        "SAM's single mask (see composeseg.box_fit)",
    )
    if multimask:
        parser.add_argument(
            "--multimask", action="store_true", help="decode 3 candidates per object, keep one"
        )


def mask_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``multimask`` and ``mask_selection`` of ``--multimask`` and ``--box-fit`` (see
    ``InstanceConfig``)."""
    return {
        "multimask": bool(getattr(args, "multimask", False)),
        "mask_selection": "box_fit" if args.box_fit else "score",
    }


def build_detector(args: argparse.Namespace, spec: str, dataset: Any = None) -> Any:
    from composeseg.adapters import PromptOptions, load_detector

    options = PromptOptions(top_k=args.top_k, box_padding=args.box_padding)
    return load_detector(
        spec, labels=args.classes, threshold=args.threshold, dataset=dataset, options=options
    )


def build_pipeline(args: argparse.Namespace, spec: str, dataset: Any = None) -> Any:
    from composeseg.pipelines.cli.common import load_model
    from composeseg.pipelines.instance import InstanceSegmentation

    detector = build_detector(args, spec, dataset)
    return InstanceSegmentation(
        load_model(args),
        detector,
        refine=not args.no_refine,
        zoom=args.zoom,
        **mask_options(args),
    )
