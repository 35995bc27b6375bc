"""Mask AP of detector + SAM on generated COCO-format scenes: oracle boxes and a simulated
detector (jittered and dropped boxes), with and without the refinement pass, each with SAM's
single mask (the default) and the mask that fits the box best (``mask_selection="box_fit"``).

Usage:
    python benchmarks/quality_instances.py                 # the embedded demo model
    python benchmarks/quality_instances.py --sam DIR_OR_ID # any SAM source load_sam accepts
    python benchmarks/quality_instances.py --tiny          # random tiny model: a smoke run
    python benchmarks/quality_instances.py --family independent  # scenes of another generator
    python benchmarks/quality_instances.py --zoom 6        # each object in its own window

The simulated detector (``composeseg.evaluation.simulated_detections``) moves each box edge
by a Gaussian of ``jitter`` x the box side, drops a ``drop`` fraction of the objects, and
scores the rest by their box IoU with the ground truth. Scenes are written with
``composeseg.synthetic.write_coco``, so the numbers are reproducible from the seeds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_table

MASKS = {"score": "SAM's single mask (default)", "box_fit": "box fit"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sam", default=None, help="SAM source (default: the demo model)")
    parser.add_argument("--tiny", action="store_true", help="random tiny model (smoke run)")
    parser.add_argument("--images", type=int, default=50, help="number of generated scenes")
    parser.add_argument("--size", type=int, default=256, help="scene side in pixels")
    parser.add_argument(
        "--family",
        choices=("training", "independent"),
        default="training",
        help="the training generator's scenes (in-distribution) or the independent family's "
        "test split (other shapes, looks and sizes; --size and --seed do not apply)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=1_000_020_000,
        help="first scene seed (default: in the evaluation range, unseen by the demo model)",
    )
    parser.add_argument(
        "--zoom",
        type=float,
        default=None,
        metavar="CONTEXT",
        help="segment each object in a window CONTEXT times its box (composeseg.zoom)",
    )
    args = parser.parse_args()

    from composeseg import load_sam
    from composeseg.adapters import CocoBoxes
    from composeseg.evaluation import evaluate_instances, simulated_detections
    from composeseg.pipelines import InstanceSegmentation
    from composeseg.synthetic import SceneConfig, generate_scenes, write_coco

    with tempfile.TemporaryDirectory() as tmp:
        source = args.sam
        if args.tiny:
            from composeseg.tiny import build_model, tiny_sam_config

            source = str(Path(tmp) / "tiny")
            build_model(tiny_sam_config(), seed=0).save_pretrained(source)
        sam = load_sam(source, device="cpu")
        if args.family == "independent":
            from composeseg.synthetic.independent import (
                generate_independent_scene,
                independent_seeds,
            )

            scenes = [generate_independent_scene(s) for s in independent_seeds("test", args.images)]
        else:
            config = SceneConfig(height=args.size, width=args.size)
            scenes = list(generate_scenes(range(args.seed, args.seed + args.images), config))
        gt_path = write_coco(scenes, Path(tmp) / "scenes")
        gt = json.loads(gt_path.read_text())
        image_dir = gt_path.parent / "images"
        detectors: dict[str, Any] = {"oracle GT boxes": CocoBoxes(gt)}
        for jitter, drop in ((0.05, 0.0), (0.1, 0.1), (0.2, 0.2)):
            dets = simulated_detections(gt, jitter, drop, seed=1)
            name = f"jitter {jitter:.0%}, drop {drop:.0%}"
            detectors[name] = CocoBoxes(dets, dataset=gt)
        rows = []
        for name, detector in detectors.items():
            for selection, refine in itertools.product(MASKS, (False, True)):
                pipe = InstanceSegmentation(
                    sam, detector, refine=refine, mask_selection=selection, zoom=args.zoom
                )
                m = evaluate_instances(pipe, gt, image_dir, progress=False)
                rows.append(
                    [name, MASKS[selection], "on" if refine else "off"]
                    + [f"{100 * v:.1f}" if v >= 0 else "-" for v in (m.ap, m.ap50, m.ap75)]
                    + [f"{100 * v:.1f}" if v >= 0 else "-" for v in (m.ap_small, m.ap_medium,
                                                                      m.ap_large)]
                )  # fmt: skip
        print(
            f"model: {sam.name if not args.tiny else 'tiny random'}; {args.images} scenes "
            f"({args.family} family), {len(gt['annotations'])} objects"
            + ("" if args.zoom is None else f"; zoom {args.zoom:g}")
        )
        print_table(["boxes", "mask", "refine", "AP", "AP50", "AP75", "APs", "APm", "APl"], rows)


if __name__ == "__main__":
    main()
