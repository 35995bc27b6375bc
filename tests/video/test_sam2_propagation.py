"""The SAM 2 propagation engine on a tiny random-init ``Sam2VideoModel``."""

from __future__ import annotations

import numpy as np
import pytest

from composeseg.pipelines.video_sam2 import Sam2Propagation, tiny_sam2_video_config
from composeseg.pipelines.video_sim import SimulatedDetector
from composeseg.prompts import Prompts
from composeseg.synthetic import VideoConfig, iter_video_frames

VIDEO = VideoConfig(height=64, width=80, n_frames=10, min_objects=2, max_objects=3)


@pytest.fixture(scope="module")
def tiny_sam2_video():
    import torch
    from transformers import Sam2VideoModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Sam2VideoModel(tiny_sam2_video_config()).eval()


def _frames(n):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (64, 80, 3), dtype=np.uint8) for _ in range(n)]


def test_first_frame_prompts_are_propagated(tiny_sam2_video):
    engine = Sam2Propagation(tiny_sam2_video, min_object_score=-np.inf)
    prompts = Prompts(
        boxes=np.array([[5, 5, 30, 30], [40, 20, 75, 60]]),
        data={"class_name": np.array(["a", "b"])},
    )
    outputs = list(engine(_frames(5), prompts))
    assert len(outputs) == 5
    assert sorted(engine.objects) == [1, 2]
    for detections in outputs:  # a random model may lose an object (empty mask) in a frame
        assert set(detections.tracker_id.tolist()) <= {1, 2}
        assert detections.mask.shape[1:] == (64, 80) and detections.mask.dtype == bool
        names = dict(
            zip(detections.tracker_id.tolist(), detections.data["class_name"], strict=True)
        )
        assert all(names[i] == {1: "a", 2: "b"}[i] for i in names)
    assert sum(len(d) for d in outputs) > 0


def test_detector_reseeds_and_session_stays_bounded(tiny_sam2_video):
    detector = SimulatedDetector(iter_video_frames(0, VIDEO), seed=0)
    engine = Sam2Propagation(tiny_sam2_video, detector, detect_every=3, max_cond_frames=2)
    keep = max(
        tiny_sam2_video.config.num_maskmem, tiny_sam2_video.config.max_object_pointers_in_encoder
    )
    outputs = []
    for detections in engine(iter_video_frames(0, VIDEO)):
        outputs.append(detections)
        session = engine.session
        assert len(session.processed_frames) == 1
        for stored in session.output_dict_per_obj.values():
            assert len(stored["non_cond_frame_outputs"]) <= keep
            assert len(stored["cond_frame_outputs"]) <= 2
    assert len(outputs) == VIDEO.n_frames
    assert detector.calls == len(range(0, VIDEO.n_frames, 3))
    assert all((d.tracker_id >= 1).all() for d in outputs)


def test_no_detections_give_empty_frames(tiny_sam2_video):
    engine = Sam2Propagation(tiny_sam2_video, lambda image: Prompts(boxes=np.zeros((0, 4))))
    outputs = list(engine(_frames(3)))
    assert [len(d) for d in outputs] == [0, 0, 0]
    assert outputs[0].mask.shape == (0, 64, 80)


def test_needs_prompts_or_detector(tiny_sam2_video):
    with pytest.raises(ValueError, match="prompts or a detector"):
        next(Sam2Propagation(tiny_sam2_video)(_frames(1)))
    with pytest.raises(ValueError, match="detect_every"):
        Sam2Propagation(tiny_sam2_video, detect_every=-1)


def test_without_pruning_the_session_grows(tiny_sam2_video):
    prompts = Prompts(boxes=np.array([[5, 5, 30, 30]]))
    engine = Sam2Propagation(tiny_sam2_video, prune_state=False)
    for _ in engine(_frames(6), prompts):
        pass
    assert len(engine.session.processed_frames) == 6
