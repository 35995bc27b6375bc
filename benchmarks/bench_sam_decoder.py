"""Per-object prompt-decoder cost: composeseg's decode path against transformers' forward.

Usage:
    python benchmarks/bench_sam_decoder.py                  # C = 1, 4, 16, 64 boxes, 1 thread
    python benchmarks/bench_sam_decoder.py --counts 1,16 --threads 2 --multimask --masks

The released SAM decoder (256 wide, 8 heads, 2 layers, 64 x 64 embedding; the same for ViT-B/L/H
and SlimSAM) behind a 1-layer ViT, random weights: decode cost does not depend on the encoder.
The peer is ``SamModel(image_embeddings=embedding.expand(C, ...), input_boxes=...)``, which is
how ``SamBackend`` decoded C objects before.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import best_time, print_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,4,16,64", help="objects per decoder call")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--multimask", action="store_true")
    parser.add_argument("--masks", action="store_true", help="add a mask prompt per object")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from composeseg.backends.sam_decoder import decode
    from composeseg.configs import sam_config
    from composeseg.tiny import build_model

    config = sam_config(
        hidden_size=64, num_hidden_layers=1, num_attention_heads=1, global_attn_indexes=(0,)
    )
    model = build_model(config, seed=0).eval()
    generator = torch.Generator().manual_seed(0)
    embedding = torch.randn(1, 256, 64, 64, generator=generator)
    rows = []
    with torch.inference_mode():
        for count in (int(c) for c in args.counts.split(",")):
            boxes = torch.rand(count, 2, 2, generator=generator).sort(dim=1).values.flatten(1)
            boxes = boxes * 1024
            masks = torch.randn(count, 1, 256, 256, generator=generator) if args.masks else None
            calls = max(1, 16 // count)  # >= 16 objects per timing

            def peer(
                count: int = count,
                boxes: torch.Tensor = boxes,
                masks: torch.Tensor | None = masks,
                calls: int = calls,
            ) -> None:
                for _ in range(calls):
                    model(
                        image_embeddings=embedding.expand(count, -1, -1, -1),
                        input_boxes=boxes[:, None],
                        input_masks=masks,
                        multimask_output=args.multimask,
                    )

            def ours(
                boxes: torch.Tensor = boxes, masks: torch.Tensor | None = masks, calls: int = calls
            ) -> None:
                for _ in range(calls):
                    decode(model, embedding, boxes=boxes, masks=masks, multimask=args.multimask)

            per_object = calls * count / 1e3
            hf, fast = best_time(peer) / per_object, best_time(ours) / per_object
            rows.append([count, f"{hf:.1f}", f"{fast:.1f}", f"{hf / fast:.2f}x"])
    print(f"threads={args.threads} multimask={args.multimask} masks={args.masks}")
    print_table(
        ["objects per call", "transformers ms/object", "composeseg ms/object", "speed-up"], rows
    )


if __name__ == "__main__":
    main()
