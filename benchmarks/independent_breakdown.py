"""Where the demo SAM fails on the independent family: box mIoU split by scene factors.

    python benchmarks/independent_breakdown.py [--sam DIR] [--scenes 40] [--split validation]
    python benchmarks/independent_breakdown.py --family training   # the same on new seeds of a
                                                                   # family the model trained on

Every object of the split gets its tight ground-truth box as prompt (the box protocol of
``composeseg eval points``). Its IoU is then grouped by what makes it hard: its area in the
model frame (COCO's small: under 32² pixels), its contrast with the 3-pixel ring around it
(CIELAB distance), whether it touches another object, how much of its box other objects
cover, and its kind. It also prints the resolution ceiling: the IoU a perfect mask keeps
after the trip through SAM's low-resolution logits (4 model-frame pixels per logit) and back,
and what a one-pixel error costs: the IoU of each ground-truth mask with itself grown or
shrunk by one pixel all round (3 x 3 cross), in the image's own pixels. Last, the kind of
error: the share of objects missed outright (IoU under 0.5) and the mIoU of the rest, and the
share of wrong pixels within one pixel of the ground truth's boundary (what a boundary refit
could fix) against the share further away (wrong regions).
Use the validation split to choose settings; the test split is for reported figures.
"""

from __future__ import annotations

import argparse
import sys

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from composeseg import load_sam
from composeseg.evaluation.families import SCENE_FAMILIES, family_scene, family_seeds
from composeseg.geometry import paired_mask_iou, tight_boxes
from composeseg.sam import Sam
from composeseg.transforms import resized_shape, upscale_logits
from composeseg.upsampling import UPSAMPLINGS


def low_res_roundtrip(masks: np.ndarray, sam: Sam) -> np.ndarray:
    """``(N, H, W) bool`` masks as perfect low-res logits: each is area-resized into ``sam``'s
    input frame and its ``S/4`` logit grid, then brought back by the decoder's own upscaling
    (:func:`composeseg.transforms.upscale_logits`) and thresholded, ``(N, H, W) bool``."""
    count, height, width = masks.shape
    frame, mode = sam.image_size, sam.backend.resize_mode
    h, w = resized_shape((height, width), frame, mode)
    padded = np.zeros((count, 1, frame, frame), np.float32)
    for k, mask in enumerate(masks):
        padded[k, 0, :h, :w] = cv2.resize(
            mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA
        )
    low = F.interpolate(torch.from_numpy(padded), (frame // 4, frame // 4), mode="area")
    # bilinear upscaling is linear, so probability 0.5 maps to logit 0
    return (upscale_logits(low - 0.5, frame, (h, w), (height, width), mode)[:, 0] > 0).numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sam", default=None, help="model directory (default: the demo SAM)")
    parser.add_argument("--scenes", type=int, default=40)
    parser.add_argument("--split", choices=("validation", "test"), default="validation")
    parser.add_argument(
        "--family",
        choices=SCENE_FAMILIES,
        default="independent",
        help="the independent family's --split, or the evaluation seeds of a family the demo "
        "SAM trained on (composeseg eval points --family)",
    )
    parser.add_argument(
        "--upsampling",
        choices=UPSAMPLINGS,
        default=None,
        help="mask upsampling (default: the model's own; the demo SAM: learned)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    sam = load_sam(args.sam, device="cpu", upsampling=args.upsampling)
    rows: list[dict[str, float | str | bool]] = []
    seeds = family_seeds(args.family, args.scenes, args.split)
    scenes = (family_scene(args.family, s) for s in seeds)
    wrong = np.zeros(2)  # wrong pixels within one pixel of the boundary, further away
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    for scene in scenes:
        masks = scene.masks()
        height, width = masks.shape[1:]
        predicted = sam.segment(scene.image, boxes=tight_boxes(masks)).masks[:, 0]
        ious = paired_mask_iou(predicted, masks)
        ceilings = paired_mask_iou(low_res_roundtrip(masks, sam), masks)
        as_u8 = masks.astype(np.uint8)
        plus_one = np.stack([cv2.dilate(m, cross) for m in as_u8]) > 0
        minus_one = np.stack([cv2.erode(m, cross) for m in as_u8]) > 0
        one_px = paired_mask_iou(plus_one, masks), paired_mask_iou(minus_one, masks)
        errors = predicted != masks
        near = errors & (plus_one != minus_one)  # the band one pixel either side of the boundary
        wrong += near.sum(), (errors & ~near).sum()
        lab = cv2.cvtColor(scene.image, cv2.COLOR_RGB2LAB).astype(np.float32)
        for i, (mask, instance) in enumerate(zip(masks, scene.instances, strict=True)):
            grown = cv2.dilate(mask.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
            ring = grown & ~mask
            others = np.delete(masks, i, axis=0).any(0)
            x0, y0, x1, y1 = tight_boxes(mask[None])[0].astype(int)
            rows.append({
                "iou": float(ious[i]),
                "ceiling": float(ceilings[i]),
                "grown": float(one_px[0][i]),
                "shrunk": float(one_px[1][i]),
                "frame_area": mask.sum() * (sam.image_size / max(height, width)) ** 2,
                "contrast": float(np.linalg.norm(lab[mask].mean(0) - lab[ring].mean(0)))
                if ring.any() else 0.0,
                "touching": bool((ring & others).any()),
                "others_in_box": float(others[y0:y1, x0:x1].mean()),
                "kind": instance.kind,
            })  # fmt: skip
    iou = np.array([r["iou"] for r in rows])
    groups = {
        "all": [True] * len(rows),
        "small (< 32² pixels of the model frame)": [float(r["frame_area"]) < 32**2 for r in rows],
        "low contrast (< 30)": [float(r["contrast"]) < 30 for r in rows],
        "touches another object": [bool(r["touching"]) for r in rows],
        "others cover > 10 % of its box": [float(r["others_in_box"]) > 0.1 for r in rows],
        **{f"kind {k}": [r["kind"] == k for r in rows] for k in sorted({r["kind"] for r in rows})},
    }
    what = f"{args.split} split" if args.family == "independent" else f"{args.family} family"
    print(f"{what}, {args.scenes} scenes, {len(rows)} objects, box prompts")
    print(f"resolution ceiling (perfect logits): {np.mean([r['ceiling'] for r in rows]):.3f}")
    grown_iou, shrunk_iou = (np.mean([r[k] for r in rows]) for k in ("grown", "shrunk"))
    print(f"one pixel off (ground truth grown / shrunk): {grown_iou:.3f} / {shrunk_iou:.3f}")
    missed = iou < 0.5
    print(
        f"missed (IoU < 0.5): {missed.mean():.1%} of objects, the rest mIoU "
        f"{iou[~missed].mean():.3f}; wrong pixels within 1 px of the boundary: "
        f"{wrong[0] / max(1, wrong.sum()):.1%}, further away: {wrong[1] / max(1, wrong.sum()):.1%}"
    )
    print("| objects | n | box mIoU | the others: n | box mIoU |\n|---|---|---|---|---|")
    for name, selection in groups.items():
        sel = np.array(selection, bool)
        rest = f"{(~sel).sum()} | {iou[~sel].mean():.3f}" if (~sel).any() else "0 | –"
        print(f"| {name} | {sel.sum()} | {iou[sel].mean():.3f} | {rest} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
