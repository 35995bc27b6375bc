"""The independent scene family: deterministic, exact ground truth, kept out of training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from composeseg.synthetic.independent import (
    INDEPENDENT_KINDS,
    IndependentConfig,
    generate_independent_scene,
    independent_seeds,
)
from composeseg.synthetic.large import LargeSceneConfig, generate_large_scene

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


def test_large_scenes_of_the_independent_family() -> None:
    config = LargeSceneConfig(
        height=1100, width=900, small_objects=80, large_objects=1, family="independent"
    )
    scene = generate_large_scene(8_000_000_001, config)
    image = scene.image()
    assert np.array_equal(image, generate_large_scene(8_000_000_001, config).image())
    assert {o.kind for o in scene.objects} == set(INDEPENDENT_KINDS)
    contrast = []
    for obj in scene.objects:
        (x0, y0), (h, w) = obj.origin, obj.alpha.shape
        assert obj.box.tolist() == [x0, y0, x0 + w, y0 + h]  # each patch is cropped to its shape
        assert set(np.unique(obj.alpha)) <= {0, 255}  # exact masks, no antialiased rim
        under = image[y0 : y0 + h, x0 : x0 + w][obj.mask].astype(int)
        assert np.abs(under - obj.fill[obj.mask]).max() <= config.noise + 1  # the mask is exact
        contrast.append(np.abs(obj.fill[obj.mask].mean(0) - scene.background).max())
    # low-contrast objects (14-30 grey levels off the background, shading aside) and vivid ones
    assert min(contrast) < 35 and max(contrast) > 80
    with pytest.raises(ValueError, match="family"):
        LargeSceneConfig(family="photos")  # type: ignore[arg-type]


def test_training_code_never_draws_the_independent_family() -> None:
    for path in (ROOT / "composeseg" / "train").rglob("*.py"):
        assert "independent" not in path.read_text(), f"{path} mentions the independent family"


@pytest.mark.parametrize("split", ["validation", "test"])
def test_eval_points_cli_draws_the_chosen_split(
    split: str, tiny_sam_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import composeseg.evaluation.points as points
    from composeseg.pipelines.cli import main

    drawn: list[tuple[list[int], str]] = []
    original = points.scene_instances

    def recording(seeds: Any, *args: Any, **kwargs: Any) -> Any:
        drawn.append((list(seeds), kwargs.get("family", "")))
        return original(seeds, *args, **kwargs)

    monkeypatch.setattr(points, "scene_instances", recording)
    out = tmp_path / "metrics.json"
    argv = [
        "eval", "points", "--synthetic", "2", "--family", "independent", "--split", split,
        "--points", "1", "--sam", str(tiny_sam_dir), "--device", "cpu", "-o", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    assert drawn == [(independent_seeds(split, 2), "independent")]  # type: ignore[arg-type]
    assert json.loads(out.read_text())["images"] == 2


def test_independent_videos_are_deterministic_with_exact_tracks() -> None:
    from composeseg.synthetic.independent_video import iter_independent_video_frames

    seed = independent_seeds("validation", 1)[0]
    first, again = (list(iter_independent_video_frames(seed, 12)) for _ in range(2))
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, again, strict=True))
    centres: dict[int, list[np.ndarray]] = {}
    for frame in first:
        masks = frame.masks()
        assert frame.image.shape[:2] == masks.shape[1:] and masks.sum(0).max() <= 1
        for instance in frame.instances:
            ys, xs = np.nonzero(instance.mask)
            assert instance.box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert 0 < instance.visible_fraction <= 1
            centres.setdefault(instance.track_id, []).append(instance.box.reshape(2, 2).mean(0))
    moved = [np.hypot(*(c[-1] - c[0])) for c in centres.values() if len(c) == len(first)]
    assert moved and max(moved) > 3  # objects keep their ids while they move
    with pytest.raises(ValueError, match="n_frames"):
        next(iter_independent_video_frames(seed, 0))
