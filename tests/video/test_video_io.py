"""Video reading and writing: files, folders, cameras; broken input is reported, never silent."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import supervision as sv

from composeseg.pipelines.video_io import BrokenFrameWarning, probe, read_frames
from composeseg.pipelines.video_out import ResultsWriter, VideoWriter


def _frames(n: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in range(n)]


def _write(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    with VideoWriter(path, fps) as writer:
        for frame in frames:
            writer.write(frame)
    return path


@pytest.mark.parametrize(
    ("height", "width", "fps"),
    [(64, 96, 25.0), (47, 65, 12.5), (64, 64, 29.97)],  # odd sizes are kept (4:4:4)
)
def test_mp4_round_trip_keeps_count_size_and_fps(tmp_path, height, width, fps):
    path = _write(tmp_path / "clip.mp4", _frames(7, height, width), fps)
    info = probe(path)
    frames = list(read_frames(path))
    assert len(frames) == 7
    assert frames[0].image.shape == (height, width, 3)
    assert info.size == (height, width)
    assert info.fps == pytest.approx(fps, rel=1e-3)
    assert [f.index for f in frames] == list(range(7))
    assert frames[1].timestamp == pytest.approx(1 / fps, rel=1e-2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]  # no temp file left


def test_mpeg4_fallback_pads_odd_sizes(tmp_path):
    path = tmp_path / "odd.mp4"
    with pytest.warns(UserWarning, match="padded"), VideoWriter(path, 10, codec="mpeg4") as out:
        for frame in _frames(3, 33, 47):
            out.write(frame)
    frames = list(read_frames(path))
    assert len(frames) == 3 and frames[0].image.shape == (34, 48, 3)


def test_writer_aborts_without_leaving_a_file(tmp_path):
    with pytest.raises(RuntimeError), VideoWriter(tmp_path / "x.mp4", 10) as writer:
        writer.write(_frames(1, 32, 32)[0])
        raise RuntimeError("crash mid-video")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "error"),
    [(b"not a video at all" * 50, ValueError), (None, FileNotFoundError)],
)
def test_unreadable_file_names_it(tmp_path, content, error):
    path = tmp_path / "broken.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error, match="broken.mp4"):
        read_frames(path)


def test_corrupt_packets_are_reported_and_skipped(tmp_path):
    path = _write(tmp_path / "clip.mp4", _frames(10, 64, 64), 10)
    data = bytearray(path.read_bytes())
    start = data.find(b"mdat") + 5000
    data[start : start + 4000] = b"\xff" * 4000
    path.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames = list(read_frames(path))
    broken = [w for w in caught if issubclass(w.category, BrokenFrameWarning)]
    assert broken and "could not be decoded" in str(broken[0].message)
    assert 0 < len(frames) < 10
    # frames keep their numbers in the file: the lost ones leave a gap, nothing is renumbered
    indices = [f.index for f in frames]
    assert indices == sorted(set(indices)) and indices[-1] == 9
    assert [round(f.timestamp * 10) for f in frames] == indices
    near = {str(w.message).split("near frame ")[1].split(" ")[0] for w in broken}
    assert near != {"0"} or len(broken) == 1  # not every warning "near frame 0"


def test_a_corrupt_first_frame_of_a_folder_is_skipped_like_any_other(tmp_path):
    from PIL import Image

    for i, frame in enumerate(_frames(4, 20, 30)):
        Image.fromarray(frame).save(tmp_path / f"{i:03d}.png")
    (tmp_path / "000.png").write_bytes(b"garbage")
    info = probe(tmp_path)
    assert info.size == (20, 30) and info.frame_count == 4
    with pytest.warns(BrokenFrameWarning, match="000.png"):
        frames = list(read_frames(tmp_path, fps=10))
    assert [f.index for f in frames] == [1, 2, 3]


def test_camera_generator_skips_bad_frames_with_a_warning():
    def camera():
        yield np.zeros((16, 24, 3), np.uint8)
        yield None  # a dropped frame
        yield np.zeros((16, 24), np.uint8)  # grayscale is normalised to RGB
        yield np.zeros((16, 24, 3), np.uint8)

    with pytest.warns(BrokenFrameWarning, match="frame 1 of the input"):
        frames = list(read_frames(camera(), fps=10))
    # the dropped frame leaves a gap: later frames keep their own numbers (issue 20, item 6)
    assert [f.index for f in frames] == [0, 2, 3]
    assert [f.timestamp for f in frames] == [0.0, 0.2, 0.3]
    assert all(f.image.shape == (16, 24, 3) for f in frames)


def test_folder_reads_sorted_and_skips_unreadable_images(tmp_path):
    from PIL import Image

    for i, frame in enumerate(_frames(3, 20, 30)):
        Image.fromarray(frame).save(tmp_path / f"{i:03d}.png")
    (tmp_path / "001b.png").write_bytes(b"garbage")
    with pytest.warns(BrokenFrameWarning, match="001b.png"):
        frames = list(read_frames(tmp_path))
    assert len(frames) == 3
    assert probe(tmp_path).size == (20, 30)


def test_results_writer_mot_and_coco_json(tmp_path):
    masks = np.zeros((2, 20, 30), bool)
    masks[0, 2:6, 3:9] = True
    masks[1, 10:15, 10:20] = True
    detections = sv.Detections(
        xyxy=np.array([[3, 2, 9, 6], [10, 10, 20, 15]], np.float32),
        mask=masks,
        confidence=np.array([0.9, 0.5], np.float32),
        class_id=np.array([1, 2]),
        tracker_id=np.array([7, 8]),
        data={"class_name": np.array(["a", "b"])},
    )
    with ResultsWriter(mot_path=tmp_path / "r.txt", json_path=tmp_path / "r.json") as out:
        out.write(0, detections, (20, 30))
        out.write(1, detections[1:], (20, 30))
    lines = (tmp_path / "r.txt").read_text().splitlines()
    assert lines[0].split(",")[:6] == ["1", "7", "3.00", "2.00", "6.00", "4.00"]
    assert lines[2].startswith("2,8,")
    payload = json.loads((tmp_path / "r.json").read_text())
    assert [a["track_id"] for a in payload["annotations"]] == [7, 8, 8]
    assert payload["annotations"][0]["area"] == 24
    assert payload["categories"] == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    from composeseg.rle import decode as rle_to_mask

    assert np.array_equal(rle_to_mask(payload["annotations"][0]["segmentation"]), masks[0])
