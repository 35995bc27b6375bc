"""Bad output paths and tiny images fail before any model work (issue 20, items 9 and 13)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from composeseg.pipelines.cli import main


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a model fails the test: every case below must stop before that."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the output path was checked")

    monkeypatch.setattr("composeseg.loading.load_sam", refuse)


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, str]:
    image = tmp_path / "scene.png"
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(image)
    file = tmp_path / "taken.txt"
    file.write_text("not a folder")
    folder = tmp_path / "folder"
    folder.mkdir()
    return {
        "image": str(image),
        "file": str(file),
        "under_file": str(file / "out"),
        "folder": str(folder),
        "jpg": str(tmp_path / "edges.jpg"),
    }


CASES = [
    (["segment", "{image}", "--box", "1,1,20,20", "-o", "{file}"], "output folder .* is a file"),
    (["everything", "{image}", "-o", "{file}"], "output folder .* is a file"),
    (["proposals", "{image}", "-o", "{under_file}"], "cannot write to the output folder"),
    (["text", "{image}", "a square", "-o", "{file}"], "output folder .* is a file"),
    (["edges", "{image}", "-o", "{folder}"], "is a directory: give a file name"),
    (["edges", "{image}", "-o", "{jpg}"], r"expected a file ending in \.png, got \.jpg"),
    (["track", "synthetic:0:3", "--detector", "synthetic", "-o", "{folder}"], "is a directory"),
    (
        ["track", "synthetic:0:3", "--detector", "synthetic", "-o", "{under_file}"],
        "output folder .*taken.txt is a file",
    ),
]


IDS = [f"{argv[0]}-{i}" for i, (argv, _) in enumerate(CASES)]


@pytest.mark.parametrize(("argv", "message"), CASES, ids=IDS)
def test_a_bad_output_fails_before_the_model_loads(
    argv: list[str],
    message: str,
    paths: dict[str, str],
    no_model: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([a.format(**paths) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"composeseg {argv[0]}: error: ")
    assert len(err.splitlines()) == 1
    assert re.search(message, err), err


def test_edges_of_a_one_pixel_high_image_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "line.png"
    Image.fromarray(np.zeros((1, 60, 3), np.uint8)).save(image)
    assert main(["edges", str(image), "-o", str(tmp_path / "e.png"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "edges need an image at least 3 px on each side, got 60x1" in err


def test_a_full_disk_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno
    import os

    image = tmp_path / "scene.png"
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(image)
    real_replace = os.replace

    def full(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(os, "replace", full)
    argv = ["segment", str(image), "--box", "1,1,20,20", "-o", str(tmp_path / "out")]
    assert main([*argv, "--device", "cpu"]) == 2
    monkeypatch.setattr(os, "replace", real_replace)
    err = capsys.readouterr().err.strip()
    assert err.startswith("composeseg segment: error: [Errno 28] No space left on device")
    assert len(err.splitlines()) == 1
    assert not list((tmp_path / "out").rglob("*.tmp"))  # the temporaries went with it


def test_an_unexpected_error_keeps_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    image = tmp_path / "scene.png"
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(image)

    def broken(src: object, dst: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", broken)
    argv = ["segment", str(image), "--box", "1,1,20,20", "-o", str(tmp_path / "out")]
    with pytest.raises(OSError, match="Input/output error"):
        main([*argv, "--device", "cpu"])
