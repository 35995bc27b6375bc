"""Generated scene families for evaluation: seeds outside every training range, the right
generator behind each name, and the CLI's --family choices."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from composeseg.evaluation.families import (
    SCENE_FAMILIES,
    family_scene,
    family_seeds,
)
from composeseg.evaluation.points import scene_instances
from composeseg.pipelines.cli import main
from composeseg.synthetic.independent import independent_seeds
from composeseg.train.config import EVALUATION_SEED_START, TRAIN_SEED_LIMIT


@pytest.mark.parametrize("family", [f for f in SCENE_FAMILIES if f != "independent"])
def test_trained_families_evaluate_on_seeds_no_training_run_draws(family: str) -> None:
    seeds = family_seeds(family, 3)
    assert seeds == [EVALUATION_SEED_START + i for i in range(3)]
    assert min(seeds) >= TRAIN_SEED_LIMIT


@pytest.mark.parametrize("split", ["validation", "test"])
def test_independent_family_draws_its_split(split: str) -> None:
    assert family_seeds("independent", 4, split) == independent_seeds(split, 4)  # type: ignore[arg-type]


def test_each_family_name_draws_its_own_generator() -> None:
    from composeseg.synthetic import SceneConfig, generate_scene
    from composeseg.synthetic.independent import generate_independent_scene
    from composeseg.synthetic.randomized import DENSE_LAYOUT, generate_randomized_scene

    seed = EVALUATION_SEED_START + 7
    expected = {
        "training": generate_scene(seed, SceneConfig()),
        "randomized": generate_randomized_scene(seed),
        "randomized-dense": generate_randomized_scene(seed, DENSE_LAYOUT),
        "independent": generate_independent_scene(seed),
    }
    assert set(expected) == set(SCENE_FAMILIES)
    for family, scene in expected.items():
        drawn = family_scene(family, seed)
        assert np.array_equal(drawn.image, scene.image), family
        image, masks = next(scene_instances([seed], family=family))
        assert np.array_equal(image, scene.image) and np.array_equal(masks, scene.masks())


def test_crowded_layouts_hold_more_objects() -> None:
    seeds = family_seeds("randomized", 10)
    counts = {
        family: sum(len(family_scene(family, s).instances) for s in seeds)
        for family in ("randomized", "randomized-dense")
    }
    assert counts["randomized-dense"] > counts["randomized"]


def test_unknown_family_is_refused_with_the_choices() -> None:
    for call in (
        lambda: family_seeds("photos", 2),
        lambda: family_scene("photos", 0),
        lambda: next(scene_instances([0], family="photos")),
    ):
        with pytest.raises(ValueError, match="family must be one of.*randomized-dense"):
            call()


def test_families_module_imports_no_generator() -> None:
    # the CLI builds its --family choices from it while it registers every subcommand
    code = (
        "import sys, composeseg.evaluation.families; "
        "print([m for m in ('numpy', 'cv2', 'torch') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_eval_points_cli_runs_on_crowded_randomized_scenes(
    tiny_sam_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "metrics.json"
    argv = [
        "eval", "points", "--synthetic", "1", "--family", "randomized-dense", "--points", "1",
        "--sam", str(tiny_sam_dir), "--device", "cpu", "-o", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    metrics = json.loads(out.read_text())
    scene = family_scene("randomized-dense", EVALUATION_SEED_START)
    assert metrics["images"] == 1 and metrics["instances"] == len(scene.instances)
