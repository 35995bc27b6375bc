"""Pieces of the video pipeline: the simulated detector, logit shifts, session pruning."""

from __future__ import annotations

import numpy as np
import pytest

from composeseg.pipelines.video_sim import SimulatedDetector, SimulatedDetectorConfig
from composeseg.pipelines.video_tracks import match, resolve_overlaps, shift_logits
from composeseg.synthetic import VideoConfig, generate_video

VIDEO = generate_video(4, VideoConfig(height=48, width=64, n_frames=30, min_objects=3))


def _run(config, seed=0):
    detector = SimulatedDetector(VIDEO.iter_frames(), config, seed=seed)
    return [detector(image) for image in VIDEO.frames]


def test_simulated_detector_is_deterministic_and_misses_at_its_rate():
    first, again = (
        _run(SimulatedDetectorConfig(miss_rate=0.3)),
        _run(SimulatedDetectorConfig(miss_rate=0.3)),
    )
    assert all(np.array_equal(a.boxes, b.boxes) for a, b in zip(first, again, strict=True))
    truth = sum(sum(t.visible_fraction >= 0.2 for t in frame) for frame in VIDEO.tracks)
    found = sum(len(p) for p in first)
    assert 0.55 * truth < found < 0.85 * truth
    exact = _run(SimulatedDetectorConfig(miss_rate=0.0, jitter=0.0))
    boxes = exact[0].boxes
    assert boxes is not None and np.allclose(
        boxes, VIDEO.iter_frames().__next__().boxes()[: len(boxes)]
    )


def test_simulated_detector_refuses_to_run_past_the_video():
    detector = SimulatedDetector(VIDEO.iter_frames())
    for image in VIDEO.frames:
        detector(image)
    with pytest.raises(ValueError, match="only 30 frames"):
        detector(VIDEO.frames[0])
    with pytest.raises(ValueError, match="miss_rate"):
        SimulatedDetectorConfig(miss_rate=2)


@pytest.mark.parametrize(
    ("dy", "dx", "row", "col"),
    [(0, 0, 2, 3), (1, 0, 3, 3), (0, -2, 2, 1), (1.4, 1.6, 3, 5)],
)
def test_shift_logits_moves_the_peak(dy, dx, row, col):
    logits = np.full((8, 8), -5.0, np.float32)
    logits[2, 3] = 7.0
    shifted = shift_logits(logits, dy, dx)
    assert np.unravel_index(np.argmax(shifted), shifted.shape) == (row, col)
    assert shifted.shape == logits.shape


def test_match_keeps_pairs_above_threshold():
    similarity = np.array([[0.9, 0.2], [0.1, 0.3]])
    assert match(similarity, 0.5) == [(0, 0)]
    assert match(np.zeros((0, 3)), 0.5) == []


def _square(lo: int, hi: int, inside: float = 5.0) -> np.ndarray:
    logits = np.full((8, 8), -5.0, np.float32)
    logits[lo:hi, lo:hi] = inside
    return logits


def test_resolve_overlaps_gives_each_pixel_to_one_object():
    # two objects claim the centre 2x2 equally; the one whose previous mask covered it wins
    logits = np.stack([_square(1, 5), _square(3, 7)])
    priors = np.stack([_square(1, 5, inside=8.0), np.full((8, 8), np.nan, np.float32)])
    out = resolve_overlaps(logits, priors, np.array([True, True]))
    fg = out > 0
    assert not (fg[0] & fg[1]).any()
    assert fg[0][3:5, 3:5].all() and fg[0].sum() == 16 and fg[1].sum() == 16 - 4
    # without history the stronger current logit wins; inactive rows neither win nor lose
    stronger = np.stack([_square(1, 5), _square(3, 7, inside=9.0)])
    assert (resolve_overlaps(stronger, None, np.array([True, True]))[1] > 0).sum() == 16
    assert resolve_overlaps(stronger, None, np.array([True, False])) is stronger
