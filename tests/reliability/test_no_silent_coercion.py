"""Inputs once truncated, overflowed, misread or leaked without a word (issue 20, 11 and 13)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from composeseg.image import load_image
from composeseg.pipelines.cli import main
from composeseg.prompts import Prompts, as_prompts

BOX = [[0, 0, 8, 8]]


@pytest.mark.parametrize("label", [0.5, -0.5, 1.9])
def test_fractional_point_labels_are_refused(label: float) -> None:
    with pytest.raises(ValueError, match=r"point_labels\[0, 0\] = .* not a whole number"):
        Prompts(points=[[[4, 4]]], point_labels=[[label]])
    with pytest.raises(ValueError, match="not a whole number"):
        as_prompts(points=[[4, 4]], point_labels=[label])


def test_whole_float_labels_and_ids_are_kept() -> None:
    prompts = Prompts(
        boxes=BOX, points=[[[4, 4]]], point_labels=[[1.0]], class_id=[3.0], tracker_id=[7.0]
    )
    assert prompts.point_labels.tolist() == [[1]] and prompts.point_labels.dtype == np.int32
    assert prompts.class_id.tolist() == [3] and prompts.tracker_id.tolist() == [7]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("class_id", [1.5], r"class_id\[0\] = 1.5 is not a whole number"),
        ("tracker_id", [1e20], r"tracker_id\[0\] = 1e\+20 is not a whole number.*int64"),
        ("tracker_id", [float("nan")], r"tracker_id\[0\] = nan"),
    ],
)
def test_ids_are_never_truncated_or_overflowed(field: str, value: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Prompts(boxes=BOX, **{field: value})


@pytest.mark.parametrize("make", [lambda: Prompts(boxes=[]), lambda: as_prompts(boxes=[])])
def test_an_empty_box_list_is_no_objects(make: object) -> None:
    prompts = make()  # type: ignore[operator]
    assert prompts.boxes.shape == (0, 4) and len(prompts) == 0


def test_an_empty_box_list_segments_nothing(tiny_sam: object) -> None:
    prediction = tiny_sam.segment(np.zeros((40, 50, 3), np.uint8), boxes=[])  # type: ignore[attr-defined]
    assert prediction.masks.shape[0] == 0


def test_uint16_holding_8_bit_values_warns() -> None:
    with pytest.warns(UserWarning, match=r"uint16 image whose values all lie in \[0, 200\]"):
        out = load_image(np.full((4, 4, 3), 200, np.uint16))
    assert out.max() == 1  # the documented scaling still applies: the warning says why
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # real 16-bit data: no warning
        load_image(np.full((4, 4, 3), 40000, np.uint16))


def test_cli_refuses_a_fractional_point_label(
    tmp_path: Path, tiny_sam_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "scene.png"
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(image)
    argv = ["segment", str(image), "--point", "10,10,0.7", "-o", str(tmp_path / "out")]
    assert main([*argv, "--sam", str(tiny_sam_dir), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("composeseg segment: error: --point '10,10,0.7': the label must be")


def test_an_animated_gif_leaves_no_open_file(tmp_path: Path) -> None:
    import gc

    frames = [Image.fromarray(np.full((10, 12, 3), v, np.uint8)) for v in (0, 90, 180)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_image(path).shape == (10, 12, 3)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
