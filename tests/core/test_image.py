from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from composeseg import load_image

RGB = np.zeros((6, 8, 3), np.uint8)
RGB[1:3, 2:5] = (200, 100, 50)


def _save(tmp_path: Path, name: str, image: Image.Image, **kwargs: object) -> Path:
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("rgb.png", lambda: Image.fromarray(RGB), RGB),
        ("gray.png", lambda: Image.fromarray(RGB[..., 0]), np.repeat(RGB[..., :1], 3, 2)),
        (
            "rgba.png",
            lambda: Image.fromarray(np.dstack([RGB, np.full((6, 8), 7, np.uint8)])),
            RGB,
        ),
        ("palette.png", lambda: Image.fromarray(RGB).quantize(colors=4), RGB),
        (
            "gray16.png",
            lambda: Image.fromarray(RGB[..., 0].astype(np.uint16) * 257),
            np.repeat(RGB[..., :1], 3, 2),
        ),
    ],
)
def test_files_are_normalised_to_rgb_uint8(tmp_path: Path, name, make, expected) -> None:  # type: ignore[no-untyped-def]
    image = load_image(_save(tmp_path, name, make()))
    assert image.dtype == np.uint8 and image.shape == (6, 8, 3)
    np.testing.assert_array_equal(image, expected)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    path = _save(tmp_path, "rotated.jpg", Image.fromarray(RGB), exif=exif, quality=100)
    image = load_image(path)
    assert image.shape == (8, 6, 3)


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (RGB[..., 0], np.repeat(RGB[..., :1], 3, 2)),
        (RGB[..., :1], np.repeat(RGB[..., :1], 3, 2)),
        (np.dstack([RGB, np.zeros((6, 8), np.uint8)]), RGB),
        (RGB.astype(np.uint16) * 257, RGB),
        (RGB.astype(np.float32) / 255.0, RGB),
        (RGB.astype(np.int64), RGB),
    ],
)
def test_arrays_are_normalised(array: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_array_equal(load_image(array), expected)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 4, 2), np.uint8), r"must be \(H, W\)"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
        (np.full((2, 2, 3), np.nan, np.float32), "NaN"),
        (np.full((2, 2, 3), 2.0, np.float32), r"\[0, 1\]"),
        (np.full((2, 2, 3), 300, np.int32), r"\[0, 255\]"),
    ],
)
def test_bad_arrays_raise(array: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_image(array)


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    for path in (corrupt, text):
        with pytest.raises(ValueError, match=path.name):
            load_image(path)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="is a directory"):
        load_image(tmp_path)
    with pytest.raises(TypeError, match="expected an image path"):
        load_image(42)  # type: ignore[arg-type]


def test_images_from_files_are_writable(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    Image.new("RGB", (5, 4), (1, 2, 3)).save(path)
    image = load_image(path)
    assert image.flags.writeable and image.flags.c_contiguous
    assert image.shape == (4, 5, 3)


def test_jpeg_roundtrip_keeps_the_frame_and_degrades_with_quality() -> None:
    from composeseg.image import jpeg_roundtrip

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    image[:, :28] = (200, 30, 30)  # a flat red half keeps its colour (RGB order, not BGR)
    fine, coarse = jpeg_roundtrip(image, 95), jpeg_roundtrip(image, 20)
    assert fine.shape == image.shape and fine.dtype == np.uint8 and fine.flags.c_contiguous
    error = [np.abs(out.astype(int) - image).mean() for out in (fine, coarse)]
    assert error[0] < error[1]
    assert np.abs(fine[5:35, 5:20].astype(int) - (200, 30, 30)).max() < 12
