"""Segment-everything speed and memory: Meta's ``SamAutomaticMaskGenerator`` vs ours.

Both run on the same ViT-B-size random weights (Meta's model is saved to a ``.pth`` and loaded
with ``composeseg.load_sam``), the same images and the same parameters, in one run. Time is
split into image encoder, prompt decoder and everything else (post-processing: upsampling,
scoring, NMS, RLE). Masks are compared too (count, and each reference mask's best IoU).

    python benchmarks/bench_amg.py                       # default: 32x32 grid, 1500x1000
    python benchmarks/bench_amg.py --points-per-side 8 --image-size 512 --images 1
    python benchmarks/bench_amg.py --memory              # + peak RSS, 4000x3000, 1 crop layer
    python benchmarks/bench_amg.py --memory-only --memory-sam demo   # the demo model, masks kept

Random weights make masks near-random; the time spent per candidate is what matters here.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def build_reference(seed: int, tiny: bool) -> Any:
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from meta_reference import build_meta_sam_vit_b, build_tiny_meta_sam
    except ImportError:  # outside a source checkout
        from segment_anything import build_sam_vit_b

        torch.manual_seed(seed)
        return build_sam_vit_b(checkpoint=None).eval()
    return build_tiny_meta_sam(seed, img_size=128) if tiny else build_meta_sam_vit_b(seed)


def make_images(count: int, height: int, width: int) -> list[np.ndarray]:
    try:
        from composeseg.synthetic import SceneConfig, generate_scene

        config = SceneConfig(height=height, width=width)
        return [generate_scene(seed, config).image for seed in range(count)]
    except ImportError:
        rng = np.random.default_rng(0)
        return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


class Timer:
    """Accumulates seconds per stage by wrapping callables."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, owner: Any, name: str, stage: str) -> None:
        inner = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - start

        setattr(owner, name, timed)

    @contextmanager
    def total(self) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds["total"] += time.perf_counter() - start


def run_meta(meta: Any, images: list[np.ndarray], params: dict[str, Any]) -> tuple[Timer, list]:
    from segment_anything import SamAutomaticMaskGenerator

    generator = SamAutomaticMaskGenerator(meta, output_mode="coco_rle", **params)
    timer = Timer()
    timer.wrap(generator.predictor, "set_image", "encoder")
    timer.wrap(meta.prompt_encoder, "forward", "decoder")
    timer.wrap(meta.mask_decoder, "forward", "decoder")
    results = []
    for image in images:
        with timer.total():
            results.append([a["segmentation"] for a in generator.generate(image)])
    return timer, results


def run_ours(sam: Any, images: list[np.ndarray], params: dict[str, Any]) -> tuple[Timer, list]:
    from composeseg.pipelines.amg import AutomaticMaskGenerator

    generator = AutomaticMaskGenerator(sam, output="rle", **params)
    timer = Timer()
    timer.wrap(sam, "embed", "encoder")
    timer.wrap(sam, "decode_low_res", "decoder")
    results = []
    for image in images:
        with timer.total():
            results.append(list(generator(image).data["rle"]))
    return timer, results


def compare(reference: list, ours: list) -> tuple[str, float]:
    from pycocotools import mask as mask_utils

    counts = f"{sum(map(len, reference))} / {sum(map(len, ours))}"
    worst = 1.0
    for ref, got in zip(reference, ours, strict=True):
        if ref and got:
            worst = min(worst, float(mask_utils.iou(ref, got, [0] * len(got)).max(1).min()))
        elif ref or got:
            worst = 0.0
    return counts, worst


def print_table(meta: Timer, ours: Timer, counts: str, worst: float, n: int) -> None:
    print(f"\n{'stage (s / image)':<22}{'Meta':>10}{'ours':>10}{'ratio':>8}")
    for stage in ("encoder", "decoder", "post", "total"):
        if stage == "post":
            m = meta.seconds["total"] - meta.seconds["encoder"] - meta.seconds["decoder"]
            o = ours.seconds["total"] - ours.seconds["encoder"] - ours.seconds["decoder"]
        else:
            m, o = meta.seconds[stage], ours.seconds[stage]
        ratio = f"{m / o:.2f}x" if o > 0 else "-"
        print(f"{stage:<22}{m / n:>10.2f}{o / n:>10.2f}{ratio:>8}")
    print(f"masks (Meta / ours): {counts}; worst best-IoU of a reference mask: {worst:.4f}")


def measure_memory(
    checkpoint: str, params: dict[str, Any], reference: bool, sam: str | None = None
) -> None:
    """Peak RSS above the loaded model on a generated 4000x3000 scene, crop_n_layers=1, in fresh
    processes; ``sam`` replaces our ViT-B (e.g. None for the demo model, whose masks survive the
    default filters where random weights' do not)."""
    for who in ("ours", "meta") if reference else ("ours",):
        code = _MEMORY_SCRIPT.format(
            checkpoint=checkpoint,
            sam=checkpoint if sam == "vitb" else sam,
            params=json.dumps({**params, "crop_n_layers": 1}),
            who=who,
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        if out.returncode:
            print(f"{who}: memory run failed:\n{out.stderr[-2000:]}")
            continue
        model = "ViT-B" if sam == "vitb" else (sam or "demo model")
        print(f"{who} ({model}): 4000x3000, crop_n_layers=1: {out.stdout.strip()}")


_MEMORY_SCRIPT = """
import json, time, numpy as np, torch
params = json.loads({params!r})
from composeseg.synthetic import SceneConfig, generate_scene
image = generate_scene(1_000_000_000, SceneConfig(height=3000, width=4000)).image
if "{who}" == "ours":
    from composeseg import load_sam
    from composeseg.pipelines.amg import AutomaticMaskGenerator
    sam = load_sam({sam!r}, device="cpu")
    run = lambda: AutomaticMaskGenerator(sam, output="rle", **params)(image)
else:
    import sys; sys.path.insert(0, {tests!r})
    from meta_reference import build_meta_sam
    from segment_anything import SamAutomaticMaskGenerator
    meta = build_meta_sam(); meta.load_state_dict(torch.load({checkpoint!r}))
    run = lambda: SamAutomaticMaskGenerator(meta, output_mode="coco_rle", **params).generate(image)
def status_kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
# Loading (converting a .pth) peaks above what the run needs: reset the kernel's high-water
# mark (VmHWM) once the model is loaded, so the peak below is the run's own.
open("/proc/self/clear_refs", "w").write("5")
base = status_kb("VmRSS")
start = time.perf_counter(); n = len(run()); seconds = time.perf_counter() - start
peak = status_kb("VmHWM")
print(f"{{n}} masks in {{seconds:.1f}} s, peak RSS {{peak / 2**20:.2f}} GB, "
      f"{{(peak - base) / 2**20:.2f}} GB above the loaded model")
""".replace("{tests!r}", repr(str(ROOT / "tests")))


def _memory_sam(value: str) -> str | None:
    return None if value == "demo" else value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--points-per-batch", type=int, default=64)
    parser.add_argument("--image-size", default="1500x1000", help="WxH, or N for NxN")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--pred-iou-thresh", type=float, default=0.88)
    parser.add_argument("--stability-score-thresh", type=float, default=0.95)
    parser.add_argument("--crop-n-layers", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--tiny", action="store_true", help="tiny model (smoke test)")
    parser.add_argument("--warmup", action="store_true", help="run both once before timing")
    parser.add_argument("--memory", action="store_true", help="also measure peak memory")
    parser.add_argument("--memory-only", action="store_true", help="only the memory run")
    parser.add_argument(
        "--memory-sam",
        default="vitb",
        help="our model in the memory run: vitb (the random ViT-B) or any load_sam source; "
        "'demo' for the embedded model",
    )
    parser.add_argument(
        "--memory-reference", action="store_true", help="also Meta's peak memory (needs >10 GB)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    width, _, height = args.image_size.partition("x")
    size = (int(height or width), int(width))
    params = {
        "points_per_side": args.points_per_side,
        "points_per_batch": args.points_per_batch,
        "pred_iou_thresh": args.pred_iou_thresh,
        "stability_score_thresh": args.stability_score_thresh,
        "crop_n_layers": args.crop_n_layers,
    }
    from composeseg import load_sam

    meta = build_reference(args.seed, args.tiny)
    images = make_images(args.images, *size)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = os.path.join(tmp, "sam.pth")
        torch.save(meta.state_dict(), checkpoint)
        sam = load_sam(checkpoint, device="cpu")
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
            f"{'tiny' if args.tiny else 'ViT-B'} random weights; {len(images)} image(s) "
            f"{size[1]}x{size[0]}; {json.dumps(params)}"
        )
        if args.memory_only:
            measure_memory(checkpoint, params, args.memory_reference, _memory_sam(args.memory_sam))
            return
        if args.warmup:  # first calls pay for lazy initialisation; costs one encoder pass each
            run_ours(sam, images[:1], {**params, "points_per_side": 2})
            run_meta(meta, images[:1], {**params, "points_per_side": 2})
        meta_timer, reference = run_meta(meta, images, params)
        our_timer, ours = run_ours(sam, images, params)
        print_table(meta_timer, our_timer, *compare(reference, ours), len(images))
        if args.memory or args.memory_reference:
            measure_memory(checkpoint, params, args.memory_reference, _memory_sam(args.memory_sam))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"max RSS of this process: {peak:.2f} GB")


if __name__ == "__main__":
    main()
