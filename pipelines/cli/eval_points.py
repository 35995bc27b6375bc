"""``composeseg eval points``: box / one-point / interactive-point mIoU (SAM paper protocols)
on a COCO-format dataset or on generated scenes from the evaluation seed range.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from composeseg.evaluation.families import SCENE_FAMILIES
from composeseg.pipelines.cli.common import add_model_options, add_zoom_option, load_model


def register(eval_subparsers: Any) -> None:
    parser = eval_subparsers.add_parser(
        "points",
        help="mIoU from box, 1-point and interactive-point prompts",
        description=(
            "Box: the tight ground-truth box. One point: farthest from the object boundary; "
            "best of 3 masks (oracle) and most confident. Interactive: each next point "
            "farthest from the boundary of the larger error region, previous logits fed back."
        ),
    )
    parser.add_argument("--gt", type=Path, metavar="COCO.json", help="COCO instance annotations")
    parser.add_argument("--images", type=Path, metavar="DIR", help="image directory of --gt")
    parser.add_argument(
        "--synthetic",
        type=int,
        default=0,
        metavar="N",
        help="evaluate on N generated scenes (seeds from 1e9, never used in training)",
    )
    parser.add_argument(
        "--family",
        choices=SCENE_FAMILIES,
        default="training",
        help="generated scenes of --synthetic: the training generator, its domain-randomised "
        "generator in default or crowded layouts (new seeds of all three: in-distribution for "
        "the demo SAM), or the independent family (composeseg.synthetic.independent, other "
        "shapes, looks and sizes, never trained on; see --split)",
    )
    parser.add_argument(
        "--split",
        choices=("test", "validation"),
        default="test",
        help="split of --family independent: test for reported figures, validation for "
        "choosing models and settings",
    )
    parser.add_argument("--max-images", type=int, default=0, help="stop after N images of --gt")
    parser.add_argument("--points", type=int, default=3, help="clicks of the interactive protocol")
    parser.add_argument("-o", "--output", type=Path, help="also write the metrics as JSON here")
    add_model_options(parser)
    add_zoom_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from composeseg.evaluation.families import family_seeds
    from composeseg.evaluation.points import coco_instances, point_prompt_miou, scene_instances
    from composeseg.io import check_output_file, write_json

    if args.output is not None:
        check_output_file(args.output)  # before any work
    if bool(args.synthetic) == bool(args.gt or args.images):
        raise ValueError("give either --synthetic N or both --gt COCO.json and --images DIR")
    if not args.synthetic and not (args.gt and args.images):
        raise ValueError("--gt and --images go together")
    if args.synthetic < 0:
        raise ValueError(f"--synthetic must be >= 0, got {args.synthetic}")
    total = None
    if args.synthetic:
        seeds = family_seeds(args.family, args.synthetic, args.split)
        samples = scene_instances(seeds, family=args.family)
        total = args.synthetic
    else:
        samples = coco_instances(args.gt, args.images, max_images=args.max_images)
    metrics = point_prompt_miou(
        load_model(args),
        samples,
        interactive_points=args.points,
        zoom=args.zoom,
        progress=True,
        total=total,
    )
    payload = metrics.as_dict()
    print(json.dumps(payload, indent=1))
    if args.output:
        write_json(args.output, payload)
    return 0
