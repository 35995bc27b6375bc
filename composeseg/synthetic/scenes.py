"""Seeded synthetic scenes of coloured shapes with exact instance ground truth.

``generate_scene(seed, config)`` is a pure function of its arguments: it draws every random
number from ``np.random.default_rng(seed)``. Every pixel painted with an object's colour
belongs to that object's mask (objects that would end up too occluded or too small are never
drawn rather than drawn and left unlabelled), visible masks are disjoint, and instance ids
follow z-order.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from composeseg.geometry import tight_boxes
from composeseg.synthetic.shapes import (
    COLORS,
    KINDS,
    ShapeRaster,
    polygon_area,
    rasterize_polygons,
    sample_aspect,
    shape_polygons,
)
from composeseg.synthetic.textures import (
    BACKGROUNDS,
    PATTERN_KINDS,
    SHARP_PATTERN_KINDS,
    composite,
    distinct_from,
    finalize,
    illumination,
    local_coords,
    object_fill,
    render_background,
    sample_pattern,
)

SIZE_NAMES: tuple[str, ...] = ("small", "medium", "large")
SIZE_THRESHOLDS: tuple[float, float] = (0.01, 0.05)
"""Visible area / image area below which an instance is "small", resp. "medium"."""

MIN_AREA_FRACTION = 0.001  # instances must cover at least this share of the image ...
MIN_AREA_PIXELS = 16  # ... and at least this many pixels
_CONTRAST_RING_PX = 3  # width of the surround an object's colour must stand out from
_ATTEMPTS_PER_OBJECT = 30


def check(ok: bool, name: str, value: object, expected: str) -> None:
    """Raise ``ValueError`` naming the config field and value unless ``ok``."""
    if not ok:
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def check_int(name: str, value: object, low: int) -> None:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low
    check(bool(ok), name, value, f"an int >= {low}")


def check_choices(name: str, value: object, allowed: Iterable[str]) -> tuple[str, ...]:
    """Validate a non-empty, duplicate-free sequence drawn from ``allowed``; return a tuple."""
    allowed = tuple(allowed)
    items = tuple(value) if isinstance(value, (tuple, list)) else ()
    ok = bool(items) and all(v in allowed for v in items) and len(set(items)) == len(items)
    check(ok, name, value, f"a non-empty tuple of distinct values from {allowed}")
    return items


def min_instance_pixels(height: int, width: int) -> float:
    """Smallest visible area (px) an instance may have in a ``height x width`` image."""
    return max(float(MIN_AREA_PIXELS), MIN_AREA_FRACTION * height * width)


def size_name(area: float, image_area: float) -> str:
    """``"small"``, ``"medium"`` or ``"large"`` by ``area / image_area`` (``SIZE_THRESHOLDS``)."""
    frac = area / image_area
    return (
        SIZE_NAMES[0]
        if frac < SIZE_THRESHOLDS[0]
        else SIZE_NAMES[1 if frac < SIZE_THRESHOLDS[1] else 2]
    )


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are drawn. Invalid values raise ``ValueError`` naming the field.

    Attributes:
        height, width: image size in pixels (>= 16; need not be square).
        min_objects, max_objects: the target object count is uniform in this range; placement
            is best effort, so a crowded config may yield fewer.
        min_size, max_size: object extent (long axis) as a fraction of ``min(height, width)``,
            drawn log-uniformly so small objects are as common as large ones.
        kinds, colors: subsets of ``KINDS`` and ``COLORS`` to draw from.
        background: ``"flat"``, ``"gradient"``, ``"textured"`` or ``"random"``.
        object_texture_prob: chance that an object is striped/checked/grainy/blotchy.
        allow_occlusion: if False, objects never overlap (they may touch).
        min_visible_fraction: an object must keep at least this fraction of its full shape
            area visible (after occlusion and cropping by the image border).
        lighting_noise: strength of the global illumination gradient (``1 ± s``) and of
            Gaussian pixel noise (sigma ``128 * s`` grey levels).
        strong_texture: textures are sharp (stripes, checks, grain; no soft blotches) and
            textured backgrounds use high-contrast colour pairs.
        distinct_attributes: no two instances share ``(color, kind)``, so a caption without
            its size word still names exactly one object.
    """

    height: int = 256
    width: int = 256
    min_objects: int = 2
    max_objects: int = 8
    min_size: float = 0.06
    max_size: float = 0.45
    kinds: tuple[str, ...] = KINDS
    colors: tuple[str, ...] = tuple(COLORS)
    background: str = "random"
    object_texture_prob: float = 0.3
    allow_occlusion: bool = True
    min_visible_fraction: float = 0.35
    lighting_noise: float = 0.04
    strong_texture: bool = False
    distinct_attributes: bool = False

    def __post_init__(self) -> None:
        check_int("height", self.height, 16)
        check_int("width", self.width, 16)
        check_int("min_objects", self.min_objects, 0)
        check_int("max_objects", self.max_objects, max(int(self.min_objects), 1))
        check(0.0 < self.min_size <= 1.0, "min_size", self.min_size, "in (0, 1]")
        check(self.min_size <= self.max_size <= 1.0, "max_size", self.max_size, "in [min_size, 1]")
        object.__setattr__(self, "kinds", check_choices("kinds", self.kinds, KINDS))
        object.__setattr__(self, "colors", check_choices("colors", self.colors, COLORS))
        check(self.background in BACKGROUNDS, "background", self.background, f"in {BACKGROUNDS}")
        p = self.object_texture_prob
        check(0.0 <= p <= 1.0, "object_texture_prob", p, "in [0, 1]")
        for name in ("allow_occlusion", "strong_texture", "distinct_attributes"):
            check(isinstance(getattr(self, name), bool), name, getattr(self, name), "a bool")
        v = self.min_visible_fraction
        check(0.0 < v <= 1.0, "min_visible_fraction", v, "in (0, 1]")
        check(
            0.0 <= self.lighting_noise <= 0.5, "lighting_noise", self.lighting_noise, "in [0, 0.5]"
        )

    @classmethod
    def textured(cls, **overrides: Any) -> SceneConfig:
        """Preset where background and every object carry sharp stripes, checks or grain.

        Texture edges there are as strong as object edges, so an edge detector that follows
        objects (SAM) and one that follows intensity (Sobel, Canny) score very differently.
        """
        preset: dict[str, Any] = {
            "background": "textured",
            "object_texture_prob": 1.0,
            "strong_texture": True,
        }
        return cls(**{**preset, **overrides})

    def replace(self, **changes: Any) -> SceneConfig:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)


def stack_masks(instances: Sequence[Any], size: tuple[int, int]) -> np.ndarray:
    """``(N, H, W) bool`` from objects with a ``mask``; ``(0, H, W)`` when there are none."""
    if not instances:
        return np.zeros((0, *size), dtype=bool)
    return np.stack([inst.mask for inst in instances])


def stack_boxes(instances: Sequence[Any]) -> np.ndarray:
    """``(N, 4) float32`` xyxy from objects with a ``box``; ``(0, 4)`` when there are none."""
    if not instances:
        return np.zeros((0, 4), dtype=np.float32)
    return np.stack([inst.box for inst in instances]).astype(np.float32)


@dataclass(frozen=True, eq=False)
class Instance:
    """One object of a scene.

    Attributes:
        mask: ``(H, W) bool``, the visible part after occlusion and image-border cropping.
        box: ``(4,) float32`` xyxy in pixels, tight box of ``mask`` (x2, y2 = max index + 1).
        kind: one of ``KINDS``.
        color: one of ``COLORS``.
        size: ``"small"``/``"medium"``/``"large"`` from visible area (``SIZE_THRESHOLDS``).
        category_id: ``1 + KINDS.index(kind)``.
        caption: ``f"{size} {color} {kind}"``, e.g. ``"small red triangle"``.
        instance_id: ``1..N`` in z-order; a higher id is drawn on top.
        textured: whether the object carries a texture rather than a flat colour.
    """

    mask: np.ndarray
    box: np.ndarray
    kind: str
    color: str
    size: str
    category_id: int
    caption: str
    instance_id: int
    textured: bool = False

    @property
    def area(self) -> int:
        """Visible area in pixels."""
        return int(np.count_nonzero(self.mask))


@dataclass(frozen=True, eq=False)
class Scene:
    """A generated image and its instances.

    Attributes:
        image: ``(H, W, 3) uint8`` RGB.
        instances: in z-order (``instance_id`` = position + 1).
        seed: the seed it was generated from.
    """

    image: np.ndarray
    instances: tuple[Instance, ...]
    seed: int

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    def masks(self) -> np.ndarray:
        """``(N, H, W) bool`` visible masks, pairwise disjoint."""
        return stack_masks(self.instances, (self.height, self.width))

    def boxes(self) -> np.ndarray:
        """``(N, 4) float32`` xyxy pixel boxes of the visible masks."""
        return stack_boxes(self.instances)

    def label_map(self) -> np.ndarray:
        """``(H, W) int32``: 0 for background, else the ``instance_id`` owning the pixel."""
        labels = np.zeros((self.height, self.width), dtype=np.int32)
        for inst in self.instances:
            labels[inst.mask] = inst.instance_id
        return labels

    def boundaries(self, width: int = 1) -> np.ndarray:
        """``(H, W) bool`` object boundaries: ground truth for edge detection.

        A pixel is a boundary pixel when a 4-neighbour has a lower label, i.e. the edge is
        drawn one pixel thick on the object side of outer and hole contours and on the
        occluding (upper) side between two objects. The image border is not a boundary.
        ``width > 1`` dilates the result with a ``width x width`` square.
        """
        check_int("width", width, 1)
        labels = self.label_map()
        out = np.zeros(labels.shape, dtype=bool)
        for axis in (0, 1):
            a = labels[:-1] if axis == 0 else labels[:, :-1]
            b = labels[1:] if axis == 0 else labels[:, 1:]
            lead = out[:-1] if axis == 0 else out[:, :-1]
            trail = out[1:] if axis == 0 else out[:, 1:]
            lead |= a > b
            trail |= b > a
        if width > 1:
            kernel = np.ones((width, width), dtype=np.uint8)
            out = cv2.dilate(out.view(np.uint8), kernel).astype(bool)
        return out


@dataclass(eq=False)
class _Placed:
    """Mutable bookkeeping for one drawn object while the scene is built."""

    kind: str
    color: str
    textured: bool
    full_area: float  # polygon area in px², including any part outside the image
    visible: np.ndarray  # (H, W) bool, shrinks as objects are drawn on top
    area: int


def _surround_pixels(canvas: np.ndarray, raster: ShapeRaster) -> np.ndarray:
    """``(K, 3)`` canvas pixels in a thin ring just outside ``raster``'s mask."""
    r = _CONTRAST_RING_PX
    h, w = canvas.shape[:2]
    rows, cols = raster.slices
    y0, x0 = max(rows.start - r, 0), max(cols.start - r, 0)
    y1, x1 = min(rows.stop + r, h), min(cols.stop + r, w)
    inner = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    inner[rows.start - y0 : rows.stop - y0, cols.start - x0 : cols.stop - x0] = raster.mask
    outer = cv2.dilate(inner, np.ones((2 * r + 1, 2 * r + 1), dtype=np.uint8))
    return canvas[y0:y1, x0:x1][(outer > 0) & (inner == 0)]


def _pick_color(
    rng: np.random.Generator,
    candidates: list[str],
    surround: np.ndarray,
) -> str | None:
    for name in rng.permutation(candidates) if candidates else []:
        if distinct_from(COLORS[str(name)], surround):
            return str(name)
    return None


def generate_scene(seed: int, config: SceneConfig = SceneConfig()) -> Scene:
    """Draw one scene; identical ``(seed, config)`` give identical arrays.

    Args:
        seed: non-negative int, the only source of randomness.
        config: see ``SceneConfig``.

    Returns:
        ``Scene`` with ``image`` ``(config.height, config.width, 3) uint8`` and its instances.
    """
    check_int("seed", seed, 0)
    rng = np.random.default_rng(int(seed))
    h, w = config.height, config.width
    canvas = render_background(rng, h, w, config.background, strong=config.strong_texture)
    n_target = int(rng.integers(config.min_objects, config.max_objects + 1))
    min_pixels = min_instance_pixels(h, w)
    log_lo = math.log(config.min_size * min(h, w))
    log_hi = math.log(config.max_size * min(h, w))
    placed: list[_Placed] = []
    n_pairs = len(config.kinds) * len(config.colors)
    for _ in range(_ATTEMPTS_PER_OBJECT * n_target):
        if len(placed) >= n_target or (config.distinct_attributes and len(placed) >= n_pairs):
            break
        kind = config.kinds[int(rng.integers(len(config.kinds)))]
        size = math.exp(rng.uniform(log_lo, log_hi))
        aspect = sample_aspect(kind, size, rng)
        angle = float(rng.uniform(0.0, 360.0))
        center = (float(rng.uniform(0, w)), float(rng.uniform(0, h)))
        polygons = shape_polygons(kind, center, size, angle, aspect)
        raster = rasterize_polygons(polygons, h, w)
        mask = raster.mask
        area = int(np.count_nonzero(mask))
        full_area = polygon_area(polygons)
        if area < min_pixels or area < config.min_visible_fraction * full_area:
            continue  # mostly outside the image, or too small to be a fair target
        rows, cols = raster.slices
        overlaps = [int(np.count_nonzero(p.visible[rows, cols] & mask)) for p in placed]
        if any(
            ov and (not config.allow_occlusion or not _keeps_enough(p, ov, config, min_pixels))
            for p, ov in zip(placed, overlaps, strict=True)
        ):
            continue
        used = {(p.color, p.kind) for p in placed} if config.distinct_attributes else set()
        candidates = [c for c in config.colors if (c, kind) not in used]
        color = _pick_color(rng, candidates, _surround_pixels(canvas, raster))
        if color is None:
            continue
        pattern = None
        if rng.random() < config.object_texture_prob:
            kinds = SHARP_PATTERN_KINDS if config.strong_texture else PATTERN_KINDS
            pattern = sample_pattern(rng, (max(4.0, 0.12 * size), max(6.0, 0.3 * size)), kinds)
        fill = object_fill(COLORS[color], pattern, *local_coords(raster, center, angle))
        composite(canvas, raster, fill)
        for p, ov in zip(placed, overlaps, strict=True):
            if ov:
                p.visible[rows, cols] &= ~mask
                p.area -= ov
        placed.append(
            _Placed(kind, color, pattern is not None, full_area, raster.full_mask(h, w), area)
        )
    strength = config.lighting_noise
    light = illumination(rng, h, w, strength) if strength > 0 else None
    image = finalize(canvas, rng, strength, light)
    instances = tuple(_to_instance(p, i + 1, h * w) for i, p in enumerate(placed))
    return Scene(image=image, instances=instances, seed=int(seed))


def _keeps_enough(p: _Placed, overlap: int, config: SceneConfig, min_pixels: float) -> bool:
    remaining = p.area - overlap
    return remaining >= min_pixels and remaining >= config.min_visible_fraction * p.full_area


def _to_instance(p: _Placed, instance_id: int, image_area: int) -> Instance:
    size = size_name(p.area, image_area)
    return Instance(
        mask=p.visible,
        box=tight_boxes(p.visible[None])[0],
        kind=p.kind,
        color=p.color,
        size=size,
        category_id=KINDS.index(p.kind) + 1,
        caption=f"{size} {p.color} {p.kind}",
        instance_id=instance_id,
        textured=p.textured,
    )


def generate_scenes(seeds: Iterable[int], config: SceneConfig = SceneConfig()) -> Iterator[Scene]:
    """Lazily ``generate_scene(seed, config)`` for each seed."""
    for seed in seeds:
        yield generate_scene(seed, config)
