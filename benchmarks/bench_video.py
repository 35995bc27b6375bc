"""Video tracking throughput and memory: frames/s and peak RSS at 100 and 1000 frames.

Usage:
    python benchmarks/bench_video.py                  # ViT-B random weights + demo model, 100/1000
    python benchmarks/bench_video.py --models tiny --frames 100 300 --size 96   # smoke run

Each row streams a generated video (``composeseg.synthetic.iter_video_frames``, never held in
memory) through a pipeline with the simulated detector and reports frames/s, the peak resident
memory above the pre-run baseline, and how much RSS grew between 10 % of the frames and the end
("growth"): a streaming pipeline keeps growth near zero whatever the length. Peers in the same
run: ``VideoSegmentation`` with and without the consistency features, and (with ``--sam2``) the
SAM 2 propagation engine on a tiny random ``Sam2VideoModel`` (objects prompted on the first
frame, one session) with and without state pruning.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_table, rss_bytes

from composeseg.synthetic import VideoConfig, iter_video_frames

MiB = 2**20


def load_model(name: str, directory: Path) -> Any:
    from composeseg import load_sam
    from composeseg.configs import sam_config
    from composeseg.tiny import build_model, tiny_sam_config

    if name == "demo":
        return load_sam(device="cpu")
    config = tiny_sam_config() if name == "tiny" else sam_config()  # sam_config(): ViT-B
    path = directory / name
    model: Any = build_model(config, seed=0)
    model.save_pretrained(path)
    return load_sam(path, device="cpu")


def measure(run: Callable[[Iterable[Any]], Iterable[Any]], video: VideoConfig) -> dict[str, float]:
    """Stream the video through ``run``; frames/s, peak RSS above baseline, RSS growth."""
    gc.collect()
    baseline = rss_bytes()
    peak, at_tenth = baseline, None
    start = time.perf_counter()
    count = 0
    for count, _ in enumerate(run(iter_video_frames(0, video)), start=1):
        rss = rss_bytes()
        peak = max(peak, rss)
        if count == max(1, video.n_frames // 10):
            at_tenth = rss
    seconds = time.perf_counter() - start
    end = rss_bytes()
    return {
        "fps": count / seconds,
        "peak": (peak - baseline) / MiB,
        "growth": (end - (at_tenth or end)) / MiB,
    }


def video_rows(sam: Any, label: str, video: VideoConfig) -> list[list[Any]]:
    from composeseg.pipelines.video import VideoSegmentation
    from composeseg.pipelines.video_sim import SimulatedDetector

    variants = {
        "VideoSegmentation (consistent)": {},
        "VideoSegmentation (per-frame)": {"mask_prompt": False, "max_gap": 0},
    }
    rows = []
    warm = replace(video, n_frames=10)  # first calls allocate buffers: keep them out of "peak"
    for _ in VideoSegmentation(sam, SimulatedDetector(iter_video_frames(0, warm)))(
        iter_video_frames(0, warm)
    ):
        pass
    for name, options in variants.items():
        detector = SimulatedDetector(iter_video_frames(0, video), seed=0)
        pipe = VideoSegmentation(sam, detector, "bytetrack", **options)
        result = measure(pipe, video)
        rows.append(_row(label, name, video, result))
    return rows


def sam2_rows(video: VideoConfig) -> list[list[Any]]:
    from transformers import Sam2VideoModel

    from composeseg.pipelines.video_sam2 import Sam2Propagation, tiny_sam2_video_config
    from composeseg.pipelines.video_sim import SimulatedDetector

    torch.manual_seed(0)
    model = Sam2VideoModel(tiny_sam2_video_config()).eval()
    rows = []
    warm = replace(video, n_frames=10)
    for _ in Sam2Propagation(model, SimulatedDetector(iter_video_frames(0, warm)))(
        iter_video_frames(0, warm)
    ):
        pass
    for prune in (True, False):
        detector = SimulatedDetector(iter_video_frames(0, video), seed=0)
        # objects prompted once (detect_every=0): one session for the whole video, as in
        # interactive use; re-seeding would start fresh sessions and hide the growth
        engine = Sam2Propagation(model, detector, detect_every=0, prune_state=prune)
        name = f"Sam2Propagation ({'pruned' if prune else 'unpruned'})"
        rows.append(_row("tiny SAM 2 video", name, video, measure(engine, video)))
    return rows


def _row(model: str, name: str, video: VideoConfig, result: dict[str, float]) -> list[Any]:
    return [
        model,
        name,
        video.n_frames,
        f"{video.height}x{video.width}",
        f"{result['fps']:.2f}",
        f"{result['peak']:.1f}",
        f"{result['growth']:+.1f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", nargs="*", default=["vitb", "demo"], choices=("vitb", "demo", "tiny")
    )
    parser.add_argument("--frames", nargs="+", type=int, default=[100, 1000])
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels")
    parser.add_argument("--sam2", action="store_true", help="add the SAM 2 propagation rows")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            try:
                sam = load_model(name, Path(tmp))
            except (ValueError, FileNotFoundError) as error:
                print(f"skipping {name}: {error}")
                continue
            for frames in args.frames:
                video = VideoConfig(height=args.size, width=args.size, n_frames=frames)
                rows += video_rows(sam, name, video)
            del sam
        if args.sam2:
            for frames in args.frames:
                video = VideoConfig(height=args.size, width=args.size, n_frames=frames)
                rows += sam2_rows(video)
    print(f"torch threads: {torch.get_num_threads()}")
    print_table(["model", "pipeline", "frames", "size", "frames/s", "peak MiB", "growth MiB"], rows)


if __name__ == "__main__":
    main()
