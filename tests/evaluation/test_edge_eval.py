"""edge_f_measure (BSDS ODS / OIS / AP / R50 via pyEdgeEval's matcher) on hand-made maps."""

from __future__ import annotations

import numpy as np
import pytest

from composeseg.evaluation.edges import edge_f_measure, recall_at_precision

SIZE = 100  # diagonal 141 px: tolerance 0.0075 * 141 = 1.06 px


def square_outline(lo: int = 20, hi: int = 79) -> np.ndarray:
    gt = np.zeros((SIZE, SIZE), bool)
    gt[lo, lo : hi + 1] = gt[hi, lo : hi + 1] = True
    gt[lo : hi + 1, lo] = gt[lo : hi + 1, hi] = True
    return gt


GT = square_outline()


def with_noise(edges: np.ndarray, count: int) -> np.ndarray:
    """Add ``count`` isolated false pixels far from the outline (at strength 1)."""
    out = edges.astype(np.float32).copy()
    ys, xs = np.meshgrid(np.arange(40, 60, 2), np.arange(40, 60, 2), indexing="ij")
    out[ys.ravel()[:count], xs.ravel()[:count]] = 1.0
    return out


TOP_HALF = GT.copy()
TOP_HALF[50:] = False
N_GT = int(GT.sum())

CASES = {
    "perfect": (GT.astype(np.float32), dict(ods=1.0, ois=1.0, r50=1.0)),
    "one pixel off (inside tolerance)": (np.roll(GT, 1, axis=1).astype(np.float32), dict(ods=1.0)),
    "three pixels inside": (square_outline(23, 76).astype(np.float32), dict(ods=0.0, r50=0.0)),
    # recall = (60 + 2 * 30) / 236, precision 1
    "top half": (TOP_HALF.astype(np.float32), dict(ods=2 * (120 / N_GT) / (1 + 120 / N_GT))),
    "nothing": (np.zeros((SIZE, SIZE), np.float32), dict(ods=0.0, ois=0.0, ap=0.0)),
}


@pytest.mark.parametrize(("edges", "expected"), CASES.values(), ids=CASES.keys())
def test_hand_made_cases(edges: np.ndarray, expected: dict) -> None:
    # thin=False: thinning would drop the outline's 4 corner pixels (8-connected redundant)
    metrics = edge_f_measure([edges], [GT], thresholds=9, thin=False)
    for key, value in expected.items():
        # the BSDS matcher is approximate by design (it may leave a pixel or two unmatched)
        assert getattr(metrics, key) == pytest.approx(value, abs=0.01), key


def test_weak_false_edges_are_thresholded_away() -> None:
    # 100 false pixels at strength 0.3: above 0.3 precision is 1, below it 236 / 336
    edges = GT.astype(np.float32)
    noise = with_noise(np.zeros_like(edges), 100) * 0.3
    metrics = edge_f_measure([np.maximum(edges, noise)], [GT], thresholds=9, thin=False)
    assert metrics.ods == pytest.approx(1.0, abs=0.01)  # BSDS matcher: near-exact
    assert metrics.precision[0] == pytest.approx(N_GT / (N_GT + 100), abs=0.01)


def test_ods_vs_ois_with_per_image_best_thresholds() -> None:
    # image A's edges are weak (0.2), image B's strong; one shared threshold can't catch both
    # without B's noise at 0.5, per-image thresholds can
    a = GT * np.float32(0.2)
    b = np.maximum(GT.astype(np.float32), with_noise(np.zeros((SIZE, SIZE)), 100) * 0.5)
    metrics = edge_f_measure([a, b], [GT, GT], thresholds=9, thin=False)
    assert metrics.ois == pytest.approx(1.0, abs=0.01)
    # best shared threshold (< 0.2): A whole, B with its noise: P = 472 / 572, R = 1
    assert metrics.ods == pytest.approx(2 * (472 / 572) / (1 + 472 / 572), abs=0.01)


def test_several_annotators_and_bad_input() -> None:
    metrics = edge_f_measure(
        [GT.astype(np.float32)], [[GT, square_outline(23, 76)]], thresholds=3, thin=False
    )
    # all of one annotator's 236 pixels, none of the other's 212. With several annotators the
    # BSDS matcher's random sparse graph (its C++ seeds from the clock; no API to fix the seed)
    # leaves 0-4 pixels unmatched (400 runs: 0 px 58 %, 1 px 32 %, 2 px 8 %, 3 px 2 %, 4 px 0.5 %),
    # hence tolerances of ~7 pixels; a wrong combination of annotators would miss by ~0.5.
    expected = N_GT / (N_GT + int(square_outline(23, 76).sum()))
    assert metrics.recall[0] == pytest.approx(expected, abs=0.015)
    assert metrics.precision[0] == pytest.approx(1.0, abs=0.03)  # each pixel matches some annotator
    with pytest.raises(ValueError, match="shape"):
        edge_f_measure([np.zeros((10, 10))], [GT])
    with pytest.raises(ValueError, match="increasing"):
        edge_f_measure([GT], [GT], thresholds=[0.5, 0.2])


def test_thinning_turns_a_thick_outline_into_a_precise_one() -> None:
    import cv2

    thick = cv2.dilate(GT.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)
    loose = edge_f_measure([thick], [GT], thresholds=3, thin=False)
    thinned = edge_f_measure([thick], [GT], thresholds=3, thin=True)
    assert loose.precision[0] < 0.5
    assert thinned.precision[0] > 0.95 and thinned.recall[0] > 0.95


def test_recall_at_precision_interpolates() -> None:
    recall = np.array([1.0, 0.6, 0.2])
    precision = np.array([0.3, 0.7, 0.9])
    assert recall_at_precision(recall, precision, 0.5) == pytest.approx(0.8)
    assert recall_at_precision(recall, precision, 0.95) == 0.0
