"""Image-encoder throughput and memory: Meta's predictor, transformers' SamModel, composeseg.

Usage:
    python benchmarks/bench_encoder.py                   # CPU: ViT-B, batch 1 and 8 (~1 h)
    python benchmarks/bench_encoder.py --tiny            # a smoke run of the same code (~1 min)
    bash benchmarks/bench_encoder_gpu.sh                 # GPU: ViT-B and ViT-H, batch 1/8/16, AMG

Every model has the same random weights, drawn in Meta's ``.pth`` format (ViT-B, or ViT-H with
``--models vit_h``): Meta's ``SamPredictor.set_image`` (one image at a time, its only API),
transformers' ``SamProcessor`` + ``SamModel.get_image_embeddings`` (its default SDPA attention)
and ``composeseg``'s ``Sam.embed_batch`` with each encoder option; ``today`` is composeseg with
transformers' attention, the path before the lean layers. Each row goes from ``(H, W, 3)``
uint8 images to embeddings, its own preprocessing included. Rows run interleaved, round after
round, and the best round counts (the machine may be shared). Peak memory: on a CPU, peak RSS
above the loaded model in a fresh process per cell (the kernel's high-water mark reset after
loading); on a GPU, ``max_memory_allocated`` above the loaded model. Mask IoU: 16 boxes decoded
by one float32 decoder from each row's batch-1 embedding, against ``today``'s. FLOPs per image
are counted by ``torch.utils.flop_counter`` on transformers' eager encoder (meta tensors).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from common import print_table  # noqa: E402

VIT_H = {
    "embed_dim": 1280,
    "depth": 32,
    "num_heads": 16,
    "global_attn_indexes": (7, 15, 23, 31),
}
# dense bf16 tensor-core peaks (TFLOP/s, no sparsity), by a substring of the device name
BF16_PEAK_TFLOPS = {
    "H100 PCIe": 756,
    "H100 NVL": 835,
    "H100": 989,
    "H200": 989,
    "GH200": 989,
    "B200": 2250,
    "A100": 312,
    "L40S": 362,
    "L4": 121,
    "A10G": 70,
    "A10": 125,
    "RTX 4090": 165,
}


@dataclass(frozen=True)
class Option:
    """One row: who encodes, in which dtype, with which composeseg options."""

    who: str  # "meta" | "transformers" | "composeseg"
    dtype: torch.dtype = torch.float32
    attention: str = "lean"
    compile: bool = False


OPTIONS = {
    "meta": Option("meta"),
    "transformers": Option("transformers"),
    "transformers-bf16": Option("transformers", torch.bfloat16),
    "today": Option("composeseg", attention="transformers"),
    "lean": Option("composeseg"),
    "lean-compile": Option("composeseg", compile=True),
    "lean-bf16": Option("composeseg", torch.bfloat16),
    "lean-bf16-compile": Option("composeseg", torch.bfloat16, compile=True),
    "lean-fp16": Option("composeseg", torch.float16),
}
DEFAULT_OPTIONS = {
    "cpu": ["meta", "transformers", "today", "lean", "lean-compile", "lean-bf16"],
    "cuda": [
        "meta",
        "transformers",
        "transformers-bf16",
        "today",
        "lean",
        "lean-bf16",
        "lean-bf16-compile",
    ],
}
Runner = Callable[[list[np.ndarray]], list[torch.Tensor]]


def build_checkpoint(directory: Path, model: str, tiny: bool) -> Path:
    """Random weights in Meta's ``.pth`` format: ViT-B, ViT-H or the tiny test model."""
    from meta_reference import build_meta_sam, build_tiny_meta_sam, perturb_

    if tiny:
        meta = build_tiny_meta_sam(seed=0)
    else:
        meta = perturb_(build_meta_sam(**(VIT_H if model == "vit_h" else {})), 0)
    path = directory / f"sam_{'tiny' if tiny else model}_random.pth"
    torch.save(meta.state_dict(), path)
    return path


def meta_model(checkpoint: Path, model: str, tiny: bool) -> Any:
    from meta_reference import build_meta_sam, build_tiny_meta_sam

    meta = (
        build_tiny_meta_sam(seed=0)
        if tiny
        else build_meta_sam(**(VIT_H if model == "vit_h" else {}))
    )
    meta.load_state_dict(torch.load(checkpoint, weights_only=True))
    return meta.eval()


def images(count: int, tiny: bool) -> list[np.ndarray]:
    from bench_segment import scene

    return [scene(96, 128, seed) if tiny else scene(768, 1024, seed) for seed in range(count)]


def load(name: str, checkpoint: Path, model: str, tiny: bool, device: str) -> Runner:
    """The row's encoder as ``images -> one (1, C, h, w) embedding per image``."""
    option = OPTIONS[name]
    if option.who == "meta":
        from segment_anything import SamPredictor

        predictor = SamPredictor(meta_model(checkpoint, model, tiny).to(device))

        def run_meta(batch: list[np.ndarray]) -> list[torch.Tensor]:
            out = []
            for image in batch:
                predictor.set_image(image)
                out.append(predictor.features)
            return out

        return run_meta
    if option.who == "transformers":
        from transformers import SamImageProcessor

        from composeseg.convert import load_meta_sam_checkpoint

        hf = load_meta_sam_checkpoint(checkpoint).to(device, option.dtype).eval()
        side = hf.config.vision_config.image_size
        processor = SamImageProcessor(
            size={"longest_edge": side}, pad_size={"height": side, "width": side}
        )

        def run_transformers(batch: list[np.ndarray]) -> list[torch.Tensor]:
            pixels = processor(batch, return_tensors="pt")["pixel_values"]
            embeddings = hf.get_image_embeddings(pixels.to(device, option.dtype))
            return list(embeddings.split(1))

        return run_transformers
    from composeseg import load_sam

    sam = load_sam(
        checkpoint,
        device=device,
        dtype=option.dtype,
        attention=option.attention,  # type: ignore[arg-type]
        compile=option.compile,
    )
    return lambda batch: [e.features[0] for e in sam.embed_batch(batch)]


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def attention_map_bytes(name: str, checkpoint: Path, batch: int) -> int:
    """Bytes that transformers' attention holds at once in a global layer (its bias and a copy
    of it); 0 for the rows that never form the N x N map (Meta's encoder works image by image).
    """
    option = OPTIONS[name]
    if option.who == "meta" or (option.who == "composeseg" and option.attention == "lean"):
        return 0
    from composeseg.meta_config import sam_config_from_meta_state_dict

    state = torch.load(checkpoint, map_location="meta", weights_only=True)
    vision: Any = sam_config_from_meta_state_dict(state).vision_config
    tokens = (vision.image_size // vision.patch_size) ** 2
    element = torch.finfo(option.dtype).bits // 8
    return 2 * batch * vision.num_attention_heads * tokens**2 * element


def wait_for_memory(need: int, what: str, patience: float = 3600.0) -> bool:
    """On a shared CPU machine, wait until ``need`` bytes (+1 GiB) are available; False after
    ``patience`` seconds (the cell is then skipped rather than the run OOM-killed)."""
    deadline = time.monotonic() + patience
    while True:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        available = int(fields["MemAvailable"].split()[0]) * 1024
        if available >= need + 2**30:
            return True
        if time.monotonic() > deadline:
            print(f"skipped {what}: needs {need / 2**30:.1f} GiB free", file=sys.stderr)
            return False
        print(f"{what}: waiting for {need / 2**30:.1f} GiB of free memory", file=sys.stderr)
        time.sleep(30)


def timed(run: Runner, batch: list[np.ndarray], device: str) -> float:
    synchronize(device)
    start = time.perf_counter()
    with torch.inference_mode():
        run(batch)
    synchronize(device)
    return time.perf_counter() - start


def gpu_peak_mb(run: Runner, batch: list[np.ndarray], device: str) -> float:
    synchronize(device)
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    with torch.inference_mode():
        out = run(batch)
    synchronize(device)
    del out
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def cpu_peak_mb(name: str, checkpoint: Path, model: str, tiny: bool, batch: int) -> float:
    """Peak RSS above the loaded model of one call, in a fresh process."""
    need = attention_map_bytes(name, checkpoint, batch)
    if need and not wait_for_memory(need, f"memory of {name} @{batch}"):
        return float("nan")
    command = [
        sys.executable,
        __file__,
        "--child-memory",
        name,
        str(checkpoint),
        model,
        str(int(tiny)),
        str(batch),
        str(torch.get_num_threads()),
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode:
        print(f"memory run {name} batch {batch} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
        return float("nan")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"])


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def child_memory(argv: list[str]) -> None:
    name, checkpoint, model, tiny, batch, threads = argv
    torch.set_num_threads(int(threads))
    run = load(name, Path(checkpoint), model, bool(int(tiny)), "cpu")
    inputs = images(int(batch), bool(int(tiny)))
    if OPTIONS[name].compile:
        timed(run, inputs, "cpu")  # compile first: the peak asked for is the encoder's own
    gc.collect()
    # loading (a .pth converted in memory) peaks above what encoding needs: reset the
    # kernel's high-water mark (VmHWM) once the model is loaded
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    base = _status_kb("VmRSS")
    timed(run, inputs, "cpu")
    print(json.dumps({"peak_mb": (_status_kb("VmHWM") - base) / 1024}))


def flops_per_image(checkpoint: Path) -> float:
    """FLOPs (2 per multiply-add) of transformers' eager encoder on one image."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers.models.sam.modeling_sam import SamVisionEncoder

    from composeseg.convert import load_meta_sam_checkpoint

    config = load_meta_sam_checkpoint(checkpoint).config.vision_config
    config._attn_implementation = "eager"
    size = config.image_size
    with torch.device("meta"):
        encoder = SamVisionEncoder(config)
        pixels = torch.empty(1, 3, size, size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        encoder(pixels)
    return float(counter.get_total_flops())


def mask_iou(
    embeddings: dict[str, torch.Tensor], checkpoint: Path, image: np.ndarray, device: str
) -> dict[str, float]:
    """Mean mask IoU of 16 boxes decoded from each row's embedding, against ``today``'s."""
    from bench_segment import random_boxes

    from composeseg import load_sam
    from composeseg.prediction import ImageEmbedding

    sam = load_sam(checkpoint, device=device, attention="transformers")
    frame = sam.embed(image)
    boxes = random_boxes(16, *image.shape[:2])

    def masks(features: torch.Tensor) -> np.ndarray:
        embedding = ImageEmbedding(
            features=(features.to(device, torch.float32),),
            original_size=frame.original_size,
            input_size=frame.input_size,
            model_key=frame.model_key,
        )
        return sam.segment(embedding, boxes=boxes).masks[:, 0]

    reference = masks(embeddings["today"]) if "today" in embeddings else masks(frame.features[0])
    result = {}
    for name, features in embeddings.items():
        got = masks(features)
        inter = np.logical_and(got, reference).sum((1, 2))
        union = np.logical_or(got, reference).sum((1, 2))
        result[name] = float(np.mean(np.where(union > 0, inter / np.maximum(union, 1), 1.0)))
    return result


def bf16_peak(device: str, override: float | None) -> float | None:
    if override:
        return override * 1e12
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name()
    for key, tflops in BF16_PEAK_TFLOPS.items():  # most specific names first
        if key in name:
            return tflops * 1e12
    return None


def run_amg(checkpoint: Path, model: str, tiny: bool, device: str) -> list[list[str]]:
    """AMG end to end on one 1500x1000 scene: Meta's generator against composeseg's."""
    import bench_amg

    from composeseg import load_sam

    params = {"points_per_side": 8 if tiny else 32}
    scene = bench_amg.make_images(1, 1000, 1500)
    meta = meta_model(checkpoint, model, tiny).to(device)
    bench_amg.run_meta(meta, scene, {"points_per_side": 4})  # warm-up (CUDA kernels, caches)
    meta_timer, meta_masks = bench_amg.run_meta(meta, scene, params)
    rows = []
    for label, dtype in (
        ("composeseg lean", torch.float32),
        ("composeseg lean bf16", torch.bfloat16),
    ):
        if dtype == torch.bfloat16 and device == "cpu" and not tiny:
            continue  # minutes on a CPU, and the encoder table already has bf16
        sam = load_sam(checkpoint, device=device, dtype=dtype)
        bench_amg.run_ours(sam, scene, params)  # warm-up
        timer, ours = bench_amg.run_ours(sam, scene, params)
        counts, worst = bench_amg.compare(meta_masks, ours)
        rows.append(
            [
                "tiny" if tiny else model,
                label,
                f"{meta_timer.seconds['total']:.2f}",
                f"{timer.seconds['total']:.2f}",
                f"{meta_timer.seconds['total'] / timer.seconds['total']:.1f}x",
                counts,
                f"{worst:.3f}",
            ]
        )
    return rows


def measure(
    names: list[str],
    checkpoint: Path,
    model: str,
    label: str,
    flops: float,
    peak: float | None,
    args: argparse.Namespace,
) -> list[list[str]]:
    """One table row per option: img/s (and the ratio to ``today``), peak memory, mask IoU."""
    device, batches = args.device, args.batches
    runners = {name: load(name, checkpoint, model, args.tiny, device) for name in names}
    inputs = images(max(batches), args.tiny)
    best: dict[tuple[str, int], float] = {}
    failed: set[tuple[str, int]] = set()  # out of GPU memory: reported, not fatal

    def attempt(name: str, batch: int, measure: Callable[[], float]) -> float | None:
        if (name, batch) in failed:
            return None
        need = 0 if device.startswith("cuda") else attention_map_bytes(name, checkpoint, batch)
        if need and not wait_for_memory(need, f"{name} @{batch}"):
            failed.add((name, batch))
            return None
        try:
            return measure()
        except torch.cuda.OutOfMemoryError:
            failed.add((name, batch))
            gc.collect()
            torch.cuda.empty_cache()
            return None

    for batch in batches:  # warm-up round (compilation happens here)
        for name, run in runners.items():
            attempt(name, batch, lambda r=run, b=batch: timed(r, inputs[:b], device))
    for _ in range(args.repeat):
        for batch in batches:
            for name, run in runners.items():
                seconds = attempt(name, batch, lambda r=run, b=batch: timed(r, inputs[:b], device))
                if seconds is not None:
                    best[name, batch] = min(best.get((name, batch), seconds), seconds)
    with torch.inference_mode():
        embeddings = {name: run(inputs[:1])[0] for name, run in runners.items()}
    ious = mask_iou(embeddings, checkpoint, inputs[0], device)
    memory: dict[tuple[str, int], float | None] = {}
    if not args.no_memory and device.startswith("cuda"):
        for batch in batches:
            for name, run in runners.items():
                memory[name, batch] = attempt(
                    name, batch, lambda r=run, b=batch: gpu_peak_mb(r, inputs[:b], device)
                )
    del runners, embeddings
    gc.collect()
    if not args.no_memory and not device.startswith("cuda"):
        for batch in batches:
            for name in names:
                memory[name, batch] = cpu_peak_mb(name, checkpoint, model, args.tiny, batch)
    rows = []
    for name in names:
        row = [label, name]
        for batch in batches:
            if (name, batch) not in best:
                row += ["out of memory", "-"] + (["-"] if peak else [])  # or skipped
                continue
            rate = batch / best[name, batch]
            today = best.get(("today", batch))
            ratio = f" ({today / best[name, batch]:.2f}x)" if today else ""
            mb = memory.get((name, batch))
            row += [f"{rate:.3g}{ratio}", "-" if mb is None else f"{mb:.0f}"]
            row += [f"{100 * rate * flops / peak:.1f}"] if peak else []
        row.append(f"{ious[name]:.4f}")
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["--child-memory"]:
        child_memory(args_in[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--models", nargs="+", default=["vit_b"], choices=["vit_b", "vit_h"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--options", nargs="+", choices=sorted(OPTIONS), default=None)
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds (best counts)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--tiny", action="store_true", help="tiny model smoke run")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory columns")
    parser.add_argument("--amg", action="store_true", help="also AMG end to end vs Meta")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak")
    args = parser.parse_args(args_in)
    torch.set_num_threads(args.threads)
    device = args.device
    names = args.options or DEFAULT_OPTIONS["cuda" if device.startswith("cuda") else "cpu"]
    peak = bf16_peak(device, args.peak_tflops)
    what = (
        torch.cuda.get_device_name()
        if device.startswith("cuda")
        else f"CPU, {args.threads} threads"
    )
    print(f"device: {what}; torch {torch.__version__}; rounds: {args.repeat}")

    headers = ["model", "encoder"]
    for batch in args.batches:
        headers += [f"img/s @{batch}", f"peak MB @{batch}"]
        headers += [f"% bf16 peak @{batch}"] if peak else []
    headers.append("mask IoU vs today")
    rows: list[list[str]] = []
    amg_rows: list[list[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            checkpoint = build_checkpoint(Path(tmp), model, args.tiny)
            flops = flops_per_image(checkpoint)
            label = "tiny" if args.tiny else model
            print(f"{label}: {flops / 1e9:.1f} GFLOP per image")
            rows += measure(names, checkpoint, model, label, flops, peak, args)
            if args.amg:
                amg_rows += run_amg(checkpoint, model, args.tiny, device)
    print("\nImage encoder (img/s: images per second, best round; (x): against today)")
    print_table(headers, rows)
    if amg_rows:
        print("\nAutomatic mask generation, one 1500x1000 scene, Meta's default parameters")
        print_table(
            ["model", "ours", "Meta (s)", "ours (s)", "speed-up", "masks Meta / ours", "worst IoU"],
            amg_rows,
        )


if __name__ == "__main__":
    main()
