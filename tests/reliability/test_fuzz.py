"""A seeded, bounded fuzz pass: every input is a clear error or a valid result (issue 20).

"Clear error" means ``ValueError`` (or ``FileNotFoundError``) with a message; anything else
(``KeyError``, ``IndexError``, ``OverflowError``, a crash in a library) fails the test.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from composeseg.image import load_image
from composeseg.prompts import Prompts

SEED = 20261205
CLEAR = (ValueError, FileNotFoundError)


def _valid_files(tmp_path: Path) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (48, 64, 3), np.uint8)
    out: dict[str, bytes] = {}
    for suffix, fmt in ((".png", "PNG"), (".jpg", "JPEG")):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=fmt)
        out[suffix] = buffer.getvalue()
    out[".json"] = json.dumps(
        {
            "images": [{"id": 1, "file_name": "x.png", "width": 64, "height": 48}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 12]}],
            "categories": [{"id": 1, "name": "thing"}],
        }
    ).encode()
    return out


def _mutations(data: bytes, rng: np.random.Generator, count: int) -> list[bytes]:
    """Truncations, flipped bytes and random bytes of the same length."""
    out = [data[: int(rng.integers(0, len(data)))] for _ in range(count)]
    for _ in range(count):
        flipped = bytearray(data)
        for i in rng.integers(0, len(data), max(1, len(data) // 50)):
            flipped[i] = int(rng.integers(0, 256))
        out.append(bytes(flipped))
    out.append(rng.integers(0, 256, len(data), np.uint8).tobytes())
    return out


def test_images_from_mutated_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(SEED)
    for suffix, data in _valid_files(tmp_path).items():
        if suffix == ".json":
            continue
        for i, blob in enumerate(_mutations(data, rng, 12)):
            path = tmp_path / f"m{i}{suffix}"
            path.write_bytes(blob)
            try:
                image = load_image(path)
            except CLEAR as error:
                assert str(error), path
                continue
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def test_coco_files_from_mutated_json(tmp_path: Path) -> None:
    from composeseg.adapters.coco import CocoBoxes

    rng = np.random.default_rng(SEED + 1)
    data = _valid_files(tmp_path)[".json"]
    for i, blob in enumerate(_mutations(data, rng, 25)):
        path = tmp_path / f"m{i}.json"
        path.write_bytes(blob)
        try:
            boxes = CocoBoxes(path)
            prompts = boxes.prompts(1)
        except CLEAR as error:
            assert str(error), path
            continue
        assert prompts.boxes is None or prompts.boxes.shape[1:] == (4,)


def _random_array(rng: np.random.Generator) -> object:
    shape = tuple(int(s) for s in rng.integers(0, 4, int(rng.integers(0, 4))))
    kind = int(rng.integers(0, 6))
    if kind == 0:
        return rng.normal(0, 1e3, shape)
    if kind == 1:
        return np.full(shape, rng.choice([np.nan, np.inf, -np.inf, 1e30, -5.0]))
    if kind == 2:
        return rng.integers(-(2**40), 2**40, shape)
    if kind == 3:
        return np.full(shape, "a", object)
    if kind == 4:
        return rng.random(shape) > 0.5
    return [[1, 2, 3, 4], [1, 2]]  # ragged


def test_random_prompt_arrays(tiny_sam: object) -> None:
    rng = np.random.default_rng(SEED + 2)
    image = np.zeros((40, 50, 3), np.uint8)
    embedding = tiny_sam.embed(image)  # type: ignore[attr-defined]
    fields = ("boxes", "points", "point_labels", "class_id", "confidence", "tracker_id")
    valid = 0
    for _ in range(300):
        chosen = rng.choice(fields, size=int(rng.integers(1, 4)), replace=False)
        kwargs = {str(name): _random_array(rng) for name in chosen}
        try:
            prompts = Prompts(**kwargs)
            prediction = tiny_sam.segment(embedding, prompts)  # type: ignore[attr-defined]
        except CLEAR as error:
            assert str(error)
            continue
        valid += 1
        assert prediction.masks.shape[0] == len(prompts)
    assert valid < 300  # the pass did reach the error paths


@pytest.mark.parametrize("value", [np.nan, np.inf, 1e30, -1e30])
def test_extreme_boxes_are_clear_errors_or_clipped(tiny_sam: object, value: float) -> None:
    image = np.zeros((40, 50, 3), np.uint8)
    try:
        prediction = tiny_sam.segment(image, boxes=[0, 0, value, 30])  # type: ignore[attr-defined]
    except CLEAR as error:
        assert str(error)
    else:
        assert prediction.masks.shape == (1, 1, 40, 50)


def test_videos_from_mutated_mp4(tmp_path: Path) -> None:
    import warnings

    from composeseg.pipelines.video_io import BrokenFrameWarning, read_frames
    from composeseg.pipelines.video_out import VideoWriter

    rng = np.random.default_rng(SEED + 3)
    source = tmp_path / "clip.mp4"
    with VideoWriter(source, 10) as writer:
        for _ in range(8):
            writer.write(rng.integers(0, 255, (32, 48, 3), np.uint8))
    for i, blob in enumerate(_mutations(source.read_bytes(), rng, 8)):
        path = tmp_path / f"m{i}.mp4"
        path.write_bytes(blob)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BrokenFrameWarning)  # skipped frames are reported
            try:
                frames = list(read_frames(path))
            except CLEAR as error:
                assert str(error), path
                continue
        indices = [f.index for f in frames]
        assert indices == sorted(set(indices))  # numbered by the source, never repeated
        assert all(f.image.dtype == np.uint8 and f.image.shape[2] == 3 for f in frames)
