"""The domain-randomised training family: deterministic, exact ground truth, wide ranges."""

from __future__ import annotations

import ast
from pathlib import Path

import cv2
import numpy as np
import pytest

from composeseg.synthetic.randomized import (
    DENSE_LAYOUT,
    RANDOMIZED_KINDS,
    RandomizedConfig,
    generate_randomized_scene,
)
from composeseg.train.config import TRAIN_SEED_LIMIT, VALIDATION_SEED_START
from composeseg.train.data import SyntheticSource

ROOT = Path(__file__).resolve().parents[2]


def test_same_seed_same_scene() -> None:
    a, b = (generate_randomized_scene(11) for _ in range(2))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks(), b.masks())
    assert not np.array_equal(a.image, generate_randomized_scene(12).image)


def test_ground_truth_is_exact_and_the_ranges_are_wide() -> None:
    aspects, kinds, means = [], set(), []
    for seed in range(40):
        scene = generate_randomized_scene(seed)
        masks = scene.masks()
        assert scene.image.dtype == np.uint8 and scene.image.shape[:2] == masks.shape[1:]
        assert len(masks) >= 1 and masks.sum(0).max() <= 1  # visible masks are disjoint
        for instance in scene.instances:
            ys, xs = np.nonzero(instance.mask)
            assert instance.box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert instance.category_id == 1 + RANDOMIZED_KINDS.index(instance.kind)
            assert instance.area >= RandomizedConfig().min_visible
            kinds.add(instance.kind)
        aspects.append(scene.width / scene.height)
        means.append(scene.image.reshape(-1, 3).mean(0))
    assert kinds == set(RANDOMIZED_KINDS)
    assert min(aspects) < 0.6 and max(aspects) > 1.6
    assert np.ptp(np.array(means), axis=0).min() > 60  # colours are not from a fixed palette


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="max_aspect"):
        RandomizedConfig(max_aspect=0.5)
    with pytest.raises(ValueError, match="min_objects"):
        RandomizedConfig(min_objects=5, max_objects=2)
    with pytest.raises(ValueError, match="stacked"):
        RandomizedConfig(stacked=1.2)
    with pytest.raises(ValueError, match="randomized"):
        SyntheticSource(randomized=1.5)


def test_stacked_layouts_make_objects_touch() -> None:
    def touching_share(config: RandomizedConfig) -> float:
        touching = total = 0
        for seed in range(12):
            masks = generate_randomized_scene(seed, config).masks()
            for i, mask in enumerate(masks):
                grown = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
                touching += bool((grown & np.delete(masks, i, axis=0).any(0)).any())
                total += 1
        return touching / total

    assert (
        touching_share(RandomizedConfig(stacked=1.0))
        > touching_share(RandomizedConfig(stacked=0.0)) + 0.2
    )


def test_the_training_source_mixes_both_families() -> None:
    source = SyntheticSource(randomized=0.5)
    keys = [source.train_sample(np.random.default_rng(s)).key for s in range(40)]
    share = sum(k.startswith("randomized-") for k in keys) / len(keys)
    assert 0.25 < share < 0.75

    validation = [s.key for s in source.validation_samples(4)]
    assert validation[1] == f"randomized-{VALIDATION_SEED_START + 1}"
    assert validation[0].startswith(f"scene-{VALIDATION_SEED_START}-")
    plain = SyntheticSource().validation_samples(2)
    assert all(s.key.startswith("scene-") for s in plain)


def test_the_training_source_draws_dense_layouts_when_asked() -> None:
    source = SyntheticSource(randomized=1.0, randomized_config=DENSE_LAYOUT)
    sample = source.train_sample(np.random.default_rng(5))
    seed = int(np.random.default_rng(5).integers(0, TRAIN_SEED_LIMIT))  # the source's draw
    assert np.array_equal(sample.masks, generate_randomized_scene(seed, DENSE_LAYOUT).masks())
    assert not np.array_equal(sample.image, generate_randomized_scene(seed).image)
    assert sample.key != SyntheticSource(randomized=1.0).train_sample(np.random.default_rng(5)).key


def test_the_randomized_family_shares_no_code_with_the_evaluation_family() -> None:
    tree = ast.parse((ROOT / "composeseg" / "synthetic" / "randomized.py").read_text())
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not any("independent" in name for name in imported), imported
