"""Tracking metrics through the trackers package's evaluators, plus mask IoU and flicker."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from composeseg.evaluation.tracking import TrackingEvaluator, evaluate_mot_files, evaluate_tracking
from composeseg.pipelines.video_out import ResultsWriter
from composeseg.synthetic import VideoConfig, generate_video

VIDEO = generate_video(3, VideoConfig(height=48, width=64, n_frames=12))


def _truth_as_predictions(relabel=None, erode=False):
    for t, frame in enumerate(VIDEO.iter_frames()):
        ids = frame.track_ids() + 100
        if relabel is not None:
            ids = relabel(t, ids)
        masks = frame.masks()
        if erode and t % 2:
            masks = masks.copy()
            masks[:, :, ::2] = False  # every other frame loses half its pixels: flicker
        yield sv.Detections(xyxy=frame.boxes(), mask=masks, tracker_id=ids)


def test_perfect_tracking_scores_one():
    metrics = evaluate_tracking(_truth_as_predictions(), VIDEO.iter_frames())
    assert (metrics.HOTA, metrics.MOTA, metrics.IDF1, metrics.mask_iou) == (1.0, 1.0, 1.0, 1.0)
    assert metrics.IDSW == 0 and metrics.mask_flicker == 0.0
    assert metrics.gt_tracks == metrics.pred_tracks == len(VIDEO.track_ids())


def test_an_id_swap_is_counted():
    def swap(t, ids):
        return ids + 50 if t >= 6 else ids  # every object gets a new id halfway

    metrics = evaluate_tracking(_truth_as_predictions(swap), VIDEO.iter_frames())
    present = {i for inst in VIDEO.tracks[5] for i in [inst.track_id]}
    later = {i for inst in VIDEO.tracks[6] for i in [inst.track_id]}
    assert metrics.IDSW == len(present & later) > 0
    assert metrics.IDF1 < 1.0 and metrics.mask_iou == 1.0


def test_flicker_is_measured():
    metrics = evaluate_tracking(_truth_as_predictions(erode=True), VIDEO.iter_frames())
    assert 0.3 < metrics.mask_flicker < 0.7
    assert metrics.mask_iou < 1.0


def test_length_mismatch_and_bad_threshold():
    with pytest.raises(ValueError, match="predictions end at frame 12"):
        evaluate_tracking(
            _truth_as_predictions(), [*VIDEO.iter_frames(), VIDEO.iter_frames().__next__()]
        )
    with pytest.raises(ValueError, match="threshold"):
        TrackingEvaluator(threshold=0)


def test_sequences_do_not_share_ids():
    evaluator = TrackingEvaluator()
    for _ in range(2):
        evaluator.new_sequence()
        for truth, pred in zip(VIDEO.iter_frames(), _truth_as_predictions(), strict=True):
            evaluator.add(truth, pred)
    metrics = evaluator.compute()
    assert metrics.IDSW == 0 and metrics.gt_tracks == 2 * len(VIDEO.track_ids())


def test_mot_files_match_in_memory_box_metrics(tmp_path):
    def write(path, detections):
        with ResultsWriter(mot_path=path) as out:
            for t, det in enumerate(detections):
                det.class_id = np.ones(len(det), int)  # MOTChallenge scores class 1
                det.confidence = np.ones(len(det))
                out.write(t, det, (48, 64))

    def swap(t, ids):
        return ids + 50 if t >= 6 else ids

    write(tmp_path / "gt.txt", _truth_as_predictions())
    write(tmp_path / "pred.txt", _truth_as_predictions(swap))
    from_files = evaluate_mot_files(tmp_path / "gt.txt", tmp_path / "pred.txt")
    in_memory = evaluate_tracking(
        _truth_as_predictions(swap), _truth_as_predictions(), use_masks=False
    )
    assert from_files.IDSW == in_memory.IDSW > 0
    assert pytest.approx(in_memory.IDF1, abs=1e-6) == from_files.IDF1
    assert np.isnan(from_files.mask_iou)
