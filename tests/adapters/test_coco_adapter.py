"""COCO dataset boxes (oracle prompts) and COCO results files as prompts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from composeseg.adapters import CocoBoxes

DATASET = {
    "images": [
        {"id": 3, "file_name": "sub/a.png", "height": 40, "width": 50},
        {"id": 4, "file_name": "b.png", "height": 40, "width": 50},
    ],
    "annotations": [
        {
            "id": 1,
            "image_id": 3,
            "category_id": 1,
            "bbox": [5, 5, 10, 20],
            "iscrowd": 0,
            "segmentation": [[5, 5, 15, 5, 15, 25, 5, 25]],
            "area": 200,
        },
        {"id": 2, "image_id": 3, "category_id": 2, "bbox": [20, 10, 10, 10], "iscrowd": 0},
        {"id": 3, "image_id": 3, "category_id": 2, "bbox": [0, 0, 50, 40], "iscrowd": 1},
    ],
    "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
}


def test_ground_truth_boxes_as_prompts(tmp_path: Path) -> None:
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(DATASET))
    coco = CocoBoxes(path)
    p = coco.prompts("a.png")  # basename lookup
    np.testing.assert_allclose(p.boxes, [[5, 5, 15, 25], [20, 10, 30, 20]])
    assert p.data["class_name"].tolist() == ["cat", "dog"]  # crowd skipped
    np.testing.assert_allclose(p.confidence, [1, 1])
    assert len(coco.prompts(4)) == 0
    assert coco.detect_file(tmp_path / "sub" / "a.png").class_id.tolist() == [1, 2]
    assert coco.image_paths(tmp_path)[0] == tmp_path / "sub" / "a.png"
    masked = CocoBoxes(DATASET, points="mask", classes=["cat"]).prompts(3)
    x, y = masked.points[0, 0]
    assert 5 <= x <= 15 and 5 <= y <= 25


def test_results_list_needs_dataset() -> None:
    results = [
        {"image_id": 4, "category_id": 2, "bbox": [1, 1, 5, 5], "score": 0.7},
        {"image_id": 4, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.1},
    ]
    p = CocoBoxes(results, dataset=DATASET, min_score=0.5).prompts("b.png")
    assert p.class_id.tolist() == [2]
    np.testing.assert_allclose(p.confidence, [0.7])
    with pytest.raises(ValueError, match="needs dataset"):
        CocoBoxes(results)


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ([{"image_id": 99, "bbox": [0, 0, 1, 1], "category_id": 1}], "image_id 99"),
        ([{"bbox": [0, 0, 1, 1]}], "no valid image_id"),
        ([{"image_id": 3, "bbox": [100, 100, 5, 5], "category_id": 1}], "outside"),
        (
            [{"image_id": 3, "bbox": [1, 1, 5, 5], "category_id": 1, "score": float("nan")}],
            "not finite",
        ),
    ],
)
def test_bad_records(annotations: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CocoBoxes(annotations, dataset=DATASET).prompts(3)


def test_unknown_image_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'zzz.png' is not in"):
        CocoBoxes(DATASET).prompts("zzz.png")
    with pytest.raises(FileNotFoundError):
        CocoBoxes(tmp_path / "missing.json")
    with pytest.raises(TypeError, match="file name"):
        CocoBoxes(DATASET)(np.zeros((4, 4, 3), np.uint8))
