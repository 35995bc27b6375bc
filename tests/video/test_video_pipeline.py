"""VideoSegmentation on a tiny random SAM: trackers, inputs, identities, bounded state."""

from __future__ import annotations

import numpy as np
import pytest

from composeseg.pipelines.video import VideoSegmentation
from composeseg.pipelines.video_sim import SimulatedDetector, SimulatedDetectorConfig
from composeseg.prompts import Prompts
from composeseg.synthetic import VideoConfig, iter_video_frames

VIDEO = VideoConfig(height=64, width=80, n_frames=8, min_objects=2, max_objects=3)


class BoxDetector:
    """Returns fixed boxes per call (``None``: nothing this frame); optional tracker ids."""

    def __init__(self, per_frame, ids=None):
        self.per_frame, self.ids, self.calls = per_frame, ids, 0

    def __call__(self, image):
        boxes = self.per_frame[self.calls]
        ids = None if self.ids is None else self.ids[self.calls]
        self.calls += 1
        if boxes is None:
            return Prompts(boxes=np.zeros((0, 4)), tracker_id=None if ids is None else np.zeros(0))
        n = len(boxes)
        return Prompts(
            boxes=boxes,
            confidence=np.full(n, 0.9),
            class_id=np.arange(n),
            tracker_id=ids,
            data={"class_name": np.array([f"c{i}" for i in range(n)])},
        )


def _frames(n, height=48, width=64):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("tracker", ["bytetrack", "sort", "ocsort", "botsort"])
def test_each_tracker_gives_ids_from_the_first_frame(tiny_sam, tracker):
    detector = SimulatedDetector(iter_video_frames(0, VIDEO), SimulatedDetectorConfig(miss_rate=0))
    pipe = VideoSegmentation(tiny_sam, detector, tracker)
    outputs = list(pipe(iter_video_frames(0, VIDEO)))
    assert len(outputs) == VIDEO.n_frames
    first = outputs[0]
    assert len(first) > 0 and (first.tracker_id > 0).all()  # provisional ids, no -1
    assert first.mask.shape[1:] == (64, 80) and first.mask.dtype == bool
    assert set(first.tracker_id) <= set(outputs[1].tracker_id) | set(outputs[2].tracker_id)
    assert {"class_name", "mask_score", "detector_score", "gap_filled"} <= set(first.data)


def test_camera_generator_input(tiny_sam):
    box = np.array([[10, 10, 30, 30]], np.float32)

    def camera():
        yield from _frames(4)

    pipe = VideoSegmentation(tiny_sam, BoxDetector([box] * 4), "bytetrack")
    ids = [d.tracker_id.tolist() for d in pipe(camera())]
    assert ids == [[1], [1], [1], [1]]


def test_zero_detections_give_empty_frames(tiny_sam):
    pipe = VideoSegmentation(tiny_sam, BoxDetector([None] * 3), "bytetrack")
    outputs = list(pipe(_frames(3)))
    assert [len(d) for d in outputs] == [0, 0, 0]
    assert outputs[0].mask.shape == (0, 48, 64)


def test_unconfirmed_drop_waits_for_the_tracker(tiny_sam):
    box = np.array([[10, 10, 30, 30]], np.float32)
    pipe = VideoSegmentation(tiny_sam, BoxDetector([box] * 3), "bytetrack", unconfirmed="drop")
    assert [len(d) for d in pipe(_frames(3))] == [0, 1, 1]


def test_gap_filling_bridges_a_missed_detection(tiny_sam):
    box = np.array([[10, 10, 30, 30]], np.float32)
    detector = BoxDetector([box, box, None, box])
    pipe = VideoSegmentation(tiny_sam, detector, "bytetrack", gap_min_score=-1.0)
    outputs = list(pipe(_frames(4)))
    assert [d.tracker_id.tolist() for d in outputs] == [[1], [1], [1], [1]]
    assert outputs[2].data["gap_filled"].tolist() == [True]
    plain = VideoSegmentation(tiny_sam, BoxDetector([box, box, None, box]), "bytetrack", max_gap=0)
    assert [len(d) for d in plain(_frames(4))] == [1, 1, 0, 1]


@pytest.mark.parametrize(("association", "distinct_ids"), [(True, 1), (False, 3)])
def test_mask_association_keeps_the_id_when_the_detector_switches(
    tiny_sam, association, distinct_ids
):
    # the detector's own ids change every frame (tracker="none"); the object stays put
    box = np.array([[12, 8, 40, 36]], np.float32)
    detector = BoxDetector([box] * 3, ids=[[10], [11], [12]])
    pipe = VideoSegmentation(tiny_sam, detector, "none", mask_association=association)
    ids = [int(d.tracker_id[0]) for d in pipe(_frames(1) * 3)]
    assert len(set(ids)) == distinct_ids


def test_consistency_features_on_a_generated_video(tiny_sam):
    for options in ({}, {"mask_prompt": False, "mask_association": False, "max_gap": 0}):
        detector = SimulatedDetector(iter_video_frames(1, VIDEO), seed=1)
        pipe = VideoSegmentation(tiny_sam, detector, "bytetrack", **options)
        outputs = list(pipe(iter_video_frames(1, VIDEO)))
        assert len(outputs) == VIDEO.n_frames
        assert all(d.mask.shape[1:] == (64, 80) for d in outputs)


def test_state_stays_bounded_on_a_long_video(tiny_sam):
    config = VideoConfig(height=48, width=48, n_frames=40, enter_rate=0.5, max_speed=6.0)
    detector = SimulatedDetector(iter_video_frames(2, config), seed=2)
    pipe = VideoSegmentation(tiny_sam, detector, "bytetrack", max_gap=3, lost_track_buffer=5)
    ids_seen, most_tracks = set(), 0
    for detections in pipe(iter_video_frames(2, config)):
        ids_seen.update(detections.tracker_id.tolist())
        most_tracks = max(most_tracks, len(pipe.tracks))
        # a track lives max_gap frames after its last detection; an alias lost_track_buffer
        assert all(pipe._frame - t.last_detected <= 4 for t in pipe.tracks.values())
        assert all(pipe._frame - seen <= 7 for seen in pipe._alias_seen.values())
    assert len(ids_seen) > most_tracks  # objects came and went; the state did not keep them


@pytest.mark.parametrize(
    ("options", "message"),
    [({"max_gap": -1}, "max_gap"), ({"unconfirmed": "maybe"}, "unconfirmed"), ({"gap": 1}, "gap")],
)
def test_bad_options_are_named(tiny_sam, options, message):
    with pytest.raises(ValueError, match=message):
        VideoSegmentation(tiny_sam, BoxDetector([]), "bytetrack", **options)


def test_unknown_tracker_is_named(tiny_sam):
    with pytest.raises(ValueError, match="kalman"):
        VideoSegmentation(tiny_sam, BoxDetector([]), "kalman")


def test_no_tracker_and_no_ids_falls_back_to_mask_iou_tracking(tiny_sam):
    box = np.array([[10, 10, 30, 30]], np.float32)
    pipe = VideoSegmentation(tiny_sam, BoxDetector([box] * 3), "none")
    assert [d.tracker_id.tolist() for d in pipe(_frames(1) * 3)] == [[1], [1], [1]]


def test_ultralytics_tracking_results_are_accepted_as_they_are(tiny_sam):
    import torch
    import ultralytics.engine.results as results

    from composeseg.adapters import from_ultralytics

    frames = _frames(1) * 3
    ids = [[7, 3], [7, 3], [3]]  # ultralytics' own ids; object 7 is not detected in frame 2

    calls = [0]

    def detector(image):
        rows = [[10, 10, 30, 30, 7, 0.9, 0], [35, 20, 60, 45, 3, 0.8, 1]]
        boxes = torch.tensor([r for r in rows if r[4] in ids[calls[0]]], dtype=torch.float32)
        calls[0] += 1
        return from_ultralytics(
            results.Results(image, path="f.jpg", names={0: "a", 1: "b"}, boxes=boxes)
        )

    pipe = VideoSegmentation(tiny_sam, detector, "none", max_gap=0)
    outputs = list(pipe(frames))
    pairs = [
        dict(zip(d.data["source_tracker_id"].tolist(), d.tracker_id.tolist(), strict=True))
        for d in outputs
    ]
    assert pairs[0] == pairs[1] and sorted(pairs[0]) == [3, 7]
    assert pairs[2] == {3: pairs[0][3]}  # ultralytics' id 3 keeps its output id


@pytest.mark.parametrize("exclusive", [True, False])
def test_exclusive_masks_never_overlap(tiny_sam, exclusive):
    # two detections of one place: SAM gives both the same mask; only one may keep the pixels
    boxes = np.array([[10, 10, 40, 40], [11, 10, 40, 41]], np.float32)
    pipe = VideoSegmentation(tiny_sam, BoxDetector([boxes] * 2), "none", exclusive_masks=exclusive)
    for detections in pipe(_frames(2)):
        masks = detections.mask.reshape(len(detections), -1)
        overlap = (masks.astype(int).sum(0) > 1).any()
        assert overlap != exclusive


class NotedDetector(BoxDetector):
    """BoxDetector whose prompts carry two extra data columns, as a real detector's may."""

    def __call__(self, image):
        prompts = super().__call__(image)
        n = len(prompts)
        return prompts.replace(
            data={
                **prompts.data,
                "note": np.array([f"n{i}" for i in range(n)]),
                "area_px": np.arange(n, dtype=np.float32) + 100,
            }
        )


def test_detector_data_columns_ride_through_including_gap_filled_frames(tiny_sam):
    box = [[10, 10, 30, 30]]
    # detected three times, missed once (gap-filled from the track), detected again
    detector = NotedDetector([box, box, box, None, box])
    # gap_min_score -1: the tiny random model's mask scores would drop the gap row
    pipe = VideoSegmentation(tiny_sam, detector, "bytetrack", max_gap=3, gap_min_score=-1.0)
    outputs = list(pipe(_frames(5)))
    for i, detections in enumerate(outputs):
        assert len(detections) == 1, i
        assert detections.data["note"].tolist() == ["n0"], i
        assert detections.data["area_px"].tolist() == [100.0], i
        assert detections.data["class_name"].tolist() == ["c0"], i
    assert outputs[3].data["gap_filled"].tolist() == [True]  # values of its last detection
