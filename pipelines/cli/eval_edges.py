"""``composeseg eval edges``: BSDS-style ODS / OIS / AP / R50 of edge maps."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from composeseg.pipelines.cli.common import add_model_options
from composeseg.pipelines.cli.edges import add_edge_options
from composeseg.pipelines.sources import IMAGE_SUFFIXES

METHODS = ("sam", "sobel", "canny")


def register(eval_subparsers: Any) -> None:
    parser = eval_subparsers.add_parser(
        "edges",
        help="BSDS-style edge detection metrics (ODS, OIS, AP, R50)",
        description="--gt DIR holds one boundary PNG per image (non-zero = boundary; several "
        "annotators as STEM_1.png, STEM_2.png …), matched to --images DIR by file stem.",
    )
    parser.add_argument("--gt", type=Path, required=True, metavar="DIR")
    parser.add_argument("--images", type=Path, required=True, metavar="DIR")
    parser.add_argument("--method", choices=METHODS, default="sam", help="edge detector")
    parser.add_argument("--thresholds", type=int, default=99, help="threshold count (BSDS: 99)")
    parser.add_argument("--max-images", type=int, default=0, help="stop after N images")
    parser.add_argument("-o", "--output", type=Path, help="also write the metrics as JSON here")
    add_edge_options(parser)
    add_model_options(parser)
    parser.set_defaults(handler=run)


def pair_files(gt_dir: Path, image_dir: Path) -> list[tuple[Path, list[Path]]]:
    """``(image, [boundary maps])`` pairs: ``STEM.png`` or ``STEM_K.png`` in ``gt_dir`` per
    image ``STEM.*`` in ``image_dir``."""
    if not gt_dir.is_dir() or not image_dir.is_dir():
        raise FileNotFoundError(f"--gt {gt_dir} and --images {image_dir} must be directories")
    images = {p.stem: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    pairs: dict[str, list[Path]] = {}
    for path in sorted(gt_dir.glob("*.png")):
        stem = path.stem
        if stem not in images and "_" in stem and stem.rsplit("_", 1)[0] in images:
            stem = stem.rsplit("_", 1)[0]
        if stem not in images:
            raise FileNotFoundError(
                f"ground truth {path.name} has no image {stem}.* in {image_dir}"
            )
        pairs.setdefault(stem, []).append(path)
    if not pairs:
        raise FileNotFoundError(f"no boundary PNGs in {gt_dir}")
    return [(images[stem], paths) for stem, paths in sorted(pairs.items())]


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from composeseg.evaluation.edges import edge_f_measure
    from composeseg.image import load_image
    from composeseg.io import check_output_file, write_json
    from composeseg.progress import progress

    if args.output is not None:
        check_output_file(args.output)  # before any work
    pairs = pair_files(args.gt, args.images)
    if args.max_images:
        pairs = pairs[: args.max_images]
    detector = _detector(args)
    edges, truths = [], []
    for image_path, gt_paths in progress(pairs, desc=f"edges ({args.method})", unit="img"):
        edges.append(detector(load_image(image_path)))
        truths.append([np.asarray(Image.open(p).convert("L")) > 0 for p in gt_paths])
    metrics = edge_f_measure(edges, truths, thresholds=args.thresholds)
    print(metrics.table())
    if args.output:
        write_json(args.output, metrics.to_dict())
    return 0


def _detector(args: argparse.Namespace) -> Any:
    from composeseg.pipelines import edges

    if args.method == "sobel":
        return edges.sobel_edges
    if args.method == "canny":
        return edges.canny_edges
    from composeseg.pipelines.cli.edges import build

    return build(args, progress=False)
