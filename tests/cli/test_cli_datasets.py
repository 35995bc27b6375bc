"""Every image command takes a dataset (folder, list, COCO file) through the one runner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from composeseg.pipelines.cli import main
from composeseg.pipelines.records import OutputFolder

GRID = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]


def model(tiny_sam_dir: Path) -> list[str]:
    return ["--sam", str(tiny_sam_dir), "--device", "cpu"]


@pytest.fixture
def folder(tmp_path: Path, rgb_image: np.ndarray) -> Path:
    root = tmp_path / "images"
    for i, name in enumerate(["x.jpg", "x.png", "sub/x.jpg"]):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.roll(rgb_image, 7 * i, axis=1)).save(root / name)
    return root


def test_everything_on_a_folder_then_resumed(
    tiny_sam_dir: Path, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["everything", str(folder), "-o", str(out), *GRID, *model(tiny_sam_dir)]
    assert main([*argv, "--format", "yolo"]) == 2  # x.jpg and x.png: one YOLO label file
    assert "export names label files by image stem" in capsys.readouterr().err
    assert not out.exists() or not any((out / "records").rglob("*.json"))  # refused up front
    argv += ["--batch-size", "2", "--save-images"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "3 images: 3 done, 0 done before" in printed and "img/s" in printed
    records = sorted(p.relative_to(out).as_posix() for p in (out / "records").rglob("*.json"))
    assert records == ["records/sub/x.jpg.json", "records/x.jpg.json", "records/x.png.json"]
    assert (out / "images" / "sub" / "x.jpg").is_file()
    merged = json.loads((out / "predictions.json").read_text())
    assert [im["file_name"] for im in merged["images"]] == ["sub/x.jpg", "x.jpg", "x.png"]
    assert main(argv) == 0
    assert "0 done, 3 done before" in capsys.readouterr().out


def test_segment_and_edges_and_proposals_take_a_list_file(
    tiny_sam_dir: Path, folder: Path, tmp_path: Path, rgb_image: np.ndarray
) -> None:
    listing = folder / "two.txt"
    listing.write_text("x.png\nsub/x.jpg\n")
    coco = tmp_path / "boxes.json"
    images = [
        {"id": i + 1, "file_name": n, "height": 90, "width": 140}
        for i, n in enumerate(["x.png", "x.jpg"])
    ]
    box = {"category_id": 1, "bbox": [10, 10, 40, 30], "iscrowd": 0, "area": 1200}
    annotations = [{**box, "id": i + 1, "image_id": i + 1} for i in range(2)]
    categories = [{"id": 1, "name": "thing"}]
    coco.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    seg = tmp_path / "seg"
    argv = [
        "segment",
        str(coco),
        "--image-dir",
        str(folder),
        "--detector",
        str(coco),
        "-o",
        str(seg),
    ]
    assert main(argv + model(tiny_sam_dir)) == 0
    merged = json.loads((seg / "predictions.json").read_text())
    assert sorted(a["image_id"] for a in merged["annotations"]) == [1, 2]
    edges = tmp_path / "edges"
    argv = ["edges", str(listing), "-o", str(edges), "--points-per-side", "4", "--no-nms"]
    assert main(argv + model(tiny_sam_dir)) == 0
    assert sorted(p.name for p in (edges / "edges").rglob("*.png")) == ["x.jpg.png", "x.png.png"]
    proposals = tmp_path / "proposals"
    argv = ["proposals", str(folder), "-o", str(proposals), "--points-per-side", "4"]
    assert main([*argv, "--glob", "*.png", *model(tiny_sam_dir)]) == 0
    merged = json.loads((proposals / "predictions.json").read_text())
    assert [im["file_name"] for im in merged["images"]] == ["x.png"]


def test_dataset_errors_are_one_line_and_exit_2(
    tiny_sam_dir: Path, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "a-file").write_text("")
    runs = {
        "no images in": ["everything", str(tmp_path / "empty"), "-o", str(tmp_path / "o")],
        "is a file": ["everything", str(folder), "-o", str(tmp_path / "a-file")],
        "give --detector": ["segment", str(folder), "-o", str(tmp_path / "o")],
    }
    for message, argv in runs.items():
        capsys.readouterr()
        assert main(argv + model(tiny_sam_dir)) == 2, message
        assert message in capsys.readouterr().err
    # the output is checked before any model loads: a missing model is not what it reports
    argv = ["everything", str(folder), "-o", str(tmp_path / "a-file"), "--sam", "no/such-model"]
    assert main(argv) == 2
    assert "is a file" in capsys.readouterr().err
    with OutputFolder(tmp_path / "busy"):
        argv = ["everything", str(folder), "-o", str(tmp_path / "busy"), *model(tiny_sam_dir)]
        assert main(argv) == 2
    assert "is in use by another run" in capsys.readouterr().err


def test_eval_instances_predicts_through_the_runner_and_resumes(
    tiny_sam_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from composeseg.synthetic import SceneConfig, generate_scenes, write_coco

    coco = write_coco(generate_scenes(range(2), SceneConfig(height=64, width=96)), tmp_path / "gt")
    out = tmp_path / "eval"
    argv = ["eval", "instances", "--gt", str(coco), "--images", str(coco.parent / "images")]
    argv += ["--detector", str(coco), "--batch-size", "2", "-o", str(out), *model(tiny_sam_dir)]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "2 images: 2 done" in first and "| AP |" in first
    assert len(list((out / "run" / "records").rglob("*.json"))) == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert main(argv) == 0
    assert "0 done, 2 done before" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text()) == metrics


def test_eval_proposals_resumes_and_refuses_missing_images(
    tiny_sam_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from composeseg.synthetic import SceneConfig, generate_scenes, write_coco

    coco = write_coco(generate_scenes(range(3), SceneConfig(height=64, width=96)), tmp_path / "gt")
    images = coco.parent / "images"
    metrics = tmp_path / "metrics.json"
    argv = ["eval", "proposals", "--gt", str(coco), "--images", str(images)]
    argv += ["--points-per-side", "4", "-o", str(metrics), *model(tiny_sam_dir)]
    assert main(argv) == 0
    assert "3 images: 3 done" in capsys.readouterr().out
    assert len(list((tmp_path / "metrics.run" / "records").rglob("*.json"))) == 3
    first = json.loads(metrics.read_text())
    assert main(argv) == 0
    assert "0 done, 3 done before" in capsys.readouterr().out
    assert json.loads(metrics.read_text()) == first
    next(images.iterdir()).unlink()
    argv[argv.index("-o") + 1] = str(tmp_path / "other.json")
    assert main(argv) == 2
    assert "1 ground-truth image(s) could not be read" in capsys.readouterr().err
