"""Tests for composeseg.synthetic.video: seeded videos with stable track ids."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from composeseg.synthetic import (
    KINDS,
    SyntheticVideo,
    VideoConfig,
    generate_video,
    iter_video_frames,
)

SMALL = VideoConfig(height=96, width=128, n_frames=30)
# Fast objects that mostly pass through and frequent entries: every video has both events.
BUSY = VideoConfig(height=96, width=96, n_frames=60, min_speed=3.0, max_speed=5.0,
                   exit_prob=1.0, enter_rate=0.5, max_size=0.25)  # fmt: skip


def _touches_border(box: np.ndarray, h: int, w: int) -> bool:
    x1, y1, x2, y2 = box.tolist()
    return x1 == 0 or y1 == 0 or x2 == w or y2 == h


def _check_frames(video: SyntheticVideo) -> None:
    cfg = video.config
    assert len(video) == cfg.n_frames == len(video.tracks)
    for frame in video.iter_frames():
        assert frame.image.shape == (cfg.height, cfg.width, 3) and frame.image.dtype == np.uint8
        ids = frame.track_ids()
        assert ids.tolist() == sorted(set(ids.tolist()))  # unique, in z-order
        masks = frame.masks()
        assert masks.shape == (len(ids), cfg.height, cfg.width)
        assert masks.sum(axis=0).max(initial=0) <= 1  # visible masks are disjoint
        for inst, box in zip(frame.instances, frame.boxes(), strict=True):
            ys, xs = np.nonzero(inst.mask)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert inst.category_id == KINDS.index(inst.kind) + 1
            assert 0.0 < inst.visible_fraction <= 1.0


def test_same_seed_same_video_lazy_and_eager_agree() -> None:
    a, b = generate_video(4, SMALL), generate_video(4, SMALL)
    lazy = list(iter_video_frames(4, SMALL))
    for fa, fb, fl in zip(a.iter_frames(), b.iter_frames(), lazy, strict=True):
        assert np.array_equal(fa.image, fb.image) and np.array_equal(fa.image, fl.image)
        assert np.array_equal(fa.masks(), fl.masks())
        assert fa.track_ids().tolist() == fl.track_ids().tolist()
    assert not np.array_equal(a.frames[0], generate_video(5, SMALL).frames[0])


@pytest.mark.parametrize(
    "config",
    [
        SMALL,
        BUSY,
        VideoConfig(height=64, width=80, n_frames=20, occlusion=False, enter_leave=False),
    ],
)
def test_frame_invariants(config: VideoConfig) -> None:
    _check_frames(generate_video(1, config))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_track_ids_are_stable_and_objects_enter_and_leave(seed: int) -> None:
    video = generate_video(seed, BUSY)
    h, w = BUSY.height, BUSY.width
    attrs: dict[int, tuple[str, str]] = {}
    appearances: dict[int, list[int]] = {}
    last_centre: dict[int, tuple[int, np.ndarray]] = {}
    for t, frame in enumerate(video.tracks):
        for inst in frame:
            # An id always names the same object ...
            assert attrs.setdefault(inst.track_id, (inst.kind, inst.color)) == (
                inst.kind,
                inst.color,
            )
            appearances.setdefault(inst.track_id, []).append(t)
            # ... which moves continuously (checked while fully visible in both frames).
            centre = (inst.box[:2] + inst.box[2:]) / 2
            if inst.visible_fraction > 0.97 and not _touches_border(inst.box, h, w):
                prev = last_centre.get(inst.track_id)
                if prev is not None and prev[0] == t - 1:
                    assert np.abs(centre - prev[1]).max() <= BUSY.max_speed + 2.0
                last_centre[inst.track_id] = (t, centre)
            else:
                last_centre.pop(inst.track_id, None)
    first_ids = {i.track_id for i in video.tracks[0]}
    entered = [i for i in appearances if i not in first_ids]
    assert entered and min(entered) > max(first_ids)  # fresh ids, never recycled
    for tid in entered:
        inst = next(i for i in video.tracks[appearances[tid][0]] if i.track_id == tid)
        assert _touches_border(inst.box, h, w)  # came in through the border
    gone = [i for i in first_ids if appearances[i][-1] < BUSY.n_frames - 1]
    assert gone
    for tid in gone:
        inst = next(i for i in video.tracks[appearances[tid][-1]] if i.track_id == tid)
        assert _touches_border(inst.box, h, w) or inst.visible_fraction < 0.5


def test_without_enter_leave_and_occlusion_every_object_stays_whole() -> None:
    config = VideoConfig(height=96, width=96, n_frames=40, occlusion=False, enter_leave=False,
                         min_objects=3, max_objects=4, max_speed=6.0)  # fmt: skip
    video = generate_video(3, config)
    ids = [tuple(f.track_ids().tolist()) for f in video.iter_frames()]
    assert len(set(ids)) == 1 and len(ids[0]) >= 3  # nobody enters, leaves or hides
    for frame in video.tracks:
        for inst in frame:
            assert inst.visible_fraction > 0.9  # bounces keep objects inside and apart


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_frames", 0),
        ("height", 4),
        ("max_size", 0.9),
        ("min_speed", -1.0),
        ("max_speed", 0.1),
        ("max_rotation", -2.0),
        ("enter_rate", 2.0),
        ("exit_prob", -0.5),
        ("occlusion", "yes"),
        ("kinds", ("hexagon", "dodecahedron")),
        ("colors", ()),
        ("background", "sky"),
        ("lighting_noise", 0.9),
    ],
)
def test_bad_video_config_raises_value_error_naming_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        VideoConfig(**{field: value})


def test_bad_seed() -> None:
    with pytest.raises(ValueError, match="seed"):
        generate_video(-3, SMALL)
