"""mask_nms: IoU duplicates and nested duplicates go, parts and neighbours stay."""

from __future__ import annotations

import numpy as np
import pytest

from composeseg.pipelines.mask_nms import mask_nms, mask_overlaps

H, W = 60, 80


def _rect(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y0:y1, x0:x1] = True
    return mask


CAR = _rect(10, 10, 60, 40)  # 50 x 30 = 1500 px
CASES = {
    # name: (masks, scores, expected kept indices, best first)
    "identical: the better stays": ([CAR, CAR], [0.4, 0.9], [1]),
    "identical, first better": ([CAR, CAR], [0.9, 0.4], [0]),
    "near copy (IoU > 0.7)": ([CAR, _rect(12, 10, 60, 40)], [0.5, 0.8], [1]),
    # 40 x 30 inside 50 x 30: IoU 0.8 as well, but a plain nest: ratio 0.8, containment 1
    "nested duplicate": ([CAR, _rect(15, 10, 55, 40)], [0.9, 0.6], [0]),
    # 30 x 30 inside: IoU 0.6 < 0.7, containment 1, ratio 0.6 >= 0.5 -> a duplicate
    "nested below the IoU threshold": ([CAR, _rect(20, 10, 50, 40)], [0.3, 0.6], [1]),
    # a wheel: 10 x 10 in the car, ratio 0.067 -> a part, kept
    "small part survives": ([CAR, _rect(15, 30, 25, 40)], [0.9, 0.8], [0, 1]),
    "small part scored higher survives": ([CAR, _rect(15, 30, 25, 40)], [0.1, 0.8], [1, 0]),
    # 20 x 30 half inside (containment 0.5): neither nested nor overlapping enough
    "half overlap": ([CAR, _rect(50, 10, 70, 40)], [0.9, 0.8], [0, 1]),
    "disjoint, ordered by score": (
        [_rect(0, 0, 10, 10), _rect(20, 0, 30, 10), _rect(40, 0, 50, 10)],
        [0.2, 0.9, 0.5],
        [1, 2, 0],
    ),
    "equal scores keep input order": ([_rect(0, 0, 5, 5), _rect(10, 0, 15, 5)], [0.5, 0.5], [0, 1]),
    # a chain: 0 suppresses 1, so 1 cannot suppress 2
    "suppressed masks suppress nothing": (
        [_rect(0, 0, 30, 30), _rect(3, 0, 33, 30), _rect(6, 0, 36, 30)],
        [0.9, 0.8, 0.7],
        [0, 2],
    ),
    "empty mask never suppresses": ([np.zeros((H, W), bool), CAR], [0.9, 0.1], [0, 1]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_mask_nms_cases(name: str) -> None:
    masks, scores, expected = CASES[name]
    keep = mask_nms(np.stack(masks), np.asarray(scores, np.float32))
    assert keep.dtype == np.int64
    assert keep.tolist() == expected


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, [0]),  # 30 x 30 in 50 x 30: nested duplicate at the defaults
        ({"min_area_ratio": 0.7}, [0, 1]),  # ratio 0.6 now counts as a part
        ({"containment_threshold": 1.0}, [0]),  # containment is exactly 1
        ({"iou_threshold": 0.5, "containment_threshold": 1.0, "min_area_ratio": 1.0}, [0]),
        ({"iou_threshold": 1.0, "containment_threshold": 1.0, "min_area_ratio": 1.0}, [0, 1]),
    ],
)
def test_thresholds(kwargs: dict, expected: list[int]) -> None:
    masks = np.stack([CAR, _rect(20, 10, 50, 40)])
    assert mask_nms(masks, np.array([0.9, 0.5]), **kwargs).tolist() == expected


def test_overlaps_are_exact_on_small_masks() -> None:
    iou, containment, ratio = mask_overlaps(
        np.stack([CAR, _rect(20, 10, 50, 40), _rect(0, 0, 5, 5)])
    )
    for matrix in (iou, containment, ratio):
        assert matrix.dtype == np.float32 and matrix.shape == (3, 3)
        np.testing.assert_allclose(matrix, matrix.T)
    assert iou[0, 1] == pytest.approx(900 / 1500)
    assert containment[0, 1] == 1 and ratio[0, 1] == pytest.approx(0.6)
    assert iou[0, 2] == 0 and containment[0, 2] == 0
    np.testing.assert_allclose(np.diag(iou), 1)


def test_large_masks_are_measured_on_a_subsample() -> None:
    big = np.zeros((2, 1024, 1024), bool)
    big[0, 100:700, 100:700] = True
    big[1, 100:700, 100:400] = True  # half of it
    iou, containment, ratio = mask_overlaps(big)
    assert iou[0, 1] == pytest.approx(0.5, abs=0.01)
    assert containment[0, 1] == pytest.approx(1.0, abs=0.01)
    assert ratio[0, 1] == pytest.approx(0.5, abs=0.01)


def test_empty_input() -> None:
    keep = mask_nms(np.zeros((0, H, W), bool), np.zeros(0, np.float32))
    assert keep.shape == (0,) and keep.dtype == np.int64
    iou, containment, ratio = mask_overlaps(np.zeros((0, H, W), bool))
    assert iou.shape == containment.shape == ratio.shape == (0, 0)


def test_inputs_are_not_modified() -> None:
    masks = np.stack([CAR, CAR])
    scores = np.array([0.2, 0.8])
    mask_nms(masks, scores)
    assert masks.all(axis=0).sum() == CAR.sum() and scores.tolist() == [0.2, 0.8]


@pytest.mark.parametrize(
    ("masks", "scores", "message"),
    [
        (np.stack([CAR, CAR]), np.array([0.5, np.nan]), "NaN"),
        (np.stack([CAR, CAR]), np.array([0.5]), "disagree"),
        (np.stack([CAR, CAR]), np.array([0.5, 0.4, 0.3]), "disagree"),
        (CAR, np.array([0.5]), "disagree"),  # one (H, W) mask, not (N, H, W)
    ],
)
def test_bad_input(masks: np.ndarray, scores: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mask_nms(masks, scores)
