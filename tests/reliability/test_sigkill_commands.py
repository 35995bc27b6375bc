"""SIGKILL each file-writing command while it writes, run it again: the outputs equal an
uninterrupted run's and no temporary is left (issue 20). Dataset runs, which resume, have
their own test (``tests/pipelines/test_runner.py``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from composeseg.pipelines.cli import main

COMMANDS = {
    "segment": ["segment", "{image}", "--box", "4,4,40,30", "--box", "30,20,60,44", "-o", "{out}"],
    "everything": ["everything", "{image}", "--points-per-side", "4", "-o", "{out}"],
    "edges": ["edges", "{image}", "--points-per-side", "4", "-o", "{out}/edges.png"],
    "track": [
        *["track", "synthetic:0:6", "--detector", "synthetic", "-o", "{out}/t.mp4"],
        *["--json", "{out}/t.json", "--mot", "{out}/t.txt", "--no-progress"],
    ],
}


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix != ".mp4"  # an encoder's bytes may differ run to run
    }


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_killed_while_writing_then_rerun_equals_an_uninterrupted_run(
    command: str, tiny_sam_dir: Path, tmp_path: Path
) -> None:
    image = tmp_path / "scene.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), np.uint8)).save(image)

    def argv(out: Path) -> list[str]:
        names = {"image": image, "out": out}
        return [a.format(**names) for a in COMMANDS[command]] + [
            "--sam", str(tiny_sam_dir), "--device", "cpu"
        ]  # fmt: skip

    clean, killed = tmp_path / "clean", tmp_path / "killed"
    assert main(argv(clean)) == 0
    process = subprocess.Popen(
        [sys.executable, "-m", "composeseg.pipelines.cli", *argv(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    # the first file of the output (a temporary included) means the writing has begun
    while not (killed.is_dir() and any(p.is_file() for p in killed.rglob("*"))):
        assert process.poll() is None and time.monotonic() < deadline, "no output was written"
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    for path in killed.rglob("*"):  # what a kill leaves is complete or a hidden temporary
        if path.is_file() and not path.name.endswith(".tmp"):
            if path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".png":
                Image.open(path).load()
    assert main(argv(killed)) == 0
    assert _files(killed) == _files(clean)
    assert not list(killed.rglob("*.tmp"))


def test_only_our_own_temporaries_are_removed(tiny_sam_dir: Path, tmp_path: Path) -> None:
    image = tmp_path / "scene.png"
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(image)
    out = tmp_path / "out"
    (out / "notes").mkdir(parents=True)
    foreign = [out / ".editor.swp.tmp", out / "notes" / ".draft.0123456789ab.tmp"]
    ours = out / ".predictions.json.0123456789ab.tmp"
    for path in [*foreign, ours]:
        path.write_text("x")
    argv = ["segment", str(image), "--box", "4,4,40,30", "-o", str(out)]
    assert main([*argv, "--sam", str(tiny_sam_dir), "--device", "cpu"]) == 0
    assert all(path.exists() for path in foreign)  # not ours, or not in our folders
    assert not ours.exists()
