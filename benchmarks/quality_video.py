"""What the temporal-consistency features buy: IDF1, ID switches, mask IoU and flicker.

Usage:
    python benchmarks/quality_video.py                      # demo SAM, 5 videos x 60 frames
    python benchmarks/quality_video.py --sam DIR --seeds 0 1 2 --frames 30
    python benchmarks/quality_video.py --tiny --seeds 0 --frames 10 --size 96   # smoke run
    python benchmarks/quality_video.py --box-masks     # identities only (no SAM, see below)
    python benchmarks/quality_video.py --family independent   # videos of another generator

Generated videos (moving, occluding, entering and leaving shapes; ``composeseg.synthetic``)
(or, with ``--family independent``, videos of the evaluation-only family of
``composeseg.synthetic.independent_video``, seed k of its test split for each ``--seeds`` k;
``--size`` does not apply) with a simulated detector (ground-truth boxes jittered, some
detections missed) go through ``VideoSegmentation`` with each feature switched on alone, all
on, and all off (plain per-frame segmentation of the tracker's boxes). Metrics come from
``composeseg.evaluation.tracking`` (the ``trackers`` package's HOTA / CLEAR / Identity
evaluators on mask IoU). With ``--sam2 DIR`` (a ``Sam2VideoModel`` directory) the SAM 2
propagation engine is a further row.

``--box-masks`` replaces SAM by a stand-in whose "mask" is the prompt box filled in, and
scores on boxes: mask quality then means nothing (mask IoU and flicker are nan, the mask-prompt
row equals the plain one), but the identity metrics isolate what association and gap filling
do, without a trained model.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from composeseg.pipelines.video_config import PER_FRAME
from composeseg.synthetic import VideoConfig, iter_video_frames

PLAIN = dict(PER_FRAME)
VARIANTS: dict[str, dict[str, Any]] = {
    # the tracker as shipped: ids only after 2 hits, unconfirmed boxes left out
    "tracker defaults, per-frame": {**PLAIN, "unconfirmed": "drop", "min_consecutive_frames": 2},
    "per-frame (all off)": PLAIN,
    "+ mask prompt": {**PLAIN, "mask_prompt": True},
    "+ mask-IoU association": {**PLAIN, "mask_association": True},
    "+ exclusive masks": {**PLAIN, "exclusive_masks": True},
    "+ gap filling": {**PLAIN, "max_gap": 5},
    "all on (default)": {},
}


class BoxMaskSam:
    """A stand-in for :class:`composeseg.Sam` whose mask for a box prompt is the box itself.

    It implements the four members ``VideoSegmentation`` uses (``embed``, ``decode_low_res``,
    ``masks_from_logits``, sizes) in the square 256-pixel frame, with no network.
    """

    image_size = 256
    device = "cpu"

    class backend:
        mask_size = 64

    def embed(self, image: Any) -> Any:
        from composeseg.prediction import ImageEmbedding

        size = (int(image.shape[0]), int(image.shape[1]))
        return ImageEmbedding((), size, (self.image_size, self.image_size), "box-masks")

    def decode_low_res(self, embedding: Any, prompts: Any, multimask: bool = False) -> Any:
        import torch

        from composeseg.transforms import boxes_to_input_frame

        m = self.backend.mask_size
        boxes = boxes_to_input_frame(prompts.boxes, embedding.original_size, embedding.input_size)
        boxes = boxes * m / self.image_size
        grid = torch.arange(m, dtype=torch.float32) + 0.5
        b = torch.as_tensor(boxes, dtype=torch.float32)[:, :, None]
        inside_x = (grid[None] >= b[:, 0]) & (grid[None] < b[:, 2])  # (N, M)
        inside_y = (grid[None] >= b[:, 1]) & (grid[None] < b[:, 3])
        inside = inside_y[:, :, None] & inside_x[:, None, :]
        logits = torch.where(inside, 10.0, -10.0)[:, None]
        return logits, torch.ones(len(boxes), 1)

    def masks_from_logits(self, logits: Any, embedding: Any) -> Any:
        from composeseg.transforms import upscale_logits

        full = upscale_logits(
            logits, self.image_size, embedding.input_size, embedding.original_size, "square"
        )
        return (full > 0).numpy()


def load(args: argparse.Namespace, directory: Path) -> Any:
    from composeseg import load_sam

    if args.box_masks:
        return BoxMaskSam()
    if args.tiny:
        from composeseg.tiny import build_model, tiny_sam_config

        model: Any = build_model(tiny_sam_config(), seed=0)
        model.save_pretrained(directory / "tiny")
        return load_sam(directory / "tiny", device="cpu")
    return load_sam(args.sam, device=args.device)


def evaluate(make_engine: Any, args: argparse.Namespace) -> tuple[Any, float]:
    from composeseg.evaluation.tracking import TrackingEvaluator
    from composeseg.pipelines.video_sim import SimulatedDetector, SimulatedDetectorConfig

    video = VideoConfig(height=args.size, width=args.size, n_frames=args.frames)

    def clip(seed: int) -> Any:
        if args.family == "independent":
            from composeseg.synthetic.independent import independent_seeds
            from composeseg.synthetic.independent_video import iter_independent_video_frames

            return iter_independent_video_frames(
                independent_seeds("test", seed + 1)[seed], args.frames
            )
        return iter_video_frames(seed, video)

    noise = SimulatedDetectorConfig(jitter=args.jitter, miss_rate=args.miss_rate)
    # with box masks, identities are scored on boxes: a filled box is no estimate of a shape
    evaluator = TrackingEvaluator(use_masks=not args.box_masks)
    start, frames = time.perf_counter(), 0
    for seed in args.seeds:
        evaluator.new_sequence()
        detector = SimulatedDetector(clip(seed), noise, seed=seed)
        engine = make_engine(detector)
        for truth, detections in zip(clip(seed), engine(clip(seed)), strict=True):
            evaluator.add(truth, detections)
            frames += 1
    return evaluator.compute(), frames / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sam", default=None, help="model source (default: the demo model)")
    parser.add_argument("--tiny", action="store_true", help="a tiny random model (smoke run)")
    parser.add_argument("--box-masks", action="store_true", help="boxes as masks, no SAM")
    parser.add_argument("--sam2", default=None, help="a Sam2VideoModel directory (extra row)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--family", choices=("training", "independent"), default="training")
    parser.add_argument("--tracker", default="bytetrack")
    parser.add_argument("--miss-rate", type=float, default=0.15)
    parser.add_argument("--jitter", type=float, default=0.06)
    args = parser.parse_args()

    from composeseg.pipelines.video import VideoSegmentation

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sam = load(args, Path(tmp))
        for name, options in VARIANTS.items():

            def make(detector: Any, options: dict[str, Any] = options) -> Any:
                return VideoSegmentation(sam, detector, args.tracker, **options)

            rows.append((name, *evaluate(make, args)))
        if args.sam2:
            from composeseg.pipelines.video_sam2 import Sam2Propagation

            def make_sam2(detector: Any) -> Any:
                return Sam2Propagation(args.sam2, detector, detect_every=5, device=args.device)

            rows.append(("SAM 2 propagation (K=5)", *evaluate(make_sam2, args)))
    print(
        f"{len(args.seeds)} {args.family}-family videos x {args.frames} frames, "
        f"{args.size if args.family == 'training' else 'non-square'}, tracker "
        f"{args.tracker}, miss rate {args.miss_rate}, jitter {args.jitter}; model "
        f"{'box masks' if args.box_masks else 'tiny random' if args.tiny else args.sam or 'demo'}"
    )
    header = ["variant", "IDF1", "ID sw.", "HOTA", "MOTA", "mask IoU", "flicker", "frames/s"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for name, m, fps in rows:
        cells = [
            name, f"{m.IDF1:.3f}", str(m.IDSW), f"{m.HOTA:.3f}", f"{m.MOTA:.3f}",
            f"{m.mask_iou:.3f}", f"{m.mask_flicker:.4f}", f"{fps:.1f}",
        ]  # fmt: skip
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
