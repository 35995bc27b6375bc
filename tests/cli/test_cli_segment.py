from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from composeseg.pipelines.cli import main
from composeseg.pipelines.cli.segment import build_prompts
from composeseg.rle import decode as rle_to_mask


@pytest.fixture
def image_file(tmp_path: Path, rgb_image: np.ndarray) -> Path:
    path = tmp_path / "scene.png"
    Image.fromarray(rgb_image).save(path)
    return path


def test_segment_writes_annotated_png_masks_and_coco_json(
    tiny_sam_dir: Path, image_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["segment", str(image_file), "--sam", str(tiny_sam_dir), "-o", str(out)]
    argv += ["--box", "30,20,100,60", "--box", "0,0,50,50", "--device", "cpu"]
    assert main(argv) == 0
    assert "2 object(s)" in capsys.readouterr().out
    annotated = np.asarray(Image.open(out / "annotated.png"))
    assert annotated.shape == (90, 140, 3)
    payload = json.loads((out / "predictions.json").read_text())
    assert payload["images"][0]["file_name"] == "scene.png"
    assert [a["bbox"] for a in payload["annotations"]] == [[30, 20, 70, 40], [0, 0, 50, 50]]
    for i, annotation in enumerate(payload["annotations"]):
        mask_png = np.asarray(Image.open(out / "masks" / f"{i:03d}.png")) > 0
        np.testing.assert_array_equal(rle_to_mask(annotation["segmentation"]), mask_png)
        assert annotation["area"] == int(mask_png.sum())
        assert isinstance(annotation["mask_score"], float)


@pytest.mark.parametrize("flag", [None, "--box-fit"])
def test_box_fit_keeps_the_mask_that_fits_the_box(
    tiny_sam_dir: Path, image_file: Path, tmp_path: Path, flag: str | None
) -> None:
    from composeseg import load_sam

    out = tmp_path / "out"
    argv = ["segment", str(image_file), "--sam", str(tiny_sam_dir), "-o", str(out)]
    argv += ["--box", "30,20,100,60", "--box", "0,0,50,50", "--device", "cpu"]
    assert main(argv + ([flag] if flag else [])) == 0
    payload = json.loads((out / "predictions.json").read_text())
    scores = [a["mask_score"] for a in payload["annotations"]]
    sam = load_sam(str(tiny_sam_dir), device="cpu")
    boxes = [[30, 20, 100, 60], [0, 0, 50, 50]]
    fitted = sam.segment(str(image_file), boxes=boxes, box_fit=True).scores[:, 0]
    single = sam.segment(str(image_file), boxes=boxes).scores[:, 0]
    assert not np.allclose(fitted, single)  # the two must be told apart
    np.testing.assert_allclose(scores, fitted if flag else single, rtol=1e-5)


@pytest.mark.parametrize(
    ("boxes", "points", "per_object", "expected"),
    [
        (["1,2,3,4"], [], False, {"boxes": (1, 4)}),
        ([], ["5,6", "7,8,0"], False, {"points": (1, 2, 2), "point_labels": (1, 2)}),
        ([], ["5,6", "7,8,0"], True, {"points": (2, 1, 2), "point_labels": (2, 1)}),
        (
            ["1,2,30,40"],
            ["5,6"],
            False,
            {"boxes": (1, 4), "points": (1, 1, 2), "point_labels": (1, 1)},
        ),
    ],
)
def test_prompt_flags_map_to_objects(boxes, points, per_object, expected) -> None:  # type: ignore[no-untyped-def]
    prompts = build_prompts(boxes, points, per_object)
    assert {k: v.shape for k, v in prompts.items()} == expected
    if len(points) == 2:
        assert prompts["point_labels"].ravel().tolist() == [1, 0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--box", "1,2,3"], "expected 4 numbers"),
        (["--point", "a,b"], "expected 2 or 3 numbers"),
        ([], "give at least one --box or --point"),
        (["--box", "1,1,9,9", "--box", "2,2,8,8", "--point", "3,3"], "ambiguous"),
        (["--box", "500,500,600,600"], "lies outside"),
        (["--zoom", "6", "--tile", "2", "--detector", "x.json"], "--zoom and --tile"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(  # type: ignore[no-untyped-def]
    tiny_sam_dir, image_file, tmp_path, capsys, argv, message
) -> None:
    code = main(
        ["segment", str(image_file), "--sam", str(tiny_sam_dir), "-o", str(tmp_path), *argv]
    )
    assert code == 2
    assert message in capsys.readouterr().err


def test_a_zoom_below_one_is_an_argument_error(
    image_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", str(image_file), "-o", str(tmp_path), "--box", "1,1,9,9", "--zoom", "0.5"])
    assert exit_info.value.code == 2
    assert "--zoom: must be a finite number >= 1, got 0.5" in capsys.readouterr().err


def test_zoom_keeps_every_output(
    tiny_sam_dir: Path, image_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["segment", str(image_file), "--sam", str(tiny_sam_dir), "-o", str(out)]
    assert main([*argv, "--box", "30,20,100,60", "--box", "0,0,20,20", "--zoom", "1.5"]) == 0
    assert "2 object(s)" in capsys.readouterr().out
    payload = json.loads((out / "predictions.json").read_text())
    corner = rle_to_mask(payload["annotations"][1]["segmentation"])
    assert not corner[32:].any() and not corner[:, 32:].any()  # inside its 32 px window


def test_missing_image_is_reported(tiny_sam_dir, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = main(["segment", str(tmp_path / "nope.png"), "--box", "1,1,5,5", "-o", str(tmp_path)])
    assert code == 2 and "nope.png" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [
        [str(Path(sys.executable).with_name("composeseg"))],
        [sys.executable, "-m", "composeseg.pipelines.cli"],
    ],
)
def test_help_and_version(command: list[str]) -> None:
    result = subprocess.run([*command, "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("composeseg ")
    result = subprocess.run([*command, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "segment" in result.stdout
