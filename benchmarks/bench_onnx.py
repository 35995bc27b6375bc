"""ONNX Runtime (fp32 and int8) against torch on the CPU: encoder and decoder latency, sizes.

Usage:
    python benchmarks/bench_onnx.py                        # demo model and ViT-B, 1 thread
    python benchmarks/bench_onnx.py --models demo --threads 2

Same weights in every runtime: the embedded demo model, and a ViT-B-sized SAM with random
weights (``composeseg.configs.sam_config()`` defaults; the released decoder's shape, so
latencies and sizes are those of ``facebook/sam-vit-base``, masks are not). Each model is
exported once (``composeseg.export_onnx``), then quantized from that export; every timing goes
through the same :class:`~composeseg.Sam` calls: ``embed`` (preprocessing included) for the
encoder, ``decode_low_res`` for the decoder with 1 / 16 / 64 box prompts in one call (torch
runs composeseg's batched decoder, ``composeseg/backends/sam_decoder.py``), measured as CPU
time at one thread, so that other jobs on a shared machine do not enter the numbers. The int8
mask IoU is the export's own check against fp32 on generated scenes (boxes, single mask); on
random ViT-B weights it measures numerical drift, not segmentation quality.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_table

COUNTS = (1, 16, 64)


def _model(name: str, folder: Path) -> Any:
    """The torch ``Sam`` called ``name``, on the CPU."""
    from composeseg import load_sam
    from composeseg.configs import sam_config
    from composeseg.tiny import build_model

    if name == "demo":
        return load_sam(None, device="cpu")
    if name == "vit-b":
        build_model(sam_config(), seed=0).save_pretrained(folder / "vit-b")
        return load_sam(folder / "vit-b", device="cpu")
    raise ValueError(f"unknown model {name!r} (demo, vit-b)")


def _prompts(image: np.ndarray, count: int) -> Any:
    from composeseg.prompts import Prompts

    rng = np.random.default_rng(count)
    height, width = image.shape[:2]
    corners = np.sort(rng.uniform(0, 1, (count, 2, 2)), axis=1) * [width, height]
    return Prompts(boxes=corners.reshape(count, 4).astype(np.float32))


def best_cpu_time(fn: Any, repeat: int, threads: int) -> float:
    """Minimum CPU time of ``fn`` over ``repeat`` calls after one warm-up, in seconds.

    CPU time, not wall time: on a shared machine other jobs stretch wall time by whatever
    share of the cores they take. At one intra-op thread both runtimes compute on the calling
    thread, whose CPU time is then what the call costs (no other thread of the process counts);
    with more threads, the whole process's.
    """
    clock = time.thread_time if threads == 1 else time.process_time
    fn()
    times = []
    for _ in range(repeat):
        start = clock()
        fn()
        times.append(clock() - start)
    return min(times)


def _row(
    label: str, name: str, sam: Any, image: np.ndarray, size_mb: float | str, threads: int
) -> list[Any]:
    encode = best_cpu_time(lambda: sam.embed(image), 3, threads)
    embedding = sam.embed(image)
    decode = [
        best_cpu_time(lambda c=c: sam.decode_low_res(embedding, _prompts(image, c)), 5, threads)
        for c in COUNTS
    ]
    return [
        name,
        label,
        f"{encode * 1e3:.0f}",
        *(f"{t * 1e3:.1f}" for t in decode),
        size_mb if isinstance(size_mb, str) else f"{size_mb:.1f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["demo", "vit-b"])
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="intra-op threads, torch and onnxruntime alike (1: CPU time of the calling thread)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from composeseg import export_onnx, load_sam
    from composeseg.synthetic.scenes import SceneConfig, generate_scene

    image = generate_scene(0, SceneConfig(height=480, width=640)).image
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in args.models:
            torch_sam = _model(name, folder)
            weights = sum(p.numel() * 4 for p in torch_sam.model.parameters()) / 2**20
            size = f"{weights:.1f} (weights)"
            rows.append(_row("torch fp32", name, torch_sam, image, size, args.threads))
            start = time.perf_counter()
            fp32 = export_onnx(torch_sam, folder / f"{name}-fp32")
            export_s = time.perf_counter() - start
            int8 = export_onnx(fp32.directory, folder / f"{name}-int8", quantize="int8")
            for label, report in (("ORT fp32", fp32), ("ORT int8", int8)):
                mb = (report.sizes["encoder"] + report.sizes["decoder"]) / 2**20
                sam = load_sam(report.directory, device="cpu")  # torch's thread count
                rows.append(_row(label, name, sam, image, mb, args.threads))
                del sam
                gc.collect()
            notes.append(
                f"{name}: export {export_s:.0f} s; ORT fp32 vs torch max |logit| diff "
                f"{fp32.checks['max_logit_diff']:.1e}, score diff "
                f"{fp32.checks['max_score_diff']:.1e}, mask IoU {fp32.checks['mask_iou']:.4f}; "
                f"int8 mask IoU vs fp32 {int8.checks['int8_mask_iou']:.4f}; files (MB) fp32 "
                + ", ".join(f"{r} {s / 2**20:.1f}" for r, s in fp32.sizes.items())
                + "; int8 "
                + ", ".join(f"{r} {s / 2**20:.1f}" for r, s in int8.sizes.items())
            )
            print(*rows[-3:], notes[-1], sep="\n", flush=True)  # progress of a long run
            del torch_sam
            gc.collect()
    clock = "CPU time of the calling thread" if args.threads == 1 else "CPU time, all threads"
    print(f"{clock}, {args.threads} thread(s), 640x480 image, best of 3 (encoder) / 5 (decoder)")
    headers = ["model", "runtime", "encoder ms"]
    headers += [f"decoder ms, {c} obj" for c in COUNTS] + ["encoder+decoder MB"]
    print_table(headers, rows)
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
