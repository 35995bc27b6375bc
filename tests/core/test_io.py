from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from composeseg.io import atomic_write, temp_file_beside, write_image, write_json
from composeseg.rle import decode as rle_to_mask
from composeseg.rle import encode_mask as mask_to_rle


def test_atomic_write_leaves_no_temporary_and_honours_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = write_json(tmp_path / "out" / "result.json", {"a": 1})
    finally:
        os.umask(old)
    assert path.read_text().strip().startswith("{")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "result.txt"
    path.write_text("old")

    def explode(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        atomic_write(path, explode)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.txt"]


def test_temporaries_never_look_like_images(tmp_path: Path) -> None:
    # a killed write leaves its temporary behind: it must not be read as an image later
    tmp = temp_file_beside(tmp_path / "annotated.png")
    assert tmp.name.startswith(".annotated.png.") and tmp.suffix == ".tmp"
    from PIL import Image

    pixels = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    for name in ("a.png", "b.jpg", "c.webp", "d.tif"):
        path = write_image(tmp_path / name, pixels)
        assert Image.open(path).size == (2, 2)
    with pytest.raises(ValueError, match="cannot write an image as .tmp"):
        write_image(tmp_path / "e.tmp", pixels)


def test_rle_round_trip_keeps_holes() -> None:
    mask = np.zeros((20, 30), bool)
    mask[2:18, 3:27] = True
    mask[8:12, 10:20] = False
    rle = mask_to_rle(mask)
    assert rle["size"] == [20, 30] and isinstance(rle["counts"], str)
    np.testing.assert_array_equal(rle_to_mask(rle), mask)
