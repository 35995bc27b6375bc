from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from composeseg.io import atomic_write, write_json
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


def test_rle_round_trip_keeps_holes() -> None:
    mask = np.zeros((20, 30), bool)
    mask[2:18, 3:27] = True
    mask[8:12, 10:20] = False
    rle = mask_to_rle(mask)
    assert rle["size"] == [20, 30] and isinstance(rle["counts"], str)
    np.testing.assert_array_equal(rle_to_mask(rle), mask)
