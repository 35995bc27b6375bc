"""The dataset runner: sources, keys, exactly-once resume, failures, the lock, batching."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from composeseg.adapters import from_boxes
from composeseg.pipelines import (
    AutomaticMaskGenerator,
    EdgeDetection,
    InstanceSegmentation,
    ObjectProposals,
    TextSegmentation,
)
from composeseg.pipelines.records import OutputFolder
from composeseg.pipelines.runner import run_job
from composeseg.pipelines.sources import resolve_items
from composeseg.prompts import Prompts
from composeseg.synthetic.scenes import generate_scene


def detector(image: np.ndarray) -> Prompts:
    height, width = image.shape[:2]
    return from_boxes(
        [[2, 2, width // 2, height // 2], [width // 3, height // 3, width - 1, height - 1]],
        format="xyxy",
        scores=[0.9, 0.6],
        class_ids=[0, 1],
        names=["left", "right"],
        image_size=(height, width),
    )


def scene(seed: int, size: int = 64) -> np.ndarray:
    return np.asarray(Image.fromarray(generate_scene(seed).image).resize((size, size)))


def make_folder(root: Path, names: list[str]) -> Path:
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(scene(i)).save(path)
    return root


def amg(sam):  # type: ignore[no-untyped-def]
    return AutomaticMaskGenerator(
        sam, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )


def files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def test_same_stems_and_same_names_never_collide(tiny_sam, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # the old runner wrote x.jpg and x.png both to x.json: the second image got the first's
    names = ["x.jpg", "x.png", "a/x.jpg", "b/x.jpg"]
    source = make_folder(tmp_path / "images", names)
    summary = InstanceSegmentation(tiny_sam, detector).run(
        source, write_to=tmp_path / "out", progress=False
    )
    assert (summary.total, summary.done, summary.skipped, summary.failed) == (4, 4, 0, [])
    keys = sorted(names)
    assert sorted(files(tmp_path / "out" / "records")) == [f"{k}.json" for k in keys]
    merged = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [im["file_name"] for im in merged["images"]] == keys
    assert len({a["id"] for a in merged["annotations"]}) == len(merged["annotations"]) == 8
    # each record holds its own image's masks, not another one's
    for result in summary.results():
        alone = InstanceSegmentation(tiny_sam, detector)(source / result.name)
        np.testing.assert_array_equal(result.detections.mask, alone.mask)


def test_a_bad_image_is_listed_and_the_run_goes_on(tiny_sam, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = make_folder(tmp_path / "images", ["a.png", "c.png"])
    (source / "b.png").write_bytes(b"\x89PNG not really")
    (source / "d.jpg").write_bytes(b"")
    truncated = (source / "a.png").read_bytes()
    (source / "e.png").write_bytes(truncated[: len(truncated) // 2])
    pipe = amg(tiny_sam)
    summary = pipe.run(source, write_to=tmp_path / "out", progress=False)
    assert summary.done == 2 and sorted(k for k, _ in summary.failed) == ["b.png", "d.jpg", "e.png"]
    listed = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert {f["file_name"]: f["error"] for f in listed}["d.jpg"].endswith("is empty (0 bytes)")
    assert "2 done, 0 done before, 3 failed" in str(summary)
    # a rerun retries the failures; fixed images are then done, and the list goes away
    for name in ("b.png", "d.jpg", "e.png"):
        Image.fromarray(scene(7)).save(source / name)
    again = pipe.run(source, write_to=tmp_path / "out", progress=False)
    assert (again.done, again.skipped, again.failed) == (3, 2, [])
    assert not (tmp_path / "out" / "failures.json").exists()


@pytest.mark.parametrize("batch_size", [3, 4])
def test_batched_encoding_gives_the_same_records(tiny_sam, tmp_path: Path, batch_size: int) -> None:  # type: ignore[no-untyped-def]
    source = make_folder(tmp_path / "images", [f"{i}.png" for i in range(7)])
    one = amg(tiny_sam).run(source, write_to=tmp_path / "one", progress=False)
    many = amg(tiny_sam).run(
        source, write_to=tmp_path / "many", batch_size=batch_size, progress=False
    )
    assert one.objects == many.objects > 0
    for a, b in zip(one.results(), many.results(), strict=True):
        assert a.name == b.name
        np.testing.assert_array_equal(a.detections.mask, b.detections.mask)
        # a batched matrix product may round the last bit of a score differently
        np.testing.assert_allclose(a.detections.confidence, b.detections.confidence, atol=1e-6)


def test_embed_batch_equals_embed(tiny_sam) -> None:  # type: ignore[no-untyped-def]
    images = [scene(0, 64), scene(1, 40)[:, :30], scene(2, 90)]
    batched = tiny_sam.embed_batch(images)
    for image, embedding in zip(images, batched, strict=True):
        alone = tiny_sam.embed(image)
        assert embedding.original_size == alone.original_size
        assert embedding.input_size == alone.input_size
        for a, b in zip(embedding.features, alone.features, strict=True):
            assert a.shape == b.shape and a.shape[0] == 1
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4, rtol=0)
    assert tiny_sam.embed_batch([]) == []


KILLED_RUN = """
import sys, time
import torch
from composeseg.loading import load_sam

# the test process runs one thread: a matrix product split another way rounds differently
torch.set_num_threads(1)
from composeseg.pipelines import AutomaticMaskGenerator
from composeseg.pipelines.runner import run_job

pipe = AutomaticMaskGenerator(
    load_sam(sys.argv[1], device="cpu"), points_per_side=4, pred_iou_thresh=0.0,
    stability_score_thresh=0.0,
)
job = pipe.job()
predict = job.predict

def slow(rgb, path, embedding):
    time.sleep(0.3)  # a slow model: the kill lands mid-run
    return predict(rgb, path, embedding)

job.predict = slow
run_job(job, sys.argv[2], write_to=sys.argv[3], batch_size=2, progress=False)
"""


def test_sigkill_then_resume_equals_an_uninterrupted_run(  # type: ignore[no-untyped-def]
    tiny_sam, tiny_sam_dir: Path, tmp_path: Path
) -> None:
    source = make_folder(tmp_path / "images", [f"{d}/{i}.png" for d in "ab" for i in range(8)])
    out = tmp_path / "killed"
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(KILLED_RUN))
    command = [sys.executable, str(script), str(tiny_sam_dir), str(source), str(out)]
    process = subprocess.Popen(command)
    deadline = time.monotonic() + 120
    while len(list((out / "records").rglob("*.json"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    written = len(list((out / "records").rglob("*.json")))
    assert 4 <= written < 16, "the kill must land mid-run"
    summary = amg(tiny_sam).run(source, write_to=out, batch_size=2, progress=False)
    assert (summary.skipped, summary.done) == (written, 16 - written)
    clean = tmp_path / "clean"
    reference = amg(tiny_sam).run(source, write_to=clean, batch_size=2, progress=False)
    assert reference.done == 16
    assert files(out) == files(tmp_path / "clean")  # records byte-equal, no temp files left


def test_a_second_run_on_the_same_folder_is_refused(tiny_sam, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = make_folder(tmp_path / "images", ["a.png"])
    refused = pytest.raises(RuntimeError, match=r"in use by another run \(pid \d+\)")
    with OutputFolder(tmp_path / "out"), refused:
        amg(tiny_sam).run(source, write_to=tmp_path / "out", progress=False)
    # the lock goes with the run that held it
    assert amg(tiny_sam).run(source, write_to=tmp_path / "out", progress=False).done == 1


def test_bad_output_folders_and_sources(tiny_sam, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = make_folder(tmp_path / "images", ["a.png"])
    pipe = amg(tiny_sam)
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(ValueError, match="output folder .*taken is a file"):
        pipe.run(source, write_to=tmp_path / "taken", progress=False)
    if os.geteuid() == 0:
        read_only = Path("/sys/kernel")  # root writes anywhere but here (sysfs refuses it)
    else:
        read_only = tmp_path / "read-only"
        read_only.mkdir(mode=0o555)
    with pytest.raises(ValueError, match="cannot write to the output folder"):
        pipe.run(source, write_to=read_only, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images in"):
        pipe.run(tmp_path / "empty", write_to=tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        pipe.run(source, write_to=tmp_path / "out", batch_size=0, progress=False)
    with pytest.raises(ValueError, match="unknown export format 'csv'"):
        pipe.run(source, write_to=tmp_path / "out", formats=["csv"], progress=False)


def test_list_files_coco_files_and_globs(tmp_path: Path) -> None:
    source = make_folder(tmp_path / "images", ["a.png", "sub/b.jpg", "sub/c.png"])
    assert [i.key for i in resolve_items(source, glob="**/*.png")] == ["a.png", "sub/c.png"]
    listing = tmp_path / "images" / "list.txt"
    listing.write_text("# two of them\nsub/b.jpg\n\na.png\n")
    assert [i.key for i in resolve_items(listing)] == ["sub/b.jpg", "a.png"]
    coco = tmp_path / "gt.json"
    coco.write_text(json.dumps({"images": [{"id": 7, "file_name": "sub/c.png"}]}))
    (item,) = resolve_items(coco, image_dir=source)
    assert (item.key, item.image_id, item.path) == ("sub/c.png", 7, source / "sub/c.png")
    coco.write_text(json.dumps({"images": [{"id": 1, "file_name": "../../etc/passwd"}]}))
    with pytest.raises(ValueError, match="must be a relative path inside the source"):
        resolve_items(coco, image_dir=source)


def test_a_coco_source_keeps_its_image_ids(tiny_sam, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = make_folder(tmp_path / "images", ["p.png", "q.png"])
    coco = tmp_path / "gt.json"
    images = [{"id": 42, "file_name": "q.png"}, {"id": 5, "file_name": "p.png"}]
    coco.write_text(json.dumps({"images": images}))
    summary = InstanceSegmentation(tiny_sam, detector).run(
        coco, write_to=tmp_path / "out", image_dir=source, progress=False
    )
    merged = json.loads(summary.files[0].read_text())
    assert [(im["id"], im["file_name"]) for im in merged["images"]] == [(5, "p.png"), (42, "q.png")]
    assert {a["image_id"] for a in merged["annotations"]} == {5, 42}
    assert [c["name"] for c in merged["categories"]] == ["left", "right"]


def test_every_image_pipeline_runs_on_a_folder(tiny_sam, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = make_folder(tmp_path / "images", ["a.png", "b/c.png"])
    pipes = {
        "instance": InstanceSegmentation(tiny_sam, detector),
        "everything": amg(tiny_sam),
        "proposals": ObjectProposals(tiny_sam, points_per_side=4, max_masks=5),
        "text": TextSegmentation(tiny_sam, grounder=lambda rgb, texts: detector(rgb)),
    }
    for name, pipe in pipes.items():
        out = tmp_path / name
        if name == "text":
            summary = pipe.run(source, ["left", "right"], write_to=out, progress=False)
        else:
            summary = pipe.run(source, write_to=out, save_images=True, progress=False)
        assert summary.done == 2, name
        merged = json.loads((out / "predictions.json").read_text())
        assert [im["file_name"] for im in merged["images"]] == ["a.png", "b/c.png"], name
        streamed = list(
            pipe.stream(source, ["left", "right"]) if name == "text" else pipe.stream(source)
        )
        stored = list(summary.results())
        for a, b in zip(streamed, stored, strict=True):
            assert a.name == b.name
            np.testing.assert_array_equal(a.detections.mask, b.detections.mask)
    assert (tmp_path / "instance" / "images" / "b" / "c.png").is_file()
    edges = EdgeDetection(tiny_sam, points_per_side=4, nms=False, thin=False)
    summary = edges.run(source, write_to=tmp_path / "edges", progress=False)
    assert summary.files == [] and summary.unit == "edge maps"
    stored = np.asarray(Image.open(tmp_path / "edges" / "edges" / "b" / "c.png.png"))
    np.testing.assert_array_equal(stored, np.round(edges(source / "b" / "c.png") * 255))


def test_exports_beside_the_merged_file(tiny_sam, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = make_folder(tmp_path / "images", ["a.png", "b.png"])
    summary = InstanceSegmentation(tiny_sam, detector).run(
        source, write_to=tmp_path / "out", formats=["yolo", "voc"], progress=False
    )
    assert [p.name for p in summary.files] == ["predictions.json", "yolo", "voc"]
    assert sorted(p.name for p in (tmp_path / "out" / "yolo" / "labels").iterdir()) == [
        "a.txt",
        "b.txt",
    ]
    assert sorted(p.name for p in (tmp_path / "out" / "voc").glob("*.xml")) == ["a.xml", "b.xml"]
    with pytest.raises(ValueError, match="edges has no masks to export"):
        EdgeDetection(tiny_sam, points_per_side=4, nms=False, thin=False).run(
            source, write_to=tmp_path / "e", formats=["yolo"], progress=False
        )


def test_run_job_takes_a_factory(tiny_sam, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = make_folder(tmp_path / "images", ["a.png"])
    summary = run_job(lambda: amg(tiny_sam).job(), source, write_to=tmp_path / "out")
    assert summary.done == 1 and summary.total == 1
