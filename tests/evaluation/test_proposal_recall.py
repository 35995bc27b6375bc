"""proposal_recall: class-agnostic mask AR through pycocotools on hand-made cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import supervision as sv

from composeseg.evaluation.proposals import proposal_recall
from composeseg.rle import encode_mask as mask_to_rle

H, W = 200, 200


def box_mask(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y0:y1, x0:x1] = True
    return mask


# a large object (category 1) and a small one (category 7): recall must ignore categories
OBJECTS = [box_mask(20, 20, 140, 140), box_mask(160, 160, 180, 180)]


def ground_truth() -> dict:
    annotations = [
        {
            "id": i + 1,
            "image_id": 1,
            "category_id": category,
            "segmentation": mask_to_rle(mask),
            "area": int(mask.sum()),
            "bbox": [float(v) for v in sv.mask_to_xyxy(mask[None])[0]],
            "iscrowd": 0,
        }
        for i, (mask, category) in enumerate(zip(OBJECTS, (1, 7), strict=True))
    ]
    return {
        "images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "a"}, {"id": 7, "name": "b"}],
    }


def detections(masks: list[np.ndarray], scores: list[float] | None = None) -> sv.Detections:
    stack = np.stack(masks) if masks else np.zeros((0, H, W), bool)
    return sv.Detections(
        xyxy=sv.mask_to_xyxy(stack).astype(np.float32) if masks else np.zeros((0, 4), np.float32),
        mask=stack,
        confidence=np.array(scores if scores else [1.0] * len(masks), np.float32),
    )


# IoU of box_mask(20, 20, 140, 134) with the large object: 114/120 = 0.95 -> matched at every
# threshold but 0.95 where IoU >= 0.95 holds exactly (0.95 itself counts)
CASES = {
    "perfect": ([*OBJECTS], None, dict(ar_10=1.0, ar_100=1.0, ar_1000=1.0, ar_large=1.0)),
    "large only": ([OBJECTS[0]], None, dict(ar_10=0.5, ar_large=1.0, ar_small=0.0)),
    "IoU 0.62 on large": (
        [box_mask(20, 20, 140, 94), OBJECTS[1]],  # 74/120 = 0.617 -> thresholds .50 .55 .60
        None,
        dict(ar_1000=(0.3 + 1.0) / 2, ar_large=0.3, ar_small=1.0),
    ),
    "none": ([], None, dict(ar_10=0.0, ar_1000=0.0)),
}


@pytest.mark.parametrize(("masks", "scores", "expected"), CASES.values(), ids=CASES.keys())
def test_recall_cases(masks: list, scores: list | None, expected: dict) -> None:
    metrics = proposal_recall({1: detections(masks, scores)}, ground_truth())
    for key, value in expected.items():
        assert getattr(metrics, key) == pytest.approx(value, abs=1e-6), key
    assert metrics.ar_medium == -1.0  # no medium object in the ground truth


def test_max_dets_cut_lower_ranked_proposals() -> None:
    clutter = [box_mask(0, 0, 5 + i, 5) for i in range(10)]
    masks = [*clutter, OBJECTS[0]]
    scores = [0.9] * 10 + [0.1]  # the good proposal is ranked 11th
    metrics = proposal_recall({1: detections(masks, scores)}, ground_truth())
    assert metrics.ar_10 == 0.0 and metrics.ar_100 == pytest.approx(0.5)


def test_results_file_and_rle_detections(tmp_path: Path) -> None:
    results = [
        {"image_id": 1, "segmentation": mask_to_rle(m), "score": 1.0, "category_id": 3}
        for m in OBJECTS
    ]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(ground_truth()))
    assert proposal_recall(path, gt_path).ar_100 == pytest.approx(1.0)
    rle_only = sv.Detections(
        xyxy=np.zeros((1, 4), np.float32),
        data={"rle": np.array([mask_to_rle(OBJECTS[1])], dtype=object)},
    )
    assert proposal_recall({1: rle_only}, ground_truth()).ar_small == pytest.approx(1.0)


def test_unknown_image_raises() -> None:
    with pytest.raises(ValueError, match="absent from the ground truth"):
        proposal_recall({5: detections([OBJECTS[0]])}, ground_truth())
