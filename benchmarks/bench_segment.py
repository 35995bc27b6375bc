"""Embed and decode cost of ``Sam.segment`` against transformers' per-box processor loop.

Usage:
    python benchmarks/bench_segment.py            # ViT-B size, random weights (minutes on CPU)
    python benchmarks/bench_segment.py --tiny     # a seconds-long smoke run of the same code

Random Meta-initialised weights at ViT-B size, converted through ``load_sam`` from an original
``.pth`` state dict, so the run also checks parity with Meta's ``SamPredictor`` at full size.
The peer is the pattern the transformers SAM docs show: per prompt, ``SamProcessor(image,
input_boxes=...)``, the model with cached ``image_embeddings``, ``post_process_masks``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from common import best_time, print_table


def build_checkpoint(directory: Path, tiny: bool) -> Path:
    from meta_reference import build_meta_sam_vit_b, build_tiny_meta_sam

    meta = build_tiny_meta_sam(seed=0) if tiny else build_meta_sam_vit_b(seed=0)
    path = directory / ("sam_tiny.pth" if tiny else "sam_vit_b_random.pth")
    torch.save(meta.state_dict(), path)
    return path


def scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 80, (height, width, 3), dtype=np.uint8)
    for _ in range(12):
        y, x = rng.integers(0, height - 40), rng.integers(0, width - 40)
        image[y : y + rng.integers(20, 300), x : x + rng.integers(20, 300)] = rng.integers(
            0, 255, 3
        )
    return image


def random_boxes(count: int, height: int, width: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(0, width * 0.7, count)
    y0 = rng.uniform(0, height * 0.7, count)
    w = rng.uniform(0.05, 0.3, count) * width
    h = rng.uniform(0.05, 0.3, count) * height
    return np.stack([x0, y0, np.minimum(x0 + w, width), np.minimum(y0 + h, height)], 1).astype(
        np.float32
    )


def processor_loop(model, image: np.ndarray, embeddings: torch.Tensor, boxes: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    from transformers import SamImageProcessor, SamProcessor

    processor = SamProcessor(image_processor=SamImageProcessor())
    for box in boxes:
        inputs = processor(image, input_boxes=[[box.tolist()]], return_tensors="pt")
        inputs.pop("pixel_values", None)
        with torch.no_grad():
            outputs = model(**inputs, image_embeddings=embeddings, multimask_output=False)
        processor.image_processor.post_process_masks(
            outputs.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"]
        )


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def parity(checkpoint: Path, tiny: bool) -> list[list[object]]:
    from meta_reference import build_meta_sam_vit_b, build_tiny_meta_sam
    from segment_anything import SamPredictor

    from composeseg import load_sam

    meta = build_tiny_meta_sam(seed=0) if tiny else build_meta_sam_vit_b(seed=0)
    meta.load_state_dict(torch.load(checkpoint, weights_only=True))
    predictor = SamPredictor(meta.eval())
    image = scene(480, 640)
    predictor.set_image(image)
    sam = load_sam(checkpoint, device="cpu")
    embedding = sam.embed(image)
    rows = []
    cases = {
        "box": {"box": np.array([100, 80, 400, 300], np.float32)},
        "points": {"points": np.array([[200, 150], [500, 400]], np.float32), "labels": [1, 0]},
        "box+point": {
            "box": np.array([100, 80, 400, 300], np.float32),
            "points": np.array([[200, 150]], np.float32),
            "labels": [1],
        },
    }
    for name, case in cases.items():
        for multimask in (False, True):
            masks, scores, logits = predictor.predict(
                point_coords=case.get("points"),
                point_labels=None if "labels" not in case else np.array(case["labels"]),
                box=case.get("box"),
                multimask_output=multimask,
            )
            ours = sam.segment(
                embedding,
                boxes=case.get("box"),
                points=case.get("points"),
                point_labels=case.get("labels"),
                multimask=multimask,
            )
            ious = [iou(a, b) for a, b in zip(ours.masks[0], masks, strict=True)]
            rows.append(
                [
                    f"{name}{' multimask' if multimask else ''}",
                    f"{np.mean(ious):.5f}",
                    f"{np.abs(ours.logits[0] - logits).max():.2e}",
                    f"{np.abs(ours.scores[0] - scores).max():.2e}",
                ]
            )
    return rows


def memory_case(checkpoint: Path, boxes: int, height: int, width: int) -> tuple[float, float]:
    """Peak RSS (MB) above the loaded model of ``embed``, then of ``segment`` on that embedding.

    Run in a fresh process so earlier allocations do not hide the peak.
    """
    code = f"""
import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
import numpy as np
from common import peak_rss
from bench_segment import scene, random_boxes
from composeseg import load_sam
sam = load_sam({str(checkpoint)!r}, device="cpu")
image = scene({height}, {width})
with peak_rss() as embed_rss:
    embedding = sam.embed(image)
with peak_rss() as segment_rss:
    sam.segment(embedding, boxes=random_boxes({boxes}, {height}, {width}))
base = embed_rss["baseline"]
print((embed_rss["peak"] - base) / 2**20, (segment_rss["peak"] - base) / 2**20)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    embed_mb, segment_mb = out.stdout.strip().splitlines()[-1].split()
    return float(embed_mb), float(segment_mb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model smoke run")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from composeseg import load_sam

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = build_checkpoint(Path(tmp), args.tiny)
        print(f"model: {'tiny' if args.tiny else 'ViT-B'} random weights; threads: {args.threads}")
        print("\nParity with Meta's SamPredictor (same weights, 640x480 image):")
        print_table(
            ["case", "mean mask IoU", "max |logit diff|", "max |score diff|"],
            parity(checkpoint, args.tiny),
        )

        image = scene(1080, 1920)
        fp32 = load_sam(checkpoint, device="cpu")
        bf16 = load_sam(checkpoint, device="cpu", dtype=torch.bfloat16)
        t32 = best_time(lambda: fp32.embed(image), repeat=2)
        t16 = best_time(lambda: bf16.embed(image), repeat=2)
        boxes16 = random_boxes(16, 1080, 1920)
        m32 = fp32.segment(image, boxes=boxes16).masks[:, 0]
        m16 = bf16.segment(image, boxes=boxes16).masks[:, 0]
        agreement = np.mean([iou(a, b) for a, b in zip(m32, m16, strict=True)])
        print("\nImage encoder, one 1920x1080 image:")
        print_table(
            ["dtype", "embed (s)", "speed-up", "mask IoU vs float32 (16 boxes)"],
            [
                ["float32", f"{t32:.2f}", "1.00x", "-"],
                ["bfloat16", f"{t16:.2f}", f"{t32 / t16:.2f}x", f"{agreement:.4f}"],
            ],
        )

        embedding = fp32.embed(image)
        embeddings = embedding.features[0]
        rows = []
        for count in (1, 16, 64):
            boxes = random_boxes(count, 1080, 1920)
            ours = best_time(lambda b=boxes: fp32.segment(embedding, boxes=b), repeat=2)
            peer = best_time(
                lambda b=boxes: processor_loop(fp32.model, image, embeddings, b),
                repeat=1,
                warmup=0 if count > 1 else 1,
            )
            rows.append(
                [
                    count,
                    f"{ours * 1000:.0f}",
                    f"{ours / count * 1000:.1f}",
                    f"{peer * 1000:.0f}",
                    f"{peer / count * 1000:.1f}",
                    f"{peer / ours:.2f}x",
                ]
            )
        print("\nDecode, 1920x1080 image, embedding reused (ms):")
        print_table(["boxes", "segment", "per box", "processor loop", "per box", "speed-up"], rows)

        sweep = []
        boxes = random_boxes(64, 1080, 1920)
        for chunk in (1, 4, 8, 16, 32, 64):
            fp32.decode_batch_size = chunk
            t = best_time(lambda: fp32.decode_low_res(embedding, _prompts(boxes, image)), repeat=2)
            sweep.append([chunk, f"{t * 1000:.0f}", f"{t / 64 * 1000:.1f}"])
        print("\nDecoder only (no upsampling), 64 boxes, by decode_batch_size (ms):")
        print_table(["decode_batch_size", "total", "per box"], sweep)

        print("\nPeak memory above the loaded model, 64 boxes on a 4000x3000 image:")
        embed_mb, segment_mb = memory_case(checkpoint, 64, 3000, 4000)
        masks_mb = 64 * 3000 * 4000 / 2**20
        print_table(
            ["step", "peak RSS above the loaded model (MB)", "returned masks (MB)"],
            [
                ["embed", f"{embed_mb:.0f}", "-"],
                ["segment, 64 boxes", f"{segment_mb:.0f}", f"{masks_mb:.0f}"],
            ],
        )


def _prompts(boxes: np.ndarray, image: np.ndarray):  # type: ignore[no-untyped-def]
    from composeseg import Prompts
    from composeseg.sam import fit_to_image

    return fit_to_image(Prompts(boxes=boxes), image.shape[:2])


if __name__ == "__main__":
    main()
