"""Memory and time of the tiled pipelines on huge images: 5k², 10k², 20k² tiled TIFFs read
lazily, with the demo model and ViT-B-size random weights.

Usage:
    python benchmarks/bench_tiling.py                         # demo: 5k, 10k, 20k; ViT-B: 20k
    python benchmarks/bench_tiling.py --sizes 5000 --models demo   # a quick look

Scenes come from ``composeseg.synthetic.large`` (flat background, shapes at a fixed density
per area, so work grows with area) and are written as tiled TIFFs (512 px tiles, no
compression), one tile in memory at a time. Each measurement runs in a fresh process: load
the model, open the TIFF lazily (``large_image=True``), reset the kernel's high-water mark,
run, read the peak RSS (VmHWM) above the process at that point. The detector is the
simulated one (``SimulatedTileDetector``: connected regions that differ from the background
at a 1024 px input); "segment everything" uses an 8x8 point grid per tile and skips blank
tiles (one colour), which is what keeps it affordable on this CPU: the scenes are sparse.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_table

SEED = 7
# objects per 25 MP (a 5000 x 5000 image): small ones for both modes, large ones too for
# the detector; ViT-B runs at 20k² only and with few objects (its encoder takes ~25 s a crop)
DENSITY = {"instance": (16, 1), "everything": (1, 0)}
VITB_OBJECTS = {"instance": (8, 0), "everything": (3, 0)}


def counts(mode: str, model: str, size: int) -> tuple[int, int]:
    if model != "demo":
        return VITB_OBJECTS[mode]
    small, large = DENSITY[mode]
    scale = round((size / 5000) ** 2)
    return small * scale, large * scale


def scene_path(folder: Path, size: int, small: int, large: int) -> Path:
    """Write (once) the scene as a tiled TIFF; returns its path."""
    from composeseg.synthetic.large import LargeSceneConfig, generate_large_scene

    path = folder / f"scene_{size}_{small}_{large}.tif"
    if not path.exists():
        config = LargeSceneConfig(
            height=size,
            width=size,
            small_objects=small,
            large_objects=large,
            large_size=(300.0, 1000.0),
            noise=0.0,
        )
        generate_large_scene(SEED, config).write_tiff(path)
    return path


def measure(args: argparse.Namespace) -> None:
    """One measurement in this process; writes a JSON line to ``args.out``."""
    import torch

    from composeseg import load_sam
    from composeseg.pipelines.tiled import TiledInstanceSegmentation
    from composeseg.pipelines.tiled_everything import TiledMaskGenerator
    from composeseg.raster import open_raster
    from composeseg.synthetic.large import SimulatedTileDetector

    torch.set_num_threads(args.threads)
    sam = load_sam(args.sam or None)
    raster = open_raster(args.image, large_image=True)
    background = raster.read((0, 0, 1, 1))[0, 0]  # the scenes' corners are background
    if args.mode == "instance":
        detector = SimulatedTileDetector(background, jitter=0.05, drop=0.0)
        pipe: object = TiledInstanceSegmentation(sam, detector, tile=1024, overlap=0.2)
    else:
        pipe = TiledMaskGenerator(
            sam, points_per_side=8, pred_iou_thresh=0.5, stability_score_thresh=0.8
        )
    Path("/proc/self/clear_refs").write_text("5")
    base = _status_kb("VmRSS")
    start = time.perf_counter()
    found = pipe(raster)  # type: ignore[operator]
    seconds = time.perf_counter() - start
    peak = _status_kb("VmHWM")
    result = {"masks": len(found), "seconds": seconds, "peak_mb": (peak - base) / 1024}
    Path(args.out).write_text(json.dumps(result))


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000, 20000])
    parser.add_argument("--models", nargs="+", default=["demo", "vitb"], choices=["demo", "vitb"])
    parser.add_argument(
        "--modes", nargs="+", default=["instance", "everything"], choices=["instance", "everything"]
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--folder", type=Path, default=None, help="where the TIFFs go (cached)")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    parser.add_argument("--sam", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args)
        return
    folder = args.folder or Path(tempfile.mkdtemp(prefix="composeseg-tiling-"))
    folder.mkdir(parents=True, exist_ok=True)
    vitb = None
    if "vitb" in args.models:
        from bench_segment import build_checkpoint

        vitb = build_checkpoint(folder, tiny=False)
    rows = []
    for model in args.models:
        sizes = args.sizes if model == "demo" else [max(args.sizes)]
        for mode in args.modes:
            for size in sizes:
                small, large = counts(mode, model, size)
                start = time.perf_counter()
                image = scene_path(folder, size, small, large)
                written = time.perf_counter() - start
                out = folder / f"result_{model}_{mode}_{size}.json"
                command = [sys.executable, __file__, "--measure", "--mode", mode]
                command += ["--image", str(image), "--out", str(out)]
                command += ["--threads", str(args.threads), "--sam", str(vitb or "")]
                if model == "demo":
                    command[-1] = ""
                subprocess.run(command, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
                r = json.loads(out.read_text())
                mp = size * size / 1e6
                rows.append(
                    [model, mode, f"{size}²", small + large, r["masks"], f"{r['peak_mb']:.0f}",
                     f"{r['seconds']:.0f}", f"{r['seconds'] / mp * 100:.1f}"]
                )  # fmt: skip
                print(f"{rows[-1]} (scene written in {written:.0f} s)", flush=True)
    print_table(
        ["model", "mode", "image", "objects", "masks", "peak MB above model", "time s",
         "s per 100 MP"],
        rows,
    )  # fmt: skip


if __name__ == "__main__":
    main()
