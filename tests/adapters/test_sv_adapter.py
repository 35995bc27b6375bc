"""supervision.Detections -> Prompts, with real Detections objects."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from composeseg.adapters import from_detections


def detections() -> sv.Detections:
    mask = np.zeros((2, 40, 60), bool)
    mask[0, 5:15, 5:25] = True
    mask[1, 20:35, 30:55] = True
    return sv.Detections(
        xyxy=np.array([[5, 5, 25, 15], [30, 20, 55, 35]], np.float32),
        mask=mask,
        confidence=np.array([0.4, 0.9], np.float32),
        class_id=np.array([2, 7]),
        tracker_id=np.array([11, 12]),
        data={"class_name": np.array(["cup", "bowl"])},
    )


def test_columns_carry_through_sorted_by_score() -> None:
    p = from_detections(detections())
    assert p.class_id.tolist() == [7, 2]
    assert p.tracker_id.tolist() == [12, 11]
    assert p.data["class_name"].tolist() == ["bowl", "cup"]
    np.testing.assert_allclose(p.confidence, [0.9, 0.4])


def test_mask_points_and_filters() -> None:
    d = detections()
    p = from_detections(d, points="mask", classes=["cup"])
    x, y = p.points[0, 0]
    assert d.mask[0][int(y), int(x)]
    assert len(from_detections(d, min_score=0.95)) == 0


def test_empty_and_bad() -> None:
    assert len(from_detections(sv.Detections.empty())) == 0
    bad = sv.Detections(
        xyxy=np.array([[0, 0, 5, 5]], np.float32), confidence=np.array([np.nan], np.float32)
    )
    with pytest.raises(ValueError, match="nan"):
        from_detections(bad)
    with pytest.raises(ValueError, match="outside"):
        from_detections(
            sv.Detections(xyxy=np.array([[70, 0, 80, 5]], np.float32)), image_size=(40, 60)
        )
    with pytest.raises(TypeError):
        from_detections([[0, 0, 5, 5]])
