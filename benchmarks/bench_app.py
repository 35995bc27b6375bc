"""Click -> mask latency of the interactive app, through its real HTTP API.

Usage:
    python benchmarks/bench_app.py                 # demo model and ViT-B-size random weights
    python benchmarks/bench_app.py --no-vit-b      # the demo model alone (seconds)
    python benchmarks/bench_app.py --clicks 300 --size 1024x768 --threads 1
    python benchmarks/bench_app.py --policy        # why one click gets 3 candidates, not more
    python benchmarks/bench_app.py --no-vit-b --upsampling guided  # the demo without its refiner

The server is the one ``composeseg serve`` runs (``create_app`` + uvicorn on 127.0.0.1, in a
thread of this process); clicks go through HTTP with keep-alive, like a browser's. Each object
of a generated scene gets three clicks (on it, on it again, off it: each feeding the previous
logits back as the mask prompt, the paper's loop), then "clear", in turn, until ``--clicks``.
The image is encoded once per model (timed apart). A second table splits the server's time
(decoder, upsampling to full resolution, PNG encoding), measured on the same embedding.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from common import print_table

from composeseg.upsampling import UPSAMPLINGS


def click_script(masks: np.ndarray, count: int) -> list[dict[str, Any] | None]:
    """Prompts for ``count`` clicks: per object, on it (deepest point), on it again (deepest
    point of what is left after removing a disc around the first), off it (just outside its
    box); ``None`` = clear."""
    from scipy import ndimage

    height, width = masks.shape[1:]
    per_object: list[list[dict[str, Any]]] = []
    for mask in masks:
        depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
        yy, xx = np.mgrid[:height, :width]
        rest = np.where((yy - y) ** 2 + (xx - x) ** 2 > (depth.max() / 2) ** 2, depth, 0)
        y2, x2 = np.unravel_index(int(np.argmax(rest)), rest.shape)
        ys, xs = np.nonzero(mask)
        off = (min(width - 1, xs.max() + 4), min(height - 1, ys.max() + 4))
        per_object.append(
            [
                {"point": [x + 0.5, y + 0.5], "label": 1},
                {"point": [x2 + 0.5, y2 + 0.5], "label": 1},
                {"point": [off[0] + 0.5, off[1] + 0.5], "label": 0},
            ]
        )
    script: list[dict[str, Any] | None] = []
    while sum(p is not None for p in script) < count:
        for clicks in per_object:
            script += [*clicks, None]
    return script


def bench_model(sam: Any, folder: Path, masks: np.ndarray, clicks: int) -> dict[str, Any]:
    import httpx

    from composeseg.pipelines.app.server import create_app, running
    from composeseg.pipelines.app.store import image_id
    from composeseg.pipelines.app.workspace import Workspace

    # browsers send small requests at once (TCP_NODELAY); without it Nagle's algorithm and
    # delayed ACKs add ~40 ms to every request whose headers and body go out separately
    nodelay = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    with tempfile.TemporaryDirectory() as out:
        workspace = Workspace(sam, folder, out)
        with (
            running(create_app(workspace)) as url,
            httpx.Client(base_url=url, transport=nodelay) as client,
        ):
            iid = image_id("scene.png")
            start = time.perf_counter()
            opened = client.post(f"/api/images/{iid}/open", timeout=600).json()
            open_s = time.perf_counter() - start
            rounds, server, sizes = [], [], []
            for prompt in click_script(masks, clicks):
                if len(rounds) == clicks:
                    break
                if prompt is None:
                    client.post(f"/api/images/{iid}/editor/clear").raise_for_status()
                    continue
                start = time.perf_counter()
                response = client.post(f"/api/images/{iid}/prompt", json=prompt)
                body = response.json()  # the client has to parse it too
                rounds.append((time.perf_counter() - start) * 1000)
                response.raise_for_status()
                server.append(body["server_ms"])
                sizes.append(len(response.content))
    ms = np.array(rounds)
    return {
        "image": f"{opened['width']}x{opened['height']}",
        "encode s": f"{opened['encode_ms'] / 1000:.2f} (open {open_s:.2f})",
        "clicks": len(ms),
        "p50 ms": f"{np.percentile(ms, 50):.1f}",
        "p95 ms": f"{np.percentile(ms, 95):.1f}",
        "max ms": f"{ms.max():.1f}",
        "server p50 ms": f"{statistics.median(server):.1f}",
        "answer kB": f"{statistics.median(sizes) / 1024:.1f}",
    }


def profile(sam: Any, label: str, rgb: np.ndarray, masks: np.ndarray, repeat: int = 30) -> list:
    """Median ms of each stage of one multimask click and one refinement click: decoder,
    upsampling of the selected candidate, PNGs (it and the low-res previews), the whole step,
    and the step's CPU time (all threads of this process: with one thread, what the step
    takes on a core nobody else uses, whatever the machine's load)."""
    import torch

    from composeseg.pipelines.app.editor import Step, _low_res_masks, mask_png, predict_step
    from composeseg.prompts import Prompts

    embedding = sam.embed(rgb)
    script = [p for p in click_script(masks, 2) if p is not None][:2]
    first = predict_step(sam, embedding, ((*script[0]["point"], 1),), None, Step())
    rows = []
    for name, points, previous, multimask in (
        ("1st click (3 candidates)", [script[0]["point"]], None, True),
        ("2nd click (1 mask)", [p["point"] for p in script], first, False),
    ):
        prompts = Prompts(
            points=np.array([points], np.float32), point_labels=np.ones((1, len(points)), np.int32)
        )
        logits_in = None if previous is None else torch.from_numpy(previous.selected_logits()[None])
        timings: dict[str, list[float]] = {
            "decode": [],
            "upsample": [],
            "png": [],
            "total": [],
            "cpu": [],
        }
        for _ in range(repeat):
            t0 = time.perf_counter()
            logits, _ = sam.decode_low_res(
                embedding, prompts, multimask=multimask, mask_logits=logits_in
            )
            t1 = time.perf_counter()
            # what the server does: the selected candidate at full size, previews of all
            full = sam.masks_from_logits(logits[:, :1], embedding)[0, 0]
            t2 = time.perf_counter()
            mask_png(full)
            if multimask:
                for preview in _low_res_masks(sam, embedding, logits[0]):
                    mask_png(preview)
            t3 = time.perf_counter()
            step_points = tuple((*p, 1) for p in points)
            cpu = time.process_time()
            predict_step(sam, embedding, step_points, None, previous or Step())
            t4, cpu = time.perf_counter(), time.process_time() - cpu
            for times, seconds in zip(
                timings.values(), (t1 - t0, t2 - t1, t3 - t2, t4 - t3, cpu), strict=True
            ):
                times.append(seconds * 1000)
        rows.append([label, name, *(f"{statistics.median(v):.1f}" for v in timings.values())])
    return rows


def candidate_policy(seeds: range, upsampling: str | None = None, clicks: int = 4) -> None:
    """Mean IoU after each simulated click with the demo model (``upsampling``: None for its
    own): the app's policy (three candidates for one click, the single-mask output after)
    against the most confident of three candidates at every click. Each next click goes to
    the centre of the larger error region (on the object where the mask misses it, off it
    where the mask spills), and the selected candidate's logits are fed back, as in the app."""
    from scipy import ndimage

    from composeseg import load_sam
    from composeseg.synthetic.scenes import generate_scene

    def deepest(mask: np.ndarray) -> list[float]:
        depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
        return [x + 0.5, y + 0.5]

    sam = load_sam(None, device="cpu", upsampling=upsampling)
    totals = {
        "app: 3 candidates, then single mask": np.zeros(clicks),
        "3 candidates at every click": np.zeros(clicks),
    }
    count = 0
    for seed in seeds:
        scene = generate_scene(seed)
        embedding = sam.embed(scene.image)
        for truth in scene.masks():
            count += 1
            for policy, total in totals.items():
                points, labels, logits = [deepest(truth)], [1], None
                for i in range(clicks):
                    multimask = i == 0 or policy.startswith("3")
                    found = sam.segment(
                        embedding,
                        points=points,
                        point_labels=labels,
                        mask_input=logits,
                        multimask=multimask,
                    )
                    k = int(np.argmax(found.scores[0]))
                    mask, logits = found.masks[0, k], found.logits[:, k]
                    total[i] += (mask & truth).sum() / max(1, (mask | truth).sum())
                    missed, spilled = truth & ~mask, mask & ~truth
                    inside = missed.sum() >= spilled.sum()
                    points.append(deepest(missed if inside else spilled))
                    labels.append(int(inside))
    headers = ["policy (demo model)", *(f"IoU after {i + 1}" for i in range(clicks))]
    rows = [[name, *(f"{v / count:.3f}" for v in total)] for name, total in totals.items()]
    print(f"\n{count} objects of generated scenes {seeds.start}-{seeds.stop - 1}\n")
    print_table(headers, rows)


def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clicks", type=int, default=150)
    parser.add_argument("--size", default="1024x768", help="WxH of the generated scene")
    parser.add_argument("--no-vit-b", action="store_true", help="the demo model only")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=sorted({1, os.cpu_count() or 1}),
        help="torch thread counts to compare (default: 1 and all cores; serve --threads N)",
    )
    parser.add_argument(
        "--policy", action="store_true", help="instead: the candidate policy's IoU per click"
    )
    parser.add_argument(
        "--upsampling",
        choices=UPSAMPLINGS,
        default=None,
        help="the demo model's mask upsampling (default: its own, learned)",
    )
    args = parser.parse_args()
    import torch

    if args.policy:
        candidate_policy(range(100, 120), args.upsampling)
        return
    from PIL import Image

    from composeseg import load_sam
    from composeseg.synthetic.scenes import SceneConfig, generate_scene

    width, height = (int(v) for v in args.size.split("x"))
    scene = generate_scene(0, SceneConfig(height=height, width=width))
    masks = scene.masks()
    from composeseg.loading import DEMO_MODEL_DIR

    megabytes = sum(f.stat().st_size for f in DEMO_MODEL_DIR.iterdir()) / 1e6
    demo = (
        f"demo ({megabytes:.1f} MB)",
        lambda: load_sam(None, device="cpu", upsampling=args.upsampling),
    )
    models: list[tuple[str, Any]] = [demo]
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "images"
        folder.mkdir()
        Image.fromarray(scene.image).save(folder / "scene.png")
        if not args.no_vit_b:
            from bench_segment import build_checkpoint

            checkpoint = build_checkpoint(Path(scratch), tiny=False)
            models.append(("ViT-B size, random", lambda: load_sam(str(checkpoint), device="cpu")))
        rows, stages = [], []
        for label, load in models:
            sam = load()
            for threads in args.threads:
                # a new server per setting: its worker threads start with this count
                torch.set_num_threads(threads)
                row = bench_model(sam, folder, masks, args.clicks)
                rows.append({"model": label, "threads": threads, **row})
                stages += [[r[0], threads, *r[1:]] for r in profile(sam, label, scene.image, masks)]
                loads.append(os.getloadavg()[0])
    print(
        f"\nclick -> mask through HTTP ({os.cpu_count()} CPUs; 1-minute load average "
        f"{min(loads):.1f} to {max(loads):.1f} during the run)\n"
    )
    print_table(list(rows[0]), [list(r.values()) for r in rows])
    print("\nwhere the server's time goes (median ms, same embedding, in-process)\n")
    headers = ["model", "threads", "click", "decoder", "upsample", "PNG", "step", "step CPU"]
    print_table(headers, stages)


if __name__ == "__main__":
    main()
