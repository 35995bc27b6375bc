"""evaluate_instances and `composeseg eval instances` on generated COCO scenes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from composeseg.adapters import CocoBoxes
from composeseg.evaluation import evaluate_instances
from composeseg.pipelines import InstanceSegmentation
from composeseg.pipelines.cli import main


@pytest.fixture(scope="module")
def coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from composeseg.synthetic import SceneConfig, generate_scenes, write_coco

    out = tmp_path_factory.mktemp("scenes")
    config = SceneConfig(height=64, width=96, min_objects=2, max_objects=4)
    return write_coco(generate_scenes(range(2), config), out)


def test_ground_truth_scores_perfectly(coco: Path, tmp_path: Path) -> None:
    gt = json.loads(coco.read_text())
    perfect = [{**a, "score": 1.0} for a in gt["annotations"]]
    metrics = evaluate_instances(perfect, coco, out_dir=tmp_path)
    assert metrics.ap == pytest.approx(1.0) and metrics.ap50 == pytest.approx(1.0)
    assert metrics.num_predictions == len(perfect)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["ap"] == pytest.approx(1.0)
    assert len(json.loads((tmp_path / "predictions.json").read_text())) == len(perfect)
    # shifted category ids score nothing; names, when given, override ids
    wrong = [{**a, "category_id": a["category_id"] % 10 + 1} for a in perfect]
    assert evaluate_instances(wrong, coco).ap == 0.0
    names = {c["id"]: c["name"] for c in gt["categories"]}
    named = [
        {**w, "class_name": names[a["category_id"]]} for w, a in zip(wrong, perfect, strict=True)
    ]
    assert evaluate_instances(named, coco).ap == pytest.approx(1.0)


def test_no_predictions_and_bad_input(coco: Path) -> None:
    assert evaluate_instances([], coco).ap == 0.0
    with pytest.raises(ValueError, match="has no mask"):
        evaluate_instances(
            [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 1.0}], coco
        )
    with pytest.raises(ValueError, match="iou_type"):
        evaluate_instances([], coco, iou_type="keypoints")


def test_pipeline_with_oracle_boxes(tiny_sam, coco: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pipe = InstanceSegmentation(tiny_sam, CocoBoxes(coco), refine=False)
    metrics = evaluate_instances(
        pipe, coco, coco.parent / "images", progress=False, out_dir=tmp_path
    )
    assert 0.0 <= metrics.ap <= 1.0 and metrics.num_images == 2
    assert metrics.num_predictions == len(json.loads(coco.read_text())["annotations"])
    assert "| AP | AP50 |" in metrics.table()
    with pytest.raises(ValueError, match="image_dir"):
        evaluate_instances(pipe, coco)
    # the saved predictions can be scored again without the model
    again = evaluate_instances(tmp_path / "predictions.json", coco)
    assert again.ap == pytest.approx(metrics.ap)


def test_cli_eval_and_segment_directory(
    tiny_sam_dir: Path, coco: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = coco.parent / "images"
    out = tmp_path / "seg"
    args = [
        "segment",
        str(images),
        "--detector",
        str(coco),
        "--sam",
        str(tiny_sam_dir),
        "--device",
        "cpu",
        "--no-refine",
        "-o",
        str(out),
    ]
    assert main(args) == 0
    assert (out / "predictions.json").is_file()
    names = sorted(p.name for p in images.iterdir())
    assert all((out / "records" / f"{n}.json").is_file() for n in names)
    capsys.readouterr()
    assert main(args) == 0  # resume: nothing recomputed
    assert f"0 done, {len(names)} done before" in capsys.readouterr().out

    assert (
        main(
            [
                "eval",
                "instances",
                "--gt",
                str(coco),
                "--detections",
                str(out / "predictions.json"),
                "-o",
                str(tmp_path / "ev"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "| AP |" in printed
    assert (tmp_path / "ev" / "metrics.json").is_file()
    assert (
        main(
            [
                "eval",
                "instances",
                "--gt",
                str(coco),
                "--images",
                str(images),
                "--detector",
                str(coco),
                "--sam",
                str(tiny_sam_dir),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert main(["eval", "instances", "--gt", str(coco)]) == 2  # needs a source
    assert main(["segment", str(images), "-o", str(out)]) == 2  # a directory needs --detector


def test_simulated_detector_degrades_ground_truth_as_asked() -> None:
    from composeseg.evaluation import simulated_detections

    gt = {
        "images": [{"id": 1, "width": 100, "height": 80}],
        "annotations": [
            {"id": i, "image_id": 1, "category_id": 2, "bbox": [10.0 + i % 50, 20.0, 30.0, 20.0]}
            for i in range(200)
        ],
    }
    exact = simulated_detections(gt, jitter=0.0, drop=0.0)
    assert [d["bbox"] for d in exact] == [a["bbox"] for a in gt["annotations"]]
    assert all(d["score"] == 1.0 and d["category_id"] == 2 for d in exact)
    noisy = simulated_detections(gt, jitter=0.1, drop=0.5, seed=3)
    assert 60 < len(noisy) < 140  # about half dropped
    assert all(0.0 < d["score"] < 1.0 for d in noisy)
    assert all(d["bbox"][0] >= 0 and d["bbox"][0] + d["bbox"][2] <= 100 for d in noisy)
    with pytest.raises(ValueError, match="drop"):
        simulated_detections(gt, jitter=0.1, drop=1.5)
