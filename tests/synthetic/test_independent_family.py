"""The independent scene family: deterministic, exact ground truth, kept out of training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from composeseg.synthetic.independent import (
    INDEPENDENT_KINDS,
    IndependentConfig,
    generate_independent_scene,
    independent_seeds,
)

ROOT = Path(__file__).resolve().parents[2]


def test_same_seed_same_scene_and_splits_apart() -> None:
    a, b = (generate_independent_scene(independent_seeds("test", 1)[0]) for _ in range(2))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks(), b.masks())
    validation = set(independent_seeds("validation", 500))
    test = set(independent_seeds("test", 500))
    assert not validation & test
    assert min(validation | test) > 2_000_000_000  # far from the training generator's seeds


def test_ground_truth_is_exact_and_varied() -> None:
    aspects, kinds = [], set()
    for seed in independent_seeds("validation", 40):
        scene = generate_independent_scene(seed)
        masks = scene.masks()
        assert scene.image.dtype == np.uint8 and scene.image.shape[:2] == masks.shape[1:]
        assert len(masks) >= 1 and masks.sum(0).max() <= 1  # visible masks are disjoint
        for instance in scene.instances:
            ys, xs = np.nonzero(instance.mask)
            box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert instance.box.tolist() == box  # tight, max exclusive
            assert instance.category_id == 1 + INDEPENDENT_KINDS.index(instance.kind)
            kinds.add(instance.kind)
        aspects.append(scene.width / scene.height)
    assert kinds == set(INDEPENDENT_KINDS)
    assert min(aspects) < 0.6 and max(aspects) > 1.6  # far from square both ways


def test_bad_config_and_split_are_refused() -> None:
    with pytest.raises(ValueError, match="max_aspect"):
        IndependentConfig(max_aspect=0.5)
    with pytest.raises(ValueError, match="split"):
        independent_seeds("train", 3)  # type: ignore[arg-type]


def test_training_code_never_draws_the_independent_family() -> None:
    for path in (ROOT / "composeseg" / "train").rglob("*.py"):
        assert "independent" not in path.read_text(), f"{path} mentions the independent family"
