"""The refinement pass with the logits kept on the device, against the host round trip.

``InstanceSegmentation``'s refinement feeds each object's best low-res logits back to the
decoder. It used to send them device -> numpy -> a new ``Prompts`` (which re-checks every
value for NaN) -> device; now they go straight back as a tensor
(``Sam.decode_low_res(mask_logits=...)``). Both paths run here on the same embedding, same
prompts and same weights, interleaved; the table gives the refinement decode alone and the
first decode + refinement, best of ``--repeat``, and checks the two give the same logits.

    python benchmarks/bench_refine.py            # ViT-B-size random weights, CPU
    python benchmarks/bench_refine.py --tiny     # smoke run
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench_segment import build_checkpoint, random_boxes, scene
from common import best_time, print_table

from composeseg import Prompts, load_sam
from composeseg.sam import fit_to_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model smoke run")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        sam = load_sam(build_checkpoint(Path(tmp), args.tiny), device="cpu")
    image = scene(720, 1280)
    embedding = sam.embed(image)
    print(f"model: {'tiny' if args.tiny else 'ViT-B'} random weights; 1280x720; "
          f"threads: {args.threads}; best of {args.repeat}")  # fmt: skip
    rows = []
    for count in (1, 16, 64):
        prompts = fit_to_image(Prompts(boxes=random_boxes(count, 720, 1280)), (720, 1280))
        logits, _ = sam.decode_low_res(embedding, prompts)
        best = logits[:, 0]

        def round_trip(best: torch.Tensor = best, prompts: Prompts = prompts) -> torch.Tensor:
            refined = prompts.replace(mask_input=best.float().cpu().numpy())
            return sam.decode_low_res(embedding, refined)[0]

        def on_device(best: torch.Tensor = best, prompts: Prompts = prompts) -> torch.Tensor:
            return sam.decode_low_res(embedding, prompts, mask_logits=best)[0]

        same = torch.equal(round_trip(), on_device())
        # interleaved, so that drift of a shared machine hits both paths alike
        host = device = float("inf")
        for _ in range(args.repeat):
            host = min(host, best_time(round_trip, 1, warmup=0))
            device = min(device, best_time(on_device, 1, warmup=0))
        first = best_time(lambda p=prompts: sam.decode_low_res(embedding, p), args.repeat)
        rows.append(
            [
                count,
                f"{1000 * host:.1f}",
                f"{1000 * device:.1f}",
                f"{host / device:.3f}x",
                f"{1000 * (first + host):.1f}",
                f"{1000 * (first + device):.1f}",
                "yes" if same else "NO",
            ]
        )
    print("\nRefinement decode (ms): host round trip vs logits kept on the device")
    print_table(
        [
            "boxes",
            "round trip",
            "on device",
            "speed-up",
            "decode + refine, round trip",
            "decode + refine, on device",
            "same logits",
        ],
        rows,
    )
    if not all(r[-1] == "yes" for r in rows):
        raise SystemExit("the two refinement paths disagree")


if __name__ == "__main__":
    main()
