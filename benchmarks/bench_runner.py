"""The dataset runner against a plain per-image loop, on one machine and on Ray.

Workload: detector boxes -> SAM masks (``InstanceSegmentation`` with the generated scenes'
ground-truth boxes as the detector, so the detector costs nothing and SAM plus file handling
is what is timed), on generated scenes written as PNG files.

Rows, all in one run on the same files:
- loop: the peer, ``for path in paths: detections = pipe(path)`` and one JSON per image, the
  code a user writes without the runner;
- runner b1 / b8: ``pipe.run(folder, write_to=..., batch_size=B)`` (decode prefetched on two
  threads, B images per encoder pass, atomic records, merged predictions.json);
- ray x2: ``engine="ray", workers=2`` on a local Ray (start-up included; models shipped once).

Then the same at ViT-B size (random weights: speed only) with fewer images, the GPU at batch
1/8/16 when CUDA is there, and a worked estimate of the workers a large dataset needs.

    python benchmarks/bench_runner.py                 # 200 demo-model images, 12 at ViT-B
    python benchmarks/bench_runner.py --images 20 --vitb-images 0 --no-ray   # smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from common import print_table

from composeseg import load_sam
from composeseg.adapters import CocoBoxes
from composeseg.coco import single_image_payload
from composeseg.io import write_json
from composeseg.pipelines import InstanceSegmentation
from composeseg.synthetic import SceneConfig, generate_scenes, write_coco


def make_dataset(root: Path, count: int, size: tuple[int, int]) -> Path:
    config = SceneConfig(height=size[0], width=size[1], min_objects=3, max_objects=8)
    return write_coco(generate_scenes(range(10_000, 10_000 + count), config), root)


def loop(pipe: InstanceSegmentation, paths: list[Path], out: Path) -> None:
    """The peer: what a user writes without the runner."""
    from composeseg.image import load_image

    for path in paths:
        rgb = load_image(path)
        detections = pipe.segment(rgb, pipe.detect(rgb, path))
        write_json(
            out / f"{path.name}.json", single_image_payload(detections, path.name, rgb.shape[:2])
        )


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def masks_of(folder: Path) -> dict[str, list[Any]]:
    """file name -> its segmentations, from a runner's or the loop's JSON files."""
    out: dict[str, list[Any]] = {}
    for path in sorted(folder.rglob("*.json")):
        payload = json.loads(path.read_text())
        if "image" in payload:  # a runner record
            out[payload["image"]["file_name"]] = [a["segmentation"] for a in payload["annotations"]]
        elif "images" in payload and len(payload["images"]) == 1:
            name = payload["images"][0]["file_name"]
            out[name] = [a["segmentation"] for a in payload["annotations"]]
    return out


def worst_iou(masks: dict[str, list[Any]], reference: dict[str, list[Any]]) -> float:
    """The lowest IoU between an image's i-th mask here and in ``reference`` (0.0 when the
    files or the mask counts differ): 1.0 means the same masks."""
    from pycocotools import mask as mask_utils

    if masks.keys() != reference.keys():
        return 0.0
    worst = 1.0
    for name, segmentations in masks.items():
        if len(segmentations) != len(reference[name]):
            return 0.0
        for a, b in zip(segmentations, reference[name], strict=True):
            worst = min(worst, float(mask_utils.iou([a], [b], [0])[0, 0]))
    return worst


def section(
    title: str,
    sam: Any,
    count: int,
    size: tuple[int, int],
    ray: bool,
    batches: tuple[int, ...],
    rounds: int,
) -> float:
    """Time every engine on the same files, ``rounds`` times interleaved (a shared machine's
    drift then hits all alike), best round each; returns the best seconds per image."""
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as tmp:
        root = Path(tmp)
        coco = make_dataset(root / "data", count, size)
        images = coco.parent / "images"
        paths = sorted(images.glob("*.png"))
        pipe = InstanceSegmentation(sam, CocoBoxes(coco))
        pipe(paths[0])  # warm-up: first-call allocations are not the runner's doing
        engines: dict[str, Callable[[Path], Any]] = {
            "loop (peer)": lambda out: loop(pipe, paths, out)
        }
        for b in batches:
            engines[f"runner b{b}"] = lambda out, b=b: pipe.run(
                images, write_to=out, batch_size=b, progress=False
            )
        if ray:
            engines["ray x2 (start-up included)"] = lambda out: pipe.run(
                images, write_to=out, engine="ray", workers=2, progress=False
            )
        best = dict.fromkeys(engines, float("inf"))
        same = dict.fromkeys(engines, 1.0)
        reference: dict[str, list[Any]] | None = None
        for r in range(rounds):
            for i, (name, run) in enumerate(engines.items()):
                out = root / f"round{r}-engine{i}"
                out.mkdir()
                best[name] = min(best[name], timed(lambda run=run, out=out: run(out)))
                masks = masks_of(out)
                reference = masks if reference is None else reference
                same[name] = min(same[name], worst_iou(masks, reference))
    base = best["loop (peer)"]
    agree = {name: "yes" if iou == 1.0 else f"{iou:.4f}" for name, iou in same.items()}
    rows = [[name, f"{count / t:.2f}", f"{base / t:.2f}x", agree[name]] for name, t in best.items()]
    print(f"\n{title}: {count} images {size[1]}x{size[0]}, best of {rounds} interleaved rounds")
    print_table(["engine", "images/s", "vs loop", "same masks (else worst IoU)"], rows)
    return min(best.values()) / count


def estimate(seconds_per_image: float) -> None:
    print(f"\nWorked estimate at the measured best {seconds_per_image:.3f} s/image per worker:")
    rows = []
    for name, count in (("COCO val", 5_000), ("SA-1B scale", 1_000_000)):
        hours = count * seconds_per_image / 3600
        rows.append(
            [
                name,
                f"{count:,}",
                f"{hours:.1f}",
                f"{int(np.ceil(hours / 1))}",
                f"{int(np.ceil(hours / 24))}",
            ]
        )
    print_table(["dataset", "images", "1 worker (h)", "workers for 1 h", "workers for 24 h"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=200, help="demo-model images")
    parser.add_argument("--vitb-images", type=int, default=12, help="ViT-B images (0: skip)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray rows")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (best kept)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU threads: {args.threads}; torch {torch.__version__}")
    demo = load_sam(None, device="cpu")
    best = section(
        "Demo model (CPU)", demo, args.images, (256, 320), not args.no_ray, (1, 8), args.rounds
    )
    if args.vitb_images:
        from bench_segment import build_checkpoint

        with tempfile.TemporaryDirectory() as tmp:
            vitb = load_sam(build_checkpoint(Path(tmp), tiny=False), device="cpu")
        best = section(
            "ViT-B size, random weights (CPU)",
            vitb,
            args.vitb_images,
            (480, 640),
            not args.no_ray,
            (1, 4),
            1,
        )
        if torch.cuda.is_available():
            with tempfile.TemporaryDirectory() as tmp:
                gpu = load_sam(build_checkpoint(Path(tmp), tiny=False), device="cuda")
            section("ViT-B size (GPU)", gpu, 64, (480, 640), False, (1, 8, 16), args.rounds)
    estimate(best)


if __name__ == "__main__":
    main()
