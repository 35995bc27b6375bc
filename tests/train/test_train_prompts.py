"""Prompt simulation: noisy boxes within bounds, points inside masks, corrective points."""

from __future__ import annotations

import numpy as np
import pytest

from composeseg.train.prompts import (
    PADDING_LABEL,
    error_points,
    mask_boxes,
    noisy_boxes,
    random_points,
)


def _square(size: int = 64, y0: int = 10, x0: int = 20, side: int = 30) -> np.ndarray:
    mask = np.zeros((1, size, size), bool)
    mask[0, y0 : y0 + side, x0 : x0 + side] = True
    return mask


def test_mask_boxes_are_tight_with_exclusive_max() -> None:
    assert mask_boxes(_square()).tolist() == [[20.0, 10.0, 50.0, 40.0]]
    with pytest.raises(ValueError, match=r"masks\[0\] is empty"):
        mask_boxes(np.zeros((1, 4, 4), bool))


def test_noisy_boxes_stay_within_the_noise_cap_and_vary() -> None:
    masks = np.repeat(_square(128, 40, 40, 50), 500, axis=0)
    boxes = noisy_boxes(masks, np.random.default_rng(0), noise_std=0.1, noise_max=3.0)
    delta = boxes - np.array([40, 40, 90, 90], np.float32)
    assert np.abs(delta).max() <= 3.0 + 1e-5
    assert delta.std() > 1.0  # std would be 5 px uncapped, capped at 3 px
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


def test_noisy_boxes_are_clipped_to_the_frame() -> None:
    masks = np.ones((200, 16, 16), bool)
    boxes = noisy_boxes(masks, np.random.default_rng(1), noise_std=0.5, noise_max=10.0)
    assert boxes.min() >= 0 and boxes.max() <= 16


def test_random_points_fall_inside_their_masks() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((50, 32, 32)) < 0.05
    masks[:, 0, 0] = True
    points = random_points(masks, rng)
    x, y = points[:, 0].astype(int), points[:, 1].astype(int)
    assert masks[np.arange(50), y, x].all()


def test_error_points_label_false_negatives_positive_and_false_positives_negative() -> None:
    target = _square(32, 8, 8, 8)
    missed, labels = error_points(np.zeros_like(target), target, np.random.default_rng(0))
    assert labels.tolist() == [1]
    assert target[0, int(missed[0, 1]), int(missed[0, 0])]
    spill = np.ones_like(target)
    extra, labels = error_points(spill, target, np.random.default_rng(0))
    assert labels.tolist() == [0]
    assert not target[0, int(extra[0, 1]), int(extra[0, 0])]


def test_error_points_sample_both_kinds_in_proportion_and_pad_perfect_masks() -> None:
    target = np.zeros((400, 20, 20), bool)
    target[:, :, :10] = True  # left half
    predicted = np.zeros_like(target)
    predicted[:, :, 5:15] = True  # FN: cols 0-4 (100 px), FP: cols 10-14 (100 px)
    points, labels = error_points(predicted, target, np.random.default_rng(0))
    assert 0.4 < labels.mean() < 0.6
    x = points[:, 0]
    assert ((labels == 1) == (x < 5)).all() and (x[labels == 0] >= 10).all()
    _, labels = error_points(target[:2], target[:2], np.random.default_rng(0))
    assert labels.tolist() == [PADDING_LABEL, PADDING_LABEL]


def test_error_points_reject_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="same shape"):
        error_points(np.zeros((1, 4, 4), bool), np.zeros((1, 4, 5), bool), np.random.default_rng())
