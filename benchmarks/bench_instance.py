"""Detector boxes -> masks, per image: our pipeline vs ultralytics' auto_annotate loop vs a naive
per-box transformers loop.

Usage:
    python benchmarks/bench_instance.py            # ViT-B random weights, 5/20/100 boxes
    python benchmarks/bench_instance.py --quick    # ViT-B, 5/20 boxes, one timing each
    python benchmarks/bench_instance.py --tiny     # tiny model smoke run (no ultralytics row)

All three use the same random Meta-initialised ViT-B weights: one ``.pth`` state dict, loaded by
``composeseg.load_sam`` (converted in memory) and by ultralytics' ``SAM`` (a file named
``sam_b.pt``, which its ``build_sam`` maps to ViT-B). Each timing covers one image end to end:
image encoder + all boxes -> full-resolution masks, refinement off everywhere; ours with its
refinement pass is an extra row.

- ours: ``InstanceSegmentation(sam, detector, refine=False)(image)``;
- ultralytics: what ``ultralytics.data.annotator.auto_annotate`` does per image after its
  detector, ``sam_model(image, bboxes=boxes)`` (masks at the original size; the polygon
  conversion it then does for label files is not timed);
- per-box loop: the transformers SAM docs pattern: ``SamProcessor`` embeds the image once, then
  per box ``SamProcessor(image, input_boxes=...)``, the model with cached embeddings and
  ``post_process_masks``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench_segment import build_checkpoint, random_boxes, scene
from common import best_time, print_table


def ultralytics_sam(checkpoint: Path, directory: Path):  # type: ignore[no-untyped-def]
    """ultralytics' SAM on our weights, or None (with the reason printed) when it cannot."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    try:
        from ultralytics import SAM
    except ImportError:
        print("ultralytics is not installed: no ultralytics row")
        return None
    target = directory / "sam_b.pt"  # ultralytics picks the architecture by file name
    target.write_bytes(checkpoint.read_bytes())
    try:
        return SAM(str(target))
    except Exception as error:  # report, and keep the other rows
        print(f"ultralytics could not build SAM from our weights offline: {error}")
        return None


def naive_loop(model, image: np.ndarray, boxes: np.ndarray, size: int) -> None:  # type: ignore[no-untyped-def]
    """Embed once, then per box: processor, decoder with cached embeddings, post-processing."""
    from transformers import SamImageProcessor, SamProcessor

    image_processor = SamImageProcessor(
        size={"longest_edge": size}, pad_size={"height": size, "width": size}
    )
    processor = SamProcessor(image_processor=image_processor)
    pixels = processor(image, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        embeddings = model.get_image_embeddings(pixels)
        for box in boxes:
            inputs = processor(image, input_boxes=[[box.tolist()]], return_tensors="pt")
            inputs.pop("pixel_values", None)
            outputs = model(**inputs, image_embeddings=embeddings, multimask_output=False)
            image_processor.post_process_masks(
                outputs.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"]
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 and 20 boxes, one timing each")
    parser.add_argument("--tiny", action="store_true", help="tiny model smoke run")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from composeseg import load_sam
    from composeseg.pipelines import InstanceSegmentation
    from composeseg.prompts import Prompts

    counts = (5, 20) if args.quick or args.tiny else (5, 20, 100)
    repeat = 1 if args.quick or args.tiny else 3
    image = scene(args.height, args.width)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = build_checkpoint(Path(tmp), args.tiny)
        sam = load_sam(checkpoint, device="cpu")
        yolo_sam = None if args.tiny else ultralytics_sam(checkpoint, Path(tmp))
        print(
            f"model: {'tiny' if args.tiny else 'ViT-B'} random weights; image "
            f"{args.width}x{args.height}; threads: {args.threads}; best of {repeat}"
        )
        bgr = np.ascontiguousarray(image[..., ::-1])  # ultralytics reads arrays as BGR
        rows = []
        for count in counts:
            boxes = random_boxes(count, args.height, args.width)
            scores = np.linspace(1, 0.5, count, dtype=np.float32)

            def detector(
                _image: np.ndarray, b: np.ndarray = boxes, s: np.ndarray = scores
            ) -> Prompts:
                return Prompts(boxes=b, confidence=s)

            plain = InstanceSegmentation(sam, detector, refine=False)
            refined = InstanceSegmentation(sam, detector, refine=True)
            ours = best_time(lambda p=plain: p(image), repeat=repeat)
            ours_refined = best_time(lambda p=refined: p(image), repeat=repeat)
            naive = best_time(
                lambda b=boxes: naive_loop(sam.model, image, b, sam.image_size), repeat=1, warmup=0
            )
            yolo = (
                best_time(
                    lambda b=boxes: (
                        yolo_sam(bgr, bboxes=b, verbose=False, save=False, device="cpu")[
                            0
                        ].masks.data
                    ),
                    repeat=repeat,
                )
                if yolo_sam is not None
                else float("nan")
            )
            rows.append([count, "ours (refine off)", f"{ours:.2f}", "1.00x", "1.00x"])
            rows.append([count, "ours + refinement", f"{ours_refined:.2f}",
                         f"{ours_refined / ours:.2f}x", "-"])  # fmt: skip
            if yolo_sam is not None:
                rows.append([count, "ultralytics SAM(bboxes=...)", f"{yolo:.2f}",
                             f"{yolo / ours:.2f}x", f"ours {yolo / ours:.2f}x faster"])  # fmt: skip
            rows.append([count, "transformers per-box loop", f"{naive:.2f}",
                         f"{naive / ours:.2f}x", f"ours {naive / ours:.2f}x faster"])  # fmt: skip
        print("\nOne image end to end (encoder + all boxes -> full-resolution masks), seconds:")
        print_table(["boxes", "method", "time (s)", "time / ours", "speed-up"], rows)


if __name__ == "__main__":
    main()
