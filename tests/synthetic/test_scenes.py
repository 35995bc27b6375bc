"""Tests for composeseg.synthetic shapes, textures and scenes."""

from __future__ import annotations

import dataclasses
from typing import Any

import cv2
import numpy as np
import pytest
from scipy import ndimage

from composeseg.synthetic import (
    COLORS,
    KINDS,
    SIZE_THRESHOLDS,
    SceneConfig,
    generate_scene,
    generate_scenes,
    rasterize,
)
from composeseg.synthetic.scenes import Scene, min_instance_pixels

CROSS = ndimage.generate_binary_structure(2, 1)

CONFIGS = {
    "default": SceneConfig(),
    "small_nonsquare": SceneConfig(height=96, width=160),
    "textured": SceneConfig.textured(height=128, width=128),
    "no_occlusion": SceneConfig(height=128, width=128, allow_occlusion=False, max_objects=10),
    "crowded_tiny": SceneConfig(height=128, width=128, min_objects=8, max_objects=12, max_size=0.2),
    "distinct": SceneConfig(height=128, width=128, kinds=("ring", "star"), colors=("red", "blue"),
                            distinct_attributes=True),
}  # fmt: skip
SEEDS = (0, 1, 2, 3)


def _nearest_color(rgb: np.ndarray) -> str:
    names = list(COLORS)
    palette = np.array([COLORS[n] for n in names], dtype=np.float64)
    return names[int(np.argmin(np.linalg.norm(palette - rgb, axis=1)))]


@pytest.mark.parametrize("kind", KINDS)
def test_shape_is_centred_sized_and_rotation_stable(kind: str) -> None:
    mask = rasterize(kind, 128, 128, (64.0, 64.0), 60.0)
    ys, xs = np.nonzero(mask)
    extent = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    assert 58 <= extent <= 63, extent  # size is the long-axis extent (AA adds < 1 px)
    box_centre = ((xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2)
    assert np.allclose(box_centre, (64.0, 64.0), atol=1.5)
    rotated = rasterize(kind, 128, 128, (64.0, 64.0), 60.0, angle_deg=37.0)
    assert abs(int(rotated.sum()) - int(mask.sum())) <= 0.04 * mask.sum()


def test_ring_has_a_real_hole_and_other_shapes_do_not() -> None:
    for kind in KINDS:
        mask = rasterize(kind, 96, 96, (48.0, 48.0), 60.0)
        holes = ndimage.binary_fill_holes(mask) & ~mask
        assert (holes.sum() > 300) == (kind == "ring"), kind
    assert not rasterize("ring", 96, 96, (48.0, 48.0), 60.0)[48, 48]


def test_rasterize_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="kind"):
        rasterize("blob", 32, 32, (16, 16), 10)
    with pytest.raises(ValueError, match="size"):
        rasterize("square", 32, 32, (16, 16), 0)
    with pytest.raises(ValueError, match="aspect"):
        rasterize("ellipse", 32, 32, (16, 16), 10, aspect=1.5)


def test_same_seed_same_scene_different_seed_different_scene() -> None:
    config = SceneConfig(height=128, width=128)
    a, b, c = generate_scene(7, config), generate_scene(7, config), generate_scene(8, config)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.masks(), b.masks())
    assert [i.caption for i in a.instances] == [i.caption for i in b.instances]
    assert not np.array_equal(a.image, c.image)
    assert [s.seed for s in generate_scenes([7, 8], config)] == [7, 8]
    assert np.array_equal(next(generate_scenes([7], config)).image, a.image)


@pytest.mark.parametrize("name", CONFIGS)
def test_instance_invariants(name: str) -> None:
    config = CONFIGS[name]
    h, w = config.height, config.width
    for scene in generate_scenes(SEEDS, config):
        n = len(scene.instances)
        assert scene.image.shape == (h, w, 3) and scene.image.dtype == np.uint8
        assert 1 <= n <= config.max_objects
        masks, boxes = scene.masks(), scene.boxes()
        assert masks.shape == (n, h, w) and masks.dtype == bool
        assert boxes.shape == (n, 4) and boxes.dtype == np.float32
        assert masks.sum(axis=0).max() <= 1  # visible masks are disjoint
        labels = scene.label_map()
        assert labels.dtype == np.int32 and set(np.unique(labels)) <= set(range(n + 1))
        for i, inst in enumerate(scene.instances):
            assert inst.instance_id == i + 1
            assert inst.area >= min_instance_pixels(h, w)
            ys, xs = np.nonzero(inst.mask)
            assert inst.box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert np.array_equal(labels == inst.instance_id, inst.mask)
            assert inst.kind in config.kinds and inst.color in config.colors
            assert inst.category_id == KINDS.index(inst.kind) + 1
            assert inst.caption == f"{inst.size} {inst.color} {inst.kind}"
            frac = inst.area / (h * w)
            expected = (
                "small"
                if frac < SIZE_THRESHOLDS[0]
                else "medium"
                if frac < SIZE_THRESHOLDS[1]
                else "large"
            )
            assert inst.size == expected
        if config.distinct_attributes:
            pairs = [(i.color, i.kind) for i in scene.instances]
            assert len(pairs) == len(set(pairs))
        if name == "textured":
            assert all(i.textured for i in scene.instances)


def _concavity(mask: np.ndarray) -> float:
    """Pixels missing from the mask's filled convex hull, relative to sqrt(area).

    Pixel staircases alone give < ~2 (a perimeter-like term); a bite taken out by another
    object gives several times that.
    """
    pts = np.argwhere(mask)[:, ::-1].astype(np.int32)
    hull = np.zeros(mask.shape, dtype=np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(pts), 1)
    return float((hull.sum() - mask.sum()) / np.sqrt(mask.sum()))


@pytest.mark.parametrize("allow_occlusion", [False, True])
def test_occlusion_cuts_masks_only_when_allowed(allow_occlusion: bool) -> None:
    # Convex shapes stay convex when cropped by the border, so a concave visible mask means
    # another object was drawn over part of it.
    kinds = ("square", "hexagon", "ellipse")
    config = SceneConfig(
        height=128, width=128, min_objects=8, max_objects=10, kinds=kinds,
        allow_occlusion=allow_occlusion,
    )  # fmt: skip
    scenes = generate_scenes(SEEDS, config)
    worst = max(_concavity(inst.mask) for scene in scenes for inst in scene.instances)
    assert (worst > 5.0) if allow_occlusion else (worst < 2.5)


def test_boundaries_lie_on_mask_edges() -> None:
    config = SceneConfig(height=128, width=128, min_objects=5, max_objects=8)
    for scene in generate_scenes(SEEDS, config):
        labels = scene.label_map()
        edges = scene.boundaries()
        assert edges.shape == labels.shape and edges.dtype == bool
        inner_edge = np.zeros_like(edges)
        for inst in scene.instances:
            inner_edge |= inst.mask & ~ndimage.binary_erosion(inst.mask, CROSS, border_value=1)
        assert not (edges & ~inner_edge).any()  # only on edges of masks (object side)
        touches_background = (labels > 0) & ndimage.binary_dilation(labels == 0, CROSS)
        assert not (touches_background & ~edges).any()  # every object/background edge
        thick = scene.boundaries(width=3)
        assert (thick | ~edges).all() and thick.sum() > edges.sum()


def test_colour_names_match_pixels_and_objects_stand_out() -> None:
    for config in (SceneConfig(height=128, width=128), CONFIGS["textured"]):
        for scene in generate_scenes(SEEDS, config):
            labels = scene.label_map()
            img = scene.image.astype(np.float64)
            for inst in scene.instances:
                core = ndimage.binary_erosion(inst.mask, CROSS, iterations=2)
                if core.sum() < 10:
                    continue
                mean = img[core].mean(axis=0)
                assert _nearest_color(mean) == inst.color, (scene.seed, inst.caption, mean)
                ring = ndimage.binary_dilation(inst.mask, CROSS, iterations=2) & ~inst.mask
                ring &= labels != inst.instance_id
                d = np.linalg.norm(img[ring] - np.array(COLORS[inst.color]), axis=1)
                assert np.mean(d < 40) < 0.15, (scene.seed, inst.caption)


def test_textured_preset_and_replace() -> None:
    config = SceneConfig.textured(height=64)
    assert (config.background, config.object_texture_prob, config.strong_texture) == (
        "textured",
        1.0,
        True,
    )
    assert config.height == 64 and config.replace(width=80).width == 80
    assert SceneConfig(kinds=["star", "ring"]).kinds == ("star", "ring")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("height", 8),
        ("width", 100.5),
        ("height", True),
        ("min_objects", -1),
        ("max_objects", 0),
        ("min_size", 0.0),
        ("max_size", 1.5),
        ("kinds", ("triangle", "blob")),
        ("kinds", ()),
        ("colors", ("red", "red")),
        ("background", "plaid"),
        ("object_texture_prob", 1.2),
        ("allow_occlusion", 1),
        ("min_visible_fraction", 0.0),
        ("lighting_noise", -0.1),
    ],
)
def test_bad_config_raises_value_error_naming_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        SceneConfig(**{field: value})


def test_bad_seed_and_min_above_max() -> None:
    with pytest.raises(ValueError, match="seed"):
        generate_scene(-1)
    with pytest.raises(ValueError, match="max_objects"):
        SceneConfig(min_objects=5, max_objects=3)
    with pytest.raises(ValueError, match="max_size"):
        SceneConfig(min_size=0.3, max_size=0.2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        SceneConfig().height = 3  # type: ignore[misc]


def _strong_gradients_off_boundaries(scene: Scene) -> float:
    """Share of the top-5% Sobel responses lying > 2 px from the ground-truth boundaries."""
    gray = cv2.cvtColor(scene.image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mag = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    strong = mag > np.percentile(mag, 95)
    near = ndimage.binary_dilation(scene.boundaries(), iterations=2)
    return float((strong & ~near).sum() / strong.sum())


def test_textured_preset_puts_intensity_edges_off_object_boundaries() -> None:
    plain = SceneConfig(height=128, width=128, background="flat", object_texture_prob=0.0,
                        lighting_noise=0.0)  # fmt: skip
    textured = SceneConfig.textured(height=128, width=128)
    off = [
        np.mean([_strong_gradients_off_boundaries(s) for s in generate_scenes(SEEDS, config)])
        for config in (plain, textured)
    ]
    assert off[0] < 0.1 and off[1] > 0.6, off
