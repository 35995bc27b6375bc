"""Point-prompt protocols: click placement checked without a model, then a tiny-model run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from composeseg.evaluation.points import (
    farthest_point,
    next_click,
    point_prompt_miou,
    scene_instances,
)
from composeseg.geometry import paired_mask_iou as iou
from composeseg.pipelines.cli import main
from composeseg.synthetic import SceneConfig, generate_scene


def _rect(shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        (_rect((40, 40), 10, 21, 5, 16), {(10.0, 15.0)}),  # 11 x 11 square: its centre
        (_rect((40, 40), 0, 9, 0, 40), {(x, 4.0) for x in range(4, 36)}),  # top band: row 4
        (_rect((40, 40), 0, 40, 0, 40), {(x, y) for x in (19.0, 20.0) for y in (19.0, 20.0)}),
    ],
)
def test_farthest_point_is_deepest_inside(mask: np.ndarray, expected: set) -> None:
    # the image border counts as boundary: the top band's point is in its middle row
    assert farthest_point(mask) in expected


def test_farthest_point_of_an_empty_mask_is_none() -> None:
    assert farthest_point(np.zeros((8, 8), bool)) is None


def test_next_click_targets_the_larger_error() -> None:
    target = _rect((50, 50), 10, 40, 10, 40)
    (x, y), label = next_click(np.zeros_like(target), target)  # type: ignore[misc]
    assert label == 1 and (x, y) == (24.0, 24.0)
    spill = target | _rect((50, 50), 0, 50, 42, 50)  # a wide false-positive band on the right
    (x, y), label = next_click(spill, target)  # type: ignore[misc]
    assert label == 0 and x >= 42
    hole = target & ~_rect((50, 50), 20, 30, 20, 30)  # false-negative 10 x 10 hole
    (x, y), label = next_click(hole, target)  # type: ignore[misc]
    assert label == 1 and 20 <= x < 30 and 20 <= y < 30
    assert next_click(target, target) is None


def test_iou_broadcasts_over_candidates() -> None:
    target = _rect((10, 10), 0, 5, 0, 10)[None]
    candidates = np.stack([target[0], ~target[0], np.ones((10, 10), bool)])[None]
    assert iou(candidates, target).tolist() == [[1.0, 0.0, 0.5]]


def test_tiny_model_run_counts_every_instance(tiny_sam) -> None:  # type: ignore[no-untyped-def]
    config = SceneConfig(height=80, width=112, max_objects=3)
    metrics = point_prompt_miou(tiny_sam, scene_instances(range(3), config), interactive_points=2)
    expected = sum(len(generate_scene(s, config).instances) for s in range(3))
    assert metrics.instances == expected and metrics.images == 3
    for value in (metrics.box, metrics.one_point_oracle, metrics.interactive):
        assert 0.0 <= value <= 1.0
    assert metrics.one_point_oracle >= metrics.one_point_confident


def test_empty_input_is_an_error(tiny_sam) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="no instance"):
        point_prompt_miou(
            tiny_sam, [(np.zeros((20, 20, 3), np.uint8), np.zeros((0, 20, 20), bool))]
        )


def test_cli_on_a_coco_folder(tiny_sam_dir: Path, tmp_path: Path) -> None:
    from composeseg.synthetic import write_coco

    config = SceneConfig(height=64, width=64, max_objects=2)
    annotations = write_coco([generate_scene(s, config) for s in range(2)], tmp_path / "coco")
    out = tmp_path / "metrics.json"
    images = str(tmp_path / "coco" / "images")
    argv = ["eval", "points", "--gt", str(annotations), "--images", images]
    argv += ["--sam", str(tiny_sam_dir), "--device", "cpu", "--points", "2", "-o", str(out)]
    assert main(argv) == 0
    payload = json.loads(out.read_text())
    assert payload["images"] == 2 and payload["interactive_points"] == 2
