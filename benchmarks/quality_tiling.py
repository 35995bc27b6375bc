"""Small objects on a huge image: untiled SAM, supervision's InferenceSlicer feeding the same
SAM, and composeseg's tiled pipeline, on one generated scene, in one run.

Usage:
    python benchmarks/quality_tiling.py                  # 8000 x 8000, ~500 small + 6 large
    python benchmarks/quality_tiling.py --size 3000 --small 80 --large 2   # a quick look
    python benchmarks/quality_tiling.py --family independent   # the evaluation-only shapes

The scene (``composeseg.synthetic.large``) has hundreds of 8-60 px shapes and a few large
ones that cross any tiling's seams; ``--family independent`` draws them by the independent
family's rules (blobs, concave polygons, strokes, rings in its colours, a quarter of them
low-contrast), still separate on a flat background. The detector is the same simulated one
for all three (``SimulatedTileDetector``): it sees the image it is given shrunk to a 1024 px
input, as a real detector does, jitters box sides by 5 % and misses 10 % of objects. The
methods:

- untiled: the detector on the whole image, one SAM encoding of the whole image (masks
  upsampled to 8000 x 8000, encoded to RLE in chunks so that the run fits in memory);
- slicer: ``sv.InferenceSlicer`` (512 px slices, 128 px overlap, mask NMS at 0.5, its
  ``compact_masks`` RLE mode) whose callback runs detector + SAM on each slice;
- tiled: ``TiledInstanceSegmentation`` (detector on the same 512 / 128 tiles; SAM crops of the
  model's 512 px input around the objects).

Each method runs in a fresh process; peak RSS is measured above the process after the model
and the image are loaded. Mask AP / AR by COCO size (pycocotools, class-agnostic, up to 1000
detections). ``--picture PATH`` also draws untiled vs tiled masks on a zoomed region.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_table

METHODS = ("untiled", "slicer", "tiled")
TILE, OVERLAP = 512, 128


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def build(args: argparse.Namespace) -> tuple[Any, np.ndarray, Any]:
    from composeseg.synthetic.large import (
        LargeSceneConfig,
        SimulatedTileDetector,
        generate_large_scene,
    )

    config = LargeSceneConfig(
        height=args.size,
        width=args.size,
        small_objects=args.small,
        large_objects=args.large,
        family=args.family,
    )
    scene = generate_large_scene(args.seed, config)
    # the independent family's low-contrast objects sit 14-30 grey levels off the background
    # (its noise: 6), so its detector must look closer to find them at all
    threshold = 12.0 if args.family == "independent" else 40.0
    detector = SimulatedTileDetector(
        scene.background, threshold=threshold, jitter=0.05, drop=0.1, seed=args.seed
    )
    return scene, scene.image(), detector


def untiled(sam: Any, image: np.ndarray, detector: Any) -> list[dict[str, Any]]:
    from composeseg import rle
    from composeseg.pipelines import InstanceSegmentation

    prompts = detector(image)
    embedding = sam.embed(image)
    pipe = InstanceSegmentation(sam)
    out = []
    for start in range(0, len(prompts), 8):  # 8 masks of 8000 x 8000 at a time: 0.5 GB
        found = pipe.segment(image, prompts[start : start + 8], embedding=embedding)
        for k in range(len(found)):
            out.append(_record(rle.encode_mask(found.mask[k]), float(found.confidence[k])))
    return out


def slicer(sam: Any, image: np.ndarray, detector: Any) -> list[dict[str, Any]]:
    import supervision as sv

    from composeseg import rle
    from composeseg.pipelines import InstanceSegmentation

    pipe = InstanceSegmentation(sam, detector)
    slices = sv.InferenceSlicer(
        callback=lambda tile: pipe(tile),
        slice_wh=TILE,
        overlap_wh=OVERLAP,
        iou_threshold=0.5,
        compact_masks=True,
    )
    found = slices(image)
    masks = found.mask
    out = []
    size = image.shape[:2]
    for k in range(len(found)):
        x0, y0 = (int(v) for v in masks.offsets[k])
        patch = masks.crop(k)
        encoded = rle.to_json(rle.paste(patch, (x0, y0), size))
        out.append(_record(encoded, float(found.confidence[k])))
    return out


def tiled(sam: Any, image: np.ndarray, detector: Any) -> list[dict[str, Any]]:
    from composeseg.pipelines.tiled import TiledInstanceSegmentation

    found = TiledInstanceSegmentation(sam, detector, tile=TILE, overlap=OVERLAP)(image)
    return [_record(found.data["rle"][k], float(found.confidence[k])) for k in range(len(found))]


def _record(segmentation: dict[str, Any], score: float) -> dict[str, Any]:
    return {"image_id": 1, "category_id": 1, "segmentation": segmentation, "score": score}


def run_method(args: argparse.Namespace) -> None:
    """One method in this process; prints one JSON line."""
    import torch

    from composeseg import load_sam

    if args.threads:
        torch.set_num_threads(args.threads)
    sam = load_sam(args.sam)
    _, image, detector = build(args)
    Path("/proc/self/clear_refs").write_text("5")  # the peak from here on is the method's
    base = status_kb("VmRSS")
    start = time.perf_counter()
    records = {"untiled": untiled, "slicer": slicer, "tiled": tiled}[args.method](
        sam, image, detector
    )
    seconds = time.perf_counter() - start
    peak = status_kb("VmHWM")
    Path(args.out).write_text(
        json.dumps({"records": records, "seconds": seconds, "peak_kb": peak - base})
    )


def evaluate(gt: dict[str, Any], records: list[dict[str, Any]]) -> list[float]:
    """AP, AP50, APs, APm, APl, AR, ARs, ARm, ARl (percent) through pycocotools."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        dets = coco.loadRes(records) if records else None
        if dets is None:
            return [0.0] * 9
        ev = COCOeval(coco, dets, "segm")
        ev.params.maxDets = [10, 100, 1000]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    s = ev.stats
    # summarize() scores its first AP at 100 detections whatever maxDets says: recompute it
    # at 1000 (precision: [IoU, recall, class, area, maxDets])
    precision = ev.eval["precision"][:, :, :, 0, 2]
    ap = float(precision[precision > -1].mean()) if (precision > -1).any() else 0.0
    return [100 * float(v) for v in (ap, s[1], s[3], s[4], s[5], s[8], s[9], s[10], s[11])]


def picture(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Untiled vs tiled masks over a zoomed region of small objects, side by side."""
    import cv2

    from composeseg import rle

    scene, image, _ = build(args)
    boxes = scene.boxes()
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    small = boxes[sides < 40]
    # the 400 px window holding the most small objects
    best, window = -1, (0, 0)
    for x, y in small[:, :2].astype(int):
        x0, y0 = max(0, x - 150), max(0, y - 150)
        count = int(((small[:, 0] >= x0) & (small[:, 2] <= x0 + 400)
                     & (small[:, 1] >= y0) & (small[:, 3] <= y0 + 400)).sum())  # fmt: skip
        if count > best:
            best, window = count, (x0, y0)
    x0, y0 = window
    panels = []
    for method in ("untiled", "tiled"):
        crop = image[y0 : y0 + 400, x0 : x0 + 400]
        # outlines, not tints: a tint over a shape of similar colour hides whether it has a mask
        panel = cv2.resize(crop // 2, (600, 600), interpolation=cv2.INTER_NEAREST)
        rng = np.random.default_rng(0)
        for record in results[method]["records"]:
            x, y, w, h = _bbox(record["segmentation"])
            if x + w < x0 or x > x0 + 400 or y + h < y0 or y > y0 + 400:
                continue
            mask = rle.decode(record["segmentation"])[y0 : y0 + 400, x0 : x0 + 400]
            big = cv2.resize(mask.astype(np.uint8), (600, 600), interpolation=cv2.INTER_NEAREST)
            contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            colour = tuple(int(c) for c in rng.integers(120, 256, 3))
            cv2.drawContours(panel, contours, -1, colour, 2)
        cv2.putText(panel, method, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2)
        panels.append(panel)
    strip = np.concatenate([panels[0], np.full((600, 8, 3), 255, np.uint8), panels[1]], axis=1)
    cv2.imwrite(str(args.picture), strip[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"picture: {args.picture} (region x {x0}-{x0 + 400}, y {y0}-{y0 + 400})")


def _bbox(segmentation: dict[str, Any]) -> list[float]:
    from pycocotools import mask as mask_utils

    from composeseg.rle import _native

    return [float(v) for v in mask_utils.toBbox(_native(segmentation))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sam", default=None, help="SAM source (default: the demo model)")
    parser.add_argument("--size", type=int, default=8000, help="scene side in pixels")
    parser.add_argument("--small", type=int, default=500, help="small objects (8-60 px)")
    parser.add_argument("--large", type=int, default=6, help="large objects (300-1500 px)")
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="scene seed (default: 1000030000; independent family: 8000030000, its test range)",
    )
    parser.add_argument(
        "--family",
        choices=("generated", "independent"),
        default="generated",
        help="shapes of the training generator or of the evaluation-only independent family",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--picture", type=Path, default=None, help="write the zoomed picture")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="keep each method's output here and reuse what is there (resume a long run)",
    )
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed is None:
        args.seed = 8_000_030_000 if args.family == "independent" else 1_000_030_000
    if args.method:
        run_method(args)
        return
    import tempfile

    scene, _, _ = build(args)
    gt = scene.coco()
    counts = np.bincount(
        np.digitize([a["area"] for a in gt["annotations"]], [32**2, 96**2]), minlength=3
    )
    print(
        f"{args.family} scene {args.size}x{args.size}: {len(gt['annotations'])} objects "
        f"({counts[0]} small, {counts[1]} medium, {counts[2]} large by COCO area)"
    )
    results: dict[str, Any] = {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.results or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for method in args.methods:
            out = folder / f"{method}.json"
            command = [sys.executable, __file__, "--method", method, "--out", str(out)]
            command += ["--size", str(args.size), "--small", str(args.small)]
            command += ["--large", str(args.large), "--seed", str(args.seed)]
            command += ["--family", args.family]
            command += ["--threads", str(args.threads)]
            if args.sam:
                command += ["--sam", args.sam]
            if not out.is_file():
                subprocess.run(command, check=True)
            results[method] = json.loads(out.read_text())
            metrics = evaluate(gt, results[method]["records"])
            rows.append(
                [method, len(results[method]["records"])]
                + [f"{v:.1f}" for v in metrics]
                + [f"{results[method]['peak_kb'] / 2**20:.2f}", f"{results[method]['seconds']:.0f}"]
            )
            print(f"{method} done: {rows[-1]}", flush=True)
    print_table(
        ["method", "masks", "AP", "AP50", "APs", "APm", "APl", "AR", "ARs", "ARm", "ARl",
         "peak GB", "time s"],
        rows,
    )  # fmt: skip
    if args.picture and {"untiled", "tiled"} <= set(results):
        picture(args, results)


if __name__ == "__main__":
    main()
