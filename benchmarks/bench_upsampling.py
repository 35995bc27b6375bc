"""What guided upsampling costs and buys: Meta's bilinear masks against guided ones.

Usage:
    python benchmarks/bench_upsampling.py                 # demo SAM, 3 image sizes, 1 thread
    python benchmarks/bench_upsampling.py --sizes 360x480 --threads 2
    python benchmarks/bench_upsampling.py --sam DIR       # any model; a mask refiner adds learned

One generated scene per size (objects scale with the image), one embedding, box prompts of every
object; ``Sam.segment`` timed with ``upsampling="bilinear"`` (the peer: Meta's
``postprocess_masks``) and ``"guided"`` on the same embedding, best of 3; a model with a learned
mask refiner (the demo SAM's; ``python -m composeseg.train.refiner``) adds ``"learned"``, and
on a CPU with native bf16, where the refiner runs in bfloat16, ``"learned float32"``. Box
mIoU is against the scene's ground truth: in-distribution for the demo SAM (its training
generator), so it shows the mechanism, not a zero-shot figure (README, "The demo model", has
those).
"""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from unittest.mock import patch

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import best_time, print_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sam", default=None, help="model source (default: the demo SAM)")
    parser.add_argument("--sizes", nargs="+", default=["360x480", "1080x1920", "3000x4000"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from composeseg import load_sam
    from composeseg.device import cpu_has_native_bf16
    from composeseg.evaluation.points import paired_mask_iou
    from composeseg.sam import Sam
    from composeseg.synthetic import SceneConfig, generate_scene

    guided = load_sam(args.sam, device="cpu", upsampling="guided")
    # same model, so the guided Sam's embeddings (which hold the image) serve both
    bilinear = Sam(guided.backend, device=guided.device, upsampling="bilinear")
    variants = [("bilinear", bilinear, nullcontext), ("guided", guided, nullcontext)]
    if guided.refiner is not None:
        learned = Sam(
            guided.backend, device=guided.device, upsampling="learned", refiner=guided.refiner
        )
        variants.append(("learned", learned, nullcontext))
        if cpu_has_native_bf16():  # the refiner runs in bfloat16 here; float32 is the peer
            float32 = partial(patch, "composeseg.device.cpu_has_native_bf16", return_value=False)
            variants.append(("learned float32", learned, float32))
    rows = []
    for size in args.sizes:
        height, width = (int(v) for v in size.split("x"))
        scene = generate_scene(
            1_000_000_000, SceneConfig(height=height, width=width, min_objects=6, max_objects=6)
        )
        boxes = scene.boxes()
        truth = np.stack([instance.mask for instance in scene.instances])
        embedding = guided.embed(scene.image)
        cells = []
        for _, sam, context in variants:
            with context():
                seconds = best_time(partial(sam.segment, embedding, boxes=boxes), repeat=3)
                masks = sam.segment(embedding, boxes=boxes).dense()
            miou = float(paired_mask_iou(masks[:, 0], truth).mean())
            cells.append((1000 * seconds / len(boxes), miou))
        plain_ms = cells[0][0]
        rows.append(
            [f"{width}×{height}", len(boxes)]
            + [f"{ms:.1f}" for ms, _ in cells]
            + [f"{ms / plain_ms:.1f}×" for ms, _ in cells[1:]]
            + [f"{iou:.3f}" for _, iou in cells]
        )
    print(f"{guided.name}, {args.threads} thread(s), Sam.segment with box prompts, best of 3")
    names = [name for name, _, _ in variants]
    print_table(
        ["image", "objects"]
        + [f"{name} ms/object" for name in names]
        + [f"{name} cost" for name in names[1:]]
        + [f"box mIoU {name}" for name in names],
        rows,
    )


if __name__ == "__main__":
    main()
