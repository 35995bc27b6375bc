"""What zoomed prompting costs and buys: one encoder pass per image against one per object.

Usage:
    python benchmarks/bench_zoom.py                        # demo SAM, 40 validation scenes
    python benchmarks/bench_zoom.py --split test --scenes 200 --contexts 4 6 8
    python benchmarks/bench_zoom.py --scenes 1 --contexts 5 --picture examples/zoom.jpg

Every object of the independent family's scenes (never trained on) gets its tight
ground-truth box. The peer is ``Sam.segment`` on the whole image (encode once, decode all
boxes); each zoomed row is ``composeseg.zoom.segment_zoomed`` with that context, refinement
pass on. Box mIoU is split by the object's area in the image's pixels (COCO's small: under
32²). Time is per object, encoding included, one thread, the two interleaved scene by scene.
Choose the context on the validation split; the test split is for reported figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_table

SMALL = 32**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sam", default=None, help="model source (default: the demo SAM)")
    parser.add_argument("--scenes", type=int, default=40)
    parser.add_argument("--split", choices=("validation", "test"), default="validation")
    parser.add_argument("--contexts", type=float, nargs="+", default=[5.0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--picture", type=Path, help="draw the first scene: the peer against the last context"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from composeseg import load_sam
    from composeseg.geometry import paired_mask_iou, tight_boxes
    from composeseg.synthetic.independent import generate_independent_scene, independent_seeds
    from composeseg.zoom import segment_zoomed

    sam = load_sam(args.sam, device="cpu")
    methods = ["whole image (peer)", *(f"zoom {c:g}" for c in args.contexts)]
    ious: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    seconds = dict.fromkeys(methods, 0.0)
    areas, drawn = [], None
    for seed in independent_seeds(args.split, args.scenes):
        scene = generate_independent_scene(seed)
        truth = scene.masks()
        truth = truth[truth.reshape(len(truth), -1).any(1)]
        boxes = tight_boxes(truth)
        areas.append(truth.reshape(len(truth), -1).sum(1))
        masks = {}
        for method, context in zip(methods, [None, *args.contexts], strict=True):
            start = time.perf_counter()
            if context is None:
                prediction = sam.segment(scene.image, boxes=boxes)
            else:
                prediction = segment_zoomed(sam, scene.image, boxes=boxes, context=context)
            seconds[method] += time.perf_counter() - start
            masks[method] = prediction.dense()[:, 0]
            ious[method].append(paired_mask_iou(masks[method], truth))
        if drawn is None:
            drawn = (scene.image, truth, masks[methods[0]], masks[methods[-1]])
    area = np.concatenate(areas)
    small = area < SMALL
    rows = []
    for method in methods:
        iou = np.concatenate(ious[method])
        rows.append(
            [
                method,
                f"{iou.mean():.3f}",
                f"{iou[small].mean():.3f}" if small.any() else "-",
                f"{iou[~small].mean():.3f}" if (~small).any() else "-",
                f"{1000 * seconds[method] / len(iou):.0f}",
            ]
        )
    print(
        f"{sam.name}, {args.threads} thread(s); independent family, {args.split} split: "
        f"{args.scenes} scenes, {len(area)} objects ({int(small.sum())} small)"
    )
    print_table(["method", "box mIoU", "small", "medium + large", "ms/object"], rows)
    if args.picture is not None and drawn is not None:
        draw(args.picture, *drawn, methods[-1])


def draw(
    path: Path,
    image: np.ndarray,
    truth: np.ndarray,
    plain: np.ndarray,
    zoomed: np.ndarray,
    name: str,
) -> None:
    """Side by side, enlarged 2x: the whole-image masks and the zoomed ones (red), the ground
    truth's outline in white."""
    import cv2

    from composeseg.io import write_image

    panels = []
    for masks, title in ((plain, "whole image"), (zoomed, name)):
        big = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
        for mask, gt in zip(masks, truth, strict=True):
            for m, colour, width in ((gt, (255, 255, 255), 1), (mask, (230, 30, 30), 2)):
                resized = cv2.resize(m.astype(np.uint8), None, fx=2, fy=2, interpolation=0)
                contours, _ = cv2.findContours(resized, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
                cv2.drawContours(big, contours, -1, colour, width)
        cv2.putText(big, title, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 0), 2)
        panels.append(big)
    gap = np.full((panels[0].shape[0], 8, 3), 255, np.uint8)
    write_image(path, np.concatenate([panels[0], gap, panels[1]], axis=1))
    print(f"picture: {path}")


if __name__ == "__main__":
    main()
