"""Proposal recall and edge quality of a SAM model on generated scenes it never saw.

Scenes come from the evaluation seed range (``EVALUATION_SEED_START``: never used in
training), textured (stripes, checks, grain on objects and background), so gradient-based
detectors fire on texture while SAM's edges should follow objects. Prints one Markdown table:

- proposals: class-agnostic mask AR@100 / AR@1000 of :class:`ObjectProposals`;
- edges: BSDS ODS / OIS / AP / R50 of :class:`EdgeDetection`, Sobel and Canny on the same
  scenes (tolerance 0.0075 of the diagonal).

    python benchmarks/quality_amg.py                        # the embedded demo model
    python benchmarks/quality_amg.py --sam DIR --scenes 4 --points-per-side 8   # quick check
    python benchmarks/quality_amg.py --family independent --edges-only   # another generator
    python benchmarks/quality_amg.py --family independent --split validation   # for choosing
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sam", default=None, help="model source (default: the demo model)")
    parser.add_argument("--scenes", type=int, default=50)
    parser.add_argument("--size", type=int, default=256, help="scene side, pixels")
    parser.add_argument("--points-per-side", type=int, default=0, help="override both grids")
    parser.add_argument("--thresholds", type=int, default=99)
    parser.add_argument(
        "--family",
        choices=("training", "independent"),
        default="training",
        help="textured scenes of the training generator (in-distribution) or the independent "
        "family's test split (other shapes, looks and sizes; --size does not apply)",
    )
    parser.add_argument(
        "--split",
        choices=("test", "validation"),
        default="test",
        help="split of --family independent: test for reported figures, validation for "
        "choosing settings",
    )
    parser.add_argument("--edges-only", action="store_true", help="skip the proposals table")
    args = parser.parse_args(argv)

    from composeseg import load_sam
    from composeseg.evaluation.edges import edge_f_measure
    from composeseg.evaluation.proposals import proposal_recall
    from composeseg.pipelines.edges import EdgeDetection, canny_edges, sobel_edges
    from composeseg.pipelines.proposals import ObjectProposals
    from composeseg.synthetic import SceneConfig, generate_scene, scenes_to_coco
    from composeseg.train.config import EVALUATION_SEED_START

    if args.family == "independent":
        from composeseg.synthetic.independent import generate_independent_scene, independent_seeds

        seeds = independent_seeds(args.split, args.scenes)
        scenes = [generate_independent_scene(s) for s in seeds]
    else:
        config = SceneConfig.textured(height=args.size, width=args.size)
        seeds = range(EVALUATION_SEED_START, EVALUATION_SEED_START + args.scenes)
        scenes = [generate_scene(seed, config) for seed in seeds]
    sam = load_sam(args.sam, device="cpu")
    grid = {"points_per_side": args.points_per_side} if args.points_per_side else {}
    proposals = ObjectProposals(sam, output="rle", **grid)
    edges = EdgeDetection(sam, **grid)

    with tempfile.TemporaryDirectory() as tmp:
        gt = scenes_to_coco(scenes, Path(tmp))
    ids = [image["id"] for image in gt["images"]]
    if not args.edges_only:
        start = time.perf_counter()
        predicted = {i: proposals(s.image) for i, s in zip(ids, scenes, strict=True)}
        recall = proposal_recall(predicted, gt)
        proposal_seconds = time.perf_counter() - start

    truths = [s.boundaries() for s in scenes]
    rows = []
    own = f"{sam.upsampling} maps"
    detectors: tuple[tuple[str, Any], ...] = (
        (f"SAM (EdgeDetection, {own})", edges),
        (
            f"SAM (EdgeDetection, weight_by_iou, {own})",
            EdgeDetection(sam, weight_by_iou=True, **grid),
        ),
    )
    if sam.upsampling != "bilinear":  # the paper's maps, measured beside the model's own
        detectors += (
            (
                "SAM (EdgeDetection, bilinear maps)",
                EdgeDetection(sam, upsampling="bilinear", **grid),
            ),
            (
                "SAM (EdgeDetection, weight_by_iou, bilinear maps)",
                EdgeDetection(sam, upsampling="bilinear", weight_by_iou=True, **grid),
            ),
        )
    detectors += (("Sobel", sobel_edges),)
    for name, detector in detectors:
        start = time.perf_counter()
        maps = [detector(s.image) for s in scenes]
        seconds = time.perf_counter() - start
        rows.append((name, edge_f_measure(maps, truths, thresholds=args.thresholds), seconds))
    start = time.perf_counter()
    maps = [canny_edges(s.image) for s in scenes]
    seconds = time.perf_counter() - start
    rows.append(("Canny (16 settings)", edge_f_measure(maps, truths, thresholds=16), seconds))

    what = f"independent-family ({args.split})" if args.family == "independent" else "textured"
    print(f"model: {sam.name}; {len(scenes)} {what} scenes")
    if not args.edges_only:
        print("\n| proposals | AR@100 | AR@1000 | ARs | ARm | ARl | s / image |")
        print("|---|---|---|---|---|---|---|")
        cells = [recall.ar_100, recall.ar_1000, recall.ar_small, recall.ar_medium, recall.ar_large]
        text = " | ".join(f"{100 * v:.1f}" if v >= 0 else "-" for v in cells)
        print(f"| ObjectProposals | {text} | {proposal_seconds / len(scenes):.2f} |")
    print("\n| edges | ODS | OIS | AP | R50 | s / image |")
    print("|---|---|---|---|---|---|")
    for name, m, seconds in rows:
        values = " | ".join(f"{v:.3f}" for v in (m.ods, m.ois, m.ap, m.r50))
        print(f"| {name} | {values} | {seconds / len(scenes):.2f} |")


if __name__ == "__main__":
    main()
