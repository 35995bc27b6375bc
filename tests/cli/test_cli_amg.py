"""``composeseg everything / proposals / edges`` and ``eval proposals / eval edges`` on a tiny
model (random weights: the commands' plumbing, not their quality)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from composeseg.pipelines.cli import main
from composeseg.rle import decode as rle_to_mask
from composeseg.rle import encode_mask as mask_to_rle


@pytest.fixture
def image_file(tmp_path: Path, rgb_image: np.ndarray) -> Path:
    path = tmp_path / "images" / "scene.png"
    path.parent.mkdir()
    Image.fromarray(rgb_image).save(path)
    return path


def model(tiny_sam_dir: Path) -> list[str]:
    return ["--sam", str(tiny_sam_dir), "--device", "cpu"]


@pytest.mark.parametrize("rle", [False, True])
def test_everything_writes_coco_rle(
    tiny_sam_dir: Path, image_file: Path, tmp_path: Path, rle: bool
) -> None:
    out = tmp_path / "out"
    argv = ["everything", str(image_file), "-o", str(out), "--points-per-side", "4"]
    argv += ["--pred-iou-thresh", "0", "--stability-score-thresh", "0", *model(tiny_sam_dir)]
    assert main(argv + (["--rle"] if rle else [])) == 0
    payload = json.loads((out / "predictions.json").read_text())
    assert payload["annotations"] and payload["images"][0]["width"] == 140
    first = payload["annotations"][0]
    assert rle_to_mask(first["segmentation"]).shape == (90, 140)
    assert {"score", "stability_score", "point", "crop_box"} <= set(first)
    assert (out / "annotated.png").exists() != rle


def test_proposals_and_edges_commands(tiny_sam_dir: Path, image_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "proposals"
    argv = ["proposals", str(image_file), "-o", str(out), "--points-per-side", "4"]
    assert main([*argv, "--max-masks", "3", *model(tiny_sam_dir)]) == 0
    assert 0 < len(json.loads((out / "predictions.json").read_text())["annotations"]) <= 3
    edge_png = tmp_path / "edges.png"
    argv = ["edges", str(image_file), "-o", str(edge_png), "--points-per-side", "4"]
    assert main([*argv, *model(tiny_sam_dir)]) == 0
    edges = np.asarray(Image.open(edge_png))
    assert edges.shape == (90, 140) and edges.dtype == np.uint8


def test_eval_proposals_and_edges(
    tiny_sam_dir: Path, image_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mask = np.zeros((90, 140), bool)
    mask[20:60, 30:100] = True
    gt = {
        "images": [{"id": 1, "file_name": "scene.png", "height": 90, "width": 140}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "segmentation": mask_to_rle(mask),
                "area": int(mask.sum()),
                "bbox": [30, 20, 70, 40],
                "iscrowd": 0,
            }
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(gt))
    metrics = tmp_path / "ar.json"
    argv = ["eval", "proposals", "--gt", str(gt_path), "--images", str(image_file.parent)]
    argv += ["--points-per-side", "4", "-o", str(metrics), *model(tiny_sam_dir)]
    assert main(argv) == 0
    assert "AR@100" in capsys.readouterr().out
    assert 0.0 <= json.loads(metrics.read_text())["ar_100"] <= 1.0

    gt_dir = tmp_path / "boundaries"
    gt_dir.mkdir()
    boundary = mask ^ np.pad(mask[1:-1, 1:-1] & mask[2:, 1:-1] & mask[:-2, 1:-1], 1)
    Image.fromarray(boundary.astype(np.uint8) * 255).save(gt_dir / "scene.png")
    metrics = tmp_path / "edges.json"
    argv = ["eval", "edges", "--gt", str(gt_dir), "--images", str(image_file.parent)]
    assert main([*argv, "--method", "sobel", "--thresholds", "9", "-o", str(metrics)]) == 0
    assert json.loads(metrics.read_text())["ods"] > 0.5  # the rectangle is the only edge
    argv += ["--points-per-side", "4", "--thresholds", "5", *model(tiny_sam_dir)]
    assert main(argv) == 0
    assert "ODS" in capsys.readouterr().out
