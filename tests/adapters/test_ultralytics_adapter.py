"""ultralytics Results (detect, segment, OBB, track) and a YOLO built offline from its yaml."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")  # before ultralytics is imported: no DNS look-ups
import torch
import ultralytics.engine.results as results_module

from composeseg.adapters import UltralyticsDetector, from_ultralytics

NAMES = {0: "person", 1: "car", 2: "dog"}
IMAGE = np.zeros((60, 80, 3), np.uint8)


def result(**kwargs: object) -> object:
    return results_module.Results(IMAGE, path="x.jpg", names=NAMES, **kwargs)


def test_detect_result() -> None:
    boxes = torch.tensor([[10, 10, 40, 30, 0.5, 1], [50, 40, 70, 50, 0.9, 2]])
    p = from_ultralytics(result(boxes=boxes))
    np.testing.assert_allclose(p.boxes, [[50, 40, 70, 50], [10, 10, 40, 30]])
    assert p.class_id.tolist() == [2, 1]
    assert p.data["class_name"].tolist() == ["dog", "car"]
    assert p.tracker_id is None
    assert from_ultralytics(result(boxes=boxes), classes=["car"]).class_id.tolist() == [1]
    with pytest.raises(ValueError, match="unknown class name 'cat'"):
        from_ultralytics(result(boxes=boxes), classes=["cat"])


def test_tracking_ids() -> None:
    boxes = torch.tensor([[10, 10, 40, 30, 7, 0.8, 0], [50, 40, 70, 50, 3, 0.6, 0]])
    p = from_ultralytics(result(boxes=boxes))
    assert p.tracker_id.tolist() == [7, 3]


def test_segment_result_mask_points() -> None:
    masks = torch.zeros(1, 60, 80)
    masks[0, 10:30, 10:20] = 1  # the left part of the box only
    boxes = torch.tensor([[10, 10, 40, 30, 0.9, 0]])
    p = from_ultralytics(result(boxes=boxes, masks=masks), points="mask")
    x, y = p.points[0, 0]
    assert 10 <= x <= 20 and 10 <= y <= 30
    # masks in a smaller (letterboxed) frame are read from their polygons in original pixels
    small = torch.zeros(1, 30, 40)
    small[0, 5:15, 5:10] = 1
    p = from_ultralytics(result(boxes=boxes, masks=small), points="mask")
    x, y = p.points[0, 0]
    assert 8 <= x <= 22 and 8 <= y <= 32


def test_obb_becomes_axis_aligned() -> None:
    obb = torch.tensor([[40, 30, 20, 10, float(np.pi / 2), 0.9, 1]])  # rotated 90 degrees
    p = from_ultralytics(result(obb=obb))
    np.testing.assert_allclose(p.boxes, [[35, 20, 45, 40]], atol=1e-3)
    assert p.class_id.tolist() == [1]


def test_empty_and_bad_results() -> None:
    assert len(from_ultralytics(result(boxes=torch.zeros(0, 6)))) == 0
    assert len(from_ultralytics(result())) == 0  # no boxes at all (e.g. classification)
    nan = torch.tensor([[10, 10, 40, 30, float("nan"), 0]])
    with pytest.raises(ValueError, match="nan"):
        from_ultralytics(result(boxes=nan))
    outside = torch.tensor([[100, 70, 120, 90, 0.9, 0]])
    with pytest.raises(ValueError, match="outside the 80x60 image"):
        from_ultralytics(result(boxes=outside))
    with pytest.raises(TypeError):
        from_ultralytics({"boxes": []})


def test_detector_from_yaml_runs_offline() -> None:
    detector = UltralyticsDetector("yolo11n.yaml", imgsz=64, device="cpu", conf=0.5)
    assert len(detector.names) == 80
    prompts = detector(np.full((48, 64, 3), 127, np.uint8))  # random weights: no boxes
    assert len(prompts) == 0
    with pytest.raises(FileNotFoundError):
        UltralyticsDetector("missing-weights.pt")
