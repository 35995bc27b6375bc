"""``composeseg text SOURCE "a cat" "a dog" -o OUTDIR``: masks of what texts name, in an image
or a dataset."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composeseg.pipelines.cli.common import add_model_options, load_model
from composeseg.pipelines.cli.dataset import (
    DATASET_SOURCE_HELP,
    add_run_options,
    is_dataset,
    run_dataset,
)

if TYPE_CHECKING:
    from composeseg.pipelines.runner import Job


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "text",
        help="segment what texts name (grounding detector, CLIP matching or SAM 3)",
        description=(
            "Route by options: --grounder (zero-shot detector boxes -> SAM), --sam3 (concepts "
            "natively), else CLIP matching of automatic masks (--matcher; default: the embedded "
            "demo text model, which knows the generated scenes' colours and shapes). A "
            "--matcher given with --grounder or --sam3 re-ranks their masks. Writes "
            "annotated.png, masks/NNN.png and predictions.json (COCO RLE; category_id indexes "
            "the texts)."
        ),
    )
    parser.add_argument("image", type=Path, help=DATASET_SOURCE_HELP)
    parser.add_argument("texts", nargs="+", metavar="TEXT", help='queries, e.g. "a red car"')
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR")
    route = parser.add_argument_group("route")
    route.add_argument(
        "--grounder",
        metavar="MODEL",
        help=(
            "transformers zero-shot detector id or directory (OWLv2, Grounding DINO, ...), or "
            "'demo' (the embedded grounder, which knows the generated scenes' colours and shapes)"
        ),
    )
    route.add_argument("--sam3", metavar="SOURCE", help="SAM 3 hub id or directory")
    route.add_argument(
        "--matcher",
        metavar="MODEL",
        help="CLIP / SigLIP id or directory, or 'demo' (default when no other route is given)",
    )
    selection = parser.add_argument_group("selection")
    selection.add_argument("--threshold", type=float, default=None, help="minimum confidence")
    selection.add_argument("--top-k", type=int, default=None, help="masks per text at most")
    selection.add_argument(
        "--grounder-threshold",
        type=float,
        default=None,
        help="grounder box score threshold (default 0.3; 0.1 for the demo grounder)",
    )
    selection.add_argument(
        "--nms-iou", type=float, default=0.7, help="mask IoU above which duplicates go"
    )
    add_model_options(parser)
    add_run_options(parser)
    parser.set_defaults(handler=run)


def build(args: argparse.Namespace) -> Any:
    """The :class:`~composeseg.pipelines.TextSegmentation` the options describe."""
    from composeseg.pipelines.text import TextSegmentation

    if args.grounder and args.sam3:
        raise ValueError("--grounder and --sam3 are two routes: give one")
    matcher_source = args.matcher or (None if args.grounder or args.sam3 else "demo")
    matcher = None
    if matcher_source:
        from composeseg.adapters.clip import ClipMatcher

        matcher = ClipMatcher(
            None if matcher_source == "demo" else matcher_source, device=args.device
        )
    grounder = None
    if args.sam3:
        from composeseg.concepts import load_sam3

        sam: Any = load_sam3(args.sam3, device=args.device)
    else:
        sam = load_model(args)
        if args.grounder:
            from composeseg.adapters.grounding import TransformersGrounder

            grounder = TransformersGrounder(
                None if args.grounder == "demo" else args.grounder,
                threshold=args.grounder_threshold,
                device=args.device,
            )
    # --top-k not given: the pipeline's "auto" (one mask per text for the matcher alone)
    top_k = {} if args.top_k is None else {"top_k": args.top_k}
    return TextSegmentation(
        sam,
        grounder=grounder,
        matcher=matcher,
        threshold=args.threshold,
        nms_iou=args.nms_iou,
        **top_k,
    )


def text_job(args: argparse.Namespace) -> Job:
    """The runner's job (module level: Ray actors unpickle it)."""
    job: Job = build(args).job(args.texts)
    return job


def run(args: argparse.Namespace) -> int:
    from composeseg.image import load_image
    from composeseg.io import check_output_folder
    from composeseg.pipelines.cli.common import write_results

    if is_dataset(args.image):
        run_dataset(args, text_job)
        return 0
    image = load_image(args.image)
    check_output_folder(args.output)  # before any model loads
    pipe = build(args)
    detections = pipe(image, args.texts)
    paths = write_results(args.output, image, detections, args.image.name)
    names = detections.data.get("class_name", [])
    found = ", ".join(f"{n} ({c:.2f})" for n, c in zip(names, detections.confidence, strict=True))
    print(f"{len(detections)} masks: {found or 'none'} -> {paths['annotated'].parent}")
    return 0
