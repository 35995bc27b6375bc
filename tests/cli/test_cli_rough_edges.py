"""The CLI's rough edges seen on a fresh machine: each case failed before its fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from composeseg.pipelines.cli import attach_negative_values, build_parser, main

ROOT = Path(__file__).resolve().parents[2]
SCENE = ROOT / "examples" / "scene.png"


@pytest.fixture
def image_file(tmp_path: Path, rgb_image: np.ndarray) -> Path:
    path = tmp_path / "scene.png"
    Image.fromarray(rgb_image).save(path)
    return path


# ------------------------------------------------------------------ a missing extra: one line


@pytest.mark.parametrize(
    ("module", "argv", "extra"),
    [
        ("trackers", ["track", "synthetic:0:3", "--detector", "synthetic"], "video"),
        ("pyEdgeEval", ["edges", "{image}"], "edges"),
    ],
)
def test_missing_extra_is_one_line_and_exit_2(
    module: str,
    argv: list[str],
    extra: str,
    tiny_sam_dir: Path,
    image_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    argv = [a.format(image=image_file) for a in argv]
    out = tmp_path / ("out.mp4" if argv[0] == "track" else "edges.png")
    assert main([*argv, "--sam", str(tiny_sam_dir), "--device", "cpu", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"composeseg {argv[0]}: error: ")
    assert f'pip install "composeseg[{extra}]"' in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


# ------------------------------------------------------------------ negative coordinates


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--box", "-5,0,100,100"], ["--box=-5,0,100,100"]),
        (["--point", "-3.5,7", "--box", "1,2,3,4"], ["--point=-3.5,7", "--box", "1,2,3,4"]),
        (["--box", "-1e1,0,5,5"], ["--box=-1e1,0,5,5"]),
        (["--box", "--sam"], ["--box", "--sam"]),  # an option stays an option
        (["-o", "-5,0"], ["-o", "-5,0"]),  # only the number-list options
    ],
)
def test_negative_values_attach_to_their_option(argv: list[str], expected: list[str]) -> None:
    assert attach_negative_values(argv) == expected


def test_negative_box_is_accepted_and_clipped(
    tiny_sam_dir: Path, image_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    argv = ["segment", str(image_file), "--box", "-5,-3,60,50"]
    argv += ["--sam", str(tiny_sam_dir), "--device", "cpu", "-o", str(out)]
    assert main(argv) == 0
    (annotation,) = json.loads((out / "predictions.json").read_text())["annotations"]
    assert annotation["bbox"] == [0, 0, 60, 50]  # the prompt box, clipped to the image


# ------------------------------------------------------------------ model sources


def test_unreachable_hub_fails_fast_and_suggests_the_known_name(tmp_path: Path) -> None:
    """A closed port on 127.0.0.1 stands in for a machine without network: no retries."""
    script = textwrap.dedent(
        """
        from composeseg import load_sam
        for name in ("facebook/sam-vit-bse", "sam-vit-bse"):
            try:
                load_sam(name, device="cpu")
            except ValueError as error:
                print("error:", error)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HTTP", "http"))}
    env |= {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(tmp_path / "hub")}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert "the hub is unreachable (127.0.0.1:9" in first
    assert "did you mean 'facebook/sam-vit-base'?" in first
    assert "did you mean 'sam-vit-base'?" in second
    assert "Retrying" not in result.stderr


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (SCENE.read_bytes(), "a PNG image"),
        (b"", "empty"),
        (b'{"model_type": "sam"}', "a JSON or text file"),
    ],
)
def test_a_file_that_is_not_a_checkpoint_is_named(
    content: bytes,
    kind: str,
    image_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    weights = tmp_path / "weights.pth"
    weights.write_bytes(content)
    argv = ["segment", str(image_file), "--box", "1,1,20,20", "--sam", str(weights)]
    assert main([*argv, "--device", "cpu", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "is not a PyTorch checkpoint (a SAM .pth file is a zip archive or a pickle); " in err
    assert err.strip().endswith(f"this file is {kind}")
    assert "file an issue" not in err


# ------------------------------------------------------------------ help texts


def _subparser(*names: str) -> object:
    parser = build_parser()
    for name in names:
        action = next(a for a in parser._actions if a.dest in ("command", "eval_command"))
        parser = action.choices[name]  # type: ignore[index]
    return parser


def test_segment_help_offers_no_missing_option() -> None:
    segment = _subparser("segment").format_help()  # type: ignore[attr-defined]
    assert "--dataset" not in segment
    instances = _subparser("eval", "instances").format_help()  # type: ignore[attr-defined]
    assert "results list: its boxes, on the images of --gt" in " ".join(instances.split())


@pytest.mark.parametrize("command", ["everything", "proposals", "edges"])
def test_every_generator_option_has_help_and_its_default(command: str) -> None:
    parser = _subparser(command)
    for action in parser._actions:  # type: ignore[attr-defined]
        if action.option_strings and action.default not in (None, False, "==SUPPRESS=="):
            if action.dest in ("dtype", "help"):
                continue
            assert action.help, f"{command} {action.option_strings[0]} has no help"
            assert "default" in action.help, f"{command} {action.option_strings[0]}"


# ------------------------------------------------------------------ progress bars


def test_proposals_bar_is_labelled_proposals(
    tiny_sam_dir: Path, image_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["proposals", str(image_file), "--points-per-side", "4", "--sam", str(tiny_sam_dir)]
    assert main([*argv, "--device", "cpu", "-o", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "proposals:" in err and "segment everything" not in err


def test_track_bar_knows_the_length(
    tiny_sam_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["track", "synthetic:0:4", "--detector", "synthetic", "--sam", str(tiny_sam_dir)]
    assert main([*argv, "--device", "cpu", "-o", str(tmp_path / "out.mp4")]) == 0
    assert "4/4" in capsys.readouterr().err


def test_video_file_length_is_known_before_reading(tmp_path: Path) -> None:
    from composeseg.pipelines.video_io import probe
    from composeseg.pipelines.video_out import VideoWriter

    path = tmp_path / "clip.mp4"
    with VideoWriter(path, 10) as video:
        for i in range(7):
            video.write(np.full((32, 48, 3), i * 30, np.uint8))
    assert probe(path).frame_count == 7


@pytest.mark.parametrize(
    ("argv", "label"),
    [
        (["eval", "points", "--synthetic", "2", "--points", "1"], "eval points"),
        (["eval", "points", "--synthetic", "2", "--zoom", "3"], "eval points"),
        (
            ["eval", "tracking", "--synthetic", "0", "--frames", "3", "--size", "96"],
            "eval tracking",
        ),
    ],
)
def test_evaluations_show_progress(
    argv: list[str], label: str, tiny_sam_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--sam", str(tiny_sam_dir), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert label in err and ("2/2" in err or "3/3" in err)
