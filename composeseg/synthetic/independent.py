"""A second scene family, for evaluation only: different shapes, looks, layouts and sizes.

The demo models are trained on :mod:`composeseg.synthetic.scenes` (flat or striped polygons
from a fixed list, named colours, square images). Figures measured on new seeds of that
generator are in-distribution. This module draws scenes by other rules and other code, so
that a figure measured here says how the models do on shapes they were never shown:

- **shapes**: smooth irregular blobs (a radius made of random harmonics), concave polygons with
  many vertices, thin curved strokes, rings with an off-centre hole; objects may touch
  another one or sit inside a larger one;
- **looks**: colours drawn in HSV (no named palette), shading gradients and noise inside
  objects, some objects barely darker or lighter than what is behind them;
- **backgrounds**: multi-octave value noise, two-colour gradients, clutter of small strokes
  and dots that are not objects;
- **camera**: non-square images (aspect 1:3 to 3:1), lighting (gain and gamma), blur,
  sensor noise and JPEG compression, applied after the masks are drawn.

Never train or tune on it. :func:`independent_seeds` keeps a validation split (for choosing
settings) apart from the test split (for the figures that are reported).

Example:
    >>> scene = generate_independent_scene(independent_seeds("test", 1)[0])
    >>> scene.image.dtype, scene.masks().shape[0] > 0
    (dtype('uint8'), True)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from composeseg.geometry import tight_boxes
from composeseg.image import jpeg_roundtrip
from composeseg.synthetic.scenes import Instance, Scene

INDEPENDENT_KINDS = ("blob", "concave", "stroke", "ring")
"""Shape kinds of this family; ``Instance.category_id`` is ``1 + INDEPENDENT_KINDS.index``."""

_SPLIT_START = {"validation": 7_000_000_000, "test": 8_000_000_000}
"""Seeds far from the training generator's (< 1e9) and its evaluation seeds (1e9 ...)."""


@dataclass(frozen=True)
class IndependentConfig:
    """Options of :func:`generate_independent_scene`.

    Attributes:
        min_side, max_side: range of the image's shorter and longer side, pixels.
        max_aspect: the longer side is at most this many times the shorter.
        min_objects, max_objects: objects drawn (some may end up hidden and be dropped).
        low_contrast: share of objects drawn close to the colour behind them.
        min_visible: smallest visible area kept as an object, pixels.
    """

    min_side: int = 192
    max_side: int = 640
    max_aspect: float = 3.0
    min_objects: int = 3
    max_objects: int = 9
    low_contrast: float = 0.25
    min_visible: int = 64

    def __post_init__(self) -> None:
        if not 16 <= self.min_side <= self.max_side:
            raise ValueError(
                f"need 16 <= min_side <= max_side, got {self.min_side}, {self.max_side}"
            )
        if self.max_aspect < 1:
            raise ValueError(f"max_aspect must be >= 1, got {self.max_aspect}")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError("need 1 <= min_objects <= max_objects")
        if not 0 <= self.low_contrast <= 1:
            raise ValueError(f"low_contrast must be in [0, 1], got {self.low_contrast}")

    def replace(self, **changes: object) -> IndependentConfig:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def independent_seeds(split: Literal["validation", "test"], count: int) -> list[int]:
    """The first ``count`` seeds of a split: ``"validation"`` to choose settings on,
    ``"test"`` for reported figures only."""
    if split not in _SPLIT_START:
        raise ValueError(f"split must be 'validation' or 'test', got {split!r}")
    return list(range(_SPLIT_START[split], _SPLIT_START[split] + int(count)))


def generate_independent_scene(seed: int, config: IndependentConfig | None = None) -> Scene:
    """Draw one scene of the independent family; the same ``(seed, config)`` gives the same
    arrays.

    Returns:
        A :class:`~composeseg.synthetic.Scene`: ``image (H, W, 3) uint8`` with H, W and the
        aspect drawn from ``config``; instances in z-order with visible, disjoint masks,
        ``kind`` from :data:`INDEPENDENT_KINDS`, ``color`` ``"hsv"``.
    """
    config = config or IndependentConfig()
    for attempt in range(100):  # a scene whose every object ended up hidden is drawn again
        scene = _draw(np.random.default_rng([int(seed), 19, attempt]), int(seed), config)
        if scene.instances:
            return scene
    raise RuntimeError(f"seed {seed}: no visible object in 100 attempts")  # pragma: no cover


def independent_object(
    rng: np.random.Generator, size: float, background: np.ndarray, low_contrast: float = 0.25
) -> tuple[np.ndarray, np.ndarray, str]:
    """One object of this family on a patch of its own, for composing large scenes.

    Args:
        rng: the random stream (advanced).
        size: the shape's extent, pixels.
        background: ``(3,)`` RGB of the flat colour behind it (low-contrast objects are
            painted close to it).
        low_contrast: the chance that this object is a low-contrast one.

    Returns:
        ``mask (h, w) bool``, cropped to the shape (never empty); ``fill (h, w, 3) uint8``, the
        patch painted over ``background``; the ``kind`` from :data:`INDEPENDENT_KINDS`.
    """
    kind = str(rng.choice(INDEPENDENT_KINDS, p=[0.35, 0.3, 0.15, 0.2]))
    side = math.ceil(1.6 * size) + 8  # curves overshoot their control points a little
    mask = _shape(rng, kind, (side / 2, side / 2), size, (side, side))
    if not mask.any():  # a degenerate draw: one pixel, so every caller gets a real object
        mask[side // 2, side // 2] = True
    canvas = np.empty((side, side, 3), np.float32)
    canvas[:] = np.asarray(background, np.float32).reshape(3)
    _paint(rng, canvas, mask, low_contrast=bool(rng.random() < low_contrast))
    x0, y0, x1, y1 = (int(v) for v in tight_boxes(mask[None])[0])
    fill = np.clip(np.rint(canvas[y0:y1, x0:x1]), 0, 255).astype(np.uint8)
    return mask[y0:y1, x0:x1], fill, kind


def _draw(rng: np.random.Generator, seed: int, config: IndependentConfig) -> Scene:
    height, width = _image_size(rng, config)
    canvas = _background(rng, height, width)
    owner = np.zeros((height, width), np.int32)  # which object each pixel shows, 0: none
    drawn: list[tuple[int, str]] = []  # (its value in owner, kind), in z-order
    shorter = min(height, width)
    for index in range(int(rng.integers(config.min_objects, config.max_objects + 1))):
        kind = str(rng.choice(INDEPENDENT_KINDS, p=[0.35, 0.3, 0.15, 0.2]))
        size = shorter * float(np.exp(rng.uniform(np.log(0.08), np.log(0.45))))
        centre = _centre(rng, owner, size, width, height)
        mask = _shape(rng, kind, centre, size, (height, width))
        if mask.sum() < config.min_visible:
            continue
        low = rng.random() < config.low_contrast
        _paint(rng, canvas, mask, low_contrast=low)
        owner[mask] = index + 1
        drawn.append((index + 1, kind))
    _clutter(rng, canvas, owner == 0)
    image = _camera(rng, canvas)
    return Scene(image=image, instances=_instances(owner, drawn, config), seed=seed)


def _image_size(rng: np.random.Generator, config: IndependentConfig) -> tuple[int, int]:
    aspect = float(np.exp(rng.uniform(-np.log(config.max_aspect), np.log(config.max_aspect))))
    longer = int(rng.integers(config.min_side, config.max_side + 1))
    shorter = max(config.min_side // 2, round(longer / max(aspect, 1 / aspect)))
    return (shorter, longer) if aspect >= 1 else (longer, shorter)


def _value_noise(rng: np.random.Generator, height: int, width: int, octaves: int) -> np.ndarray:
    """``(H, W) float32`` in [0, 1]: random grids of growing resolution, upsampled, summed."""
    out = np.zeros((height, width), np.float32)
    weight_sum = 0.0
    for octave in range(octaves):
        cells = 2 ** (octave + 1)
        grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
        weight = 0.55**octave
        out += weight * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        weight_sum += weight
    out /= weight_sum
    return np.clip((out - out.min()) / max(float(np.ptp(out)), 1e-6), 0, 1)


def hsv_color(rng: np.random.Generator) -> np.ndarray:
    """This family's colour rule: any hue, saturation and value drawn uniformly away from grey
    and black (no named palette); ``(3,) float32`` RGB in ``[0, 255]``."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(30, 255), rng.uniform(40, 250)]]])
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """``(H, W, 3) float32`` in [0, 255]: noise field or gradient between two colours."""
    a, b = hsv_color(rng), hsv_color(rng)
    if rng.random() < 0.5:
        t = _value_noise(rng, height, width, octaves=int(rng.integers(2, 6)))
    else:
        angle = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        t = np.cos(angle) * xs / width + np.sin(angle) * ys / height
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    return a * (1 - t[..., None]) + b * t[..., None]


def _centre(
    rng: np.random.Generator, owner: np.ndarray, size: float, width: int, height: int
) -> tuple[float, float]:
    """Anywhere, or touching / inside an earlier object (nested and touching layouts)."""
    drawn = np.argwhere(owner > 0)
    mode = rng.random()
    if len(drawn) and mode < 0.4:
        y, x = drawn[int(rng.integers(len(drawn)))]
        if mode < 0.2:  # inside: centred on an earlier object's pixel
            return float(x), float(y)
        offset = rng.normal(0, 1, 2)
        offset *= 0.5 * size / max(float(np.hypot(*offset)), 1e-6)
        return float(np.clip(x + offset[0], 0, width - 1)), float(
            np.clip(y + offset[1], 0, height - 1)
        )
    return float(rng.uniform(0, width)), float(rng.uniform(0, height))


def _shape(
    rng: np.random.Generator,
    kind: str,
    centre: tuple[float, float],
    size: float,
    image_size: tuple[int, int],
) -> np.ndarray:
    """``(H, W) bool`` of one shape of ``size`` pixels across, before occlusion."""
    mask = np.zeros(image_size, np.uint8)
    cx, cy = centre
    radius = size / 2
    if kind == "stroke":
        points = _curve(rng, cx, cy, radius)
        thickness = max(2, round(radius * rng.uniform(0.06, 0.18)))
        cv2.polylines(mask, [points], False, 1, thickness=thickness, lineType=cv2.LINE_8)
        return mask.astype(bool)
    theta = np.linspace(0, 2 * np.pi, 96 if kind != "concave" else int(rng.integers(9, 31)),
                        endpoint=False)  # fmt: skip
    if kind == "concave":
        theta = np.sort(rng.uniform(0, 2 * np.pi, len(theta)))
        r = radius * rng.uniform(0.3, 1.0, len(theta))
    else:
        r = radius * _harmonic_radius(rng, theta)
    stretch = rng.uniform(0.5, 1.0)
    rotation = rng.uniform(0, 2 * np.pi)
    outline = _polygon(cx, cy, r, theta, stretch, rotation)
    cv2.fillPoly(mask, [outline], 1)
    if kind == "ring":
        hole = _polygon(
            cx + rng.uniform(-0.15, 0.15) * radius,
            cy + rng.uniform(-0.15, 0.15) * radius,
            r * rng.uniform(0.35, 0.6),
            theta,
            stretch,
            rotation,
        )
        cv2.fillPoly(mask, [hole], 0)
    return mask.astype(bool)


def _harmonic_radius(rng: np.random.Generator, theta: np.ndarray) -> np.ndarray:
    r = np.ones_like(theta)
    for k in range(2, 7):
        r += rng.uniform(0, 0.35 / k**0.5) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return np.clip(r, 0.25, None) / float(r.max())


def _polygon(
    cx: float, cy: float, r: np.ndarray, theta: np.ndarray, stretch: float, rotation: float
) -> np.ndarray:
    x, y = r * np.cos(theta), stretch * r * np.sin(theta)
    c, s = np.cos(rotation), np.sin(rotation)
    xy = np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)
    return np.round(xy).astype(np.int32)


def _curve(rng: np.random.Generator, cx: float, cy: float, radius: float) -> np.ndarray:
    """A smooth open curve through random control points (Catmull-Rom through 4-6 points)."""
    count = int(rng.integers(4, 7))
    control = np.stack([cx, cy]) + rng.uniform(-radius, radius, (count, 2))
    t = np.linspace(0, 1, 20)[:, None]
    parts = []
    for i in range(1, count - 2):
        p0, p1, p2, p3 = control[i - 1 : i + 3]
        parts.append(
            0.5
            * (
                2 * p1
                + (-p0 + p2) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
            )
        )
    return np.round(np.concatenate(parts)).astype(np.int32)


def _paint(
    rng: np.random.Generator, canvas: np.ndarray, mask: np.ndarray, *, low_contrast: bool
) -> None:
    """Fill ``mask`` with a shaded colour (and, sometimes, grain), in place."""
    behind = canvas[mask].mean(axis=0)
    if low_contrast:
        color = np.clip(behind + rng.choice([-1, 1]) * rng.uniform(14, 30), 0, 255)
    else:
        color = hsv_color(rng)
    ys, xs = np.nonzero(mask)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * xs + np.sin(angle) * ys
    ramp = (ramp - ramp.mean()) / max(float(np.ptp(ramp)), 1.0)
    shade = 1.0 + rng.uniform(0, 0.35) * ramp
    pixels = color[None] * shade[:, None]
    if rng.random() < 0.4:
        pixels += rng.normal(0, rng.uniform(4, 14), (len(ys), 1))
    canvas[ys, xs] = np.clip(pixels, 0, 255)


def _clutter(rng: np.random.Generator, canvas: np.ndarray, background: np.ndarray) -> None:
    """Small strokes and dots on the background: texture that is not an object."""
    height, width = background.shape
    layer = canvas.copy()
    for _ in range(int(rng.integers(0, 40))):
        x, y = int(rng.integers(width)), int(rng.integers(height))
        color = tuple(float(v) for v in hsv_color(rng))
        if rng.random() < 0.5:
            cv2.circle(layer, (x, y), int(rng.integers(1, 4)), color, -1)
        else:
            end = (x + int(rng.integers(-12, 13)), y + int(rng.integers(-12, 13)))
            cv2.line(layer, (x, y), end, color, 1)
    canvas[background] = layer[background]


def _camera(rng: np.random.Generator, canvas: np.ndarray) -> np.ndarray:
    """Lighting, blur, noise and JPEG, after the masks are fixed: ``(H, W, 3) uint8``."""
    lit = np.clip(canvas / 255.0 * rng.uniform(0.7, 1.25), 0, 1) ** rng.uniform(0.75, 1.35)
    image: np.ndarray = (lit * 255).astype(np.float32)
    sigma = rng.uniform(0, 1.4)
    if sigma > 0.3:
        image = np.asarray(cv2.GaussianBlur(image, (0, 0), sigma), np.float32)
    image += rng.normal(0, rng.uniform(0, 6), image.shape).astype(np.float32)
    out = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return jpeg_roundtrip(out, int(rng.integers(45, 95)))


def _instances(
    owner: np.ndarray, drawn: list[tuple[int, str]], config: IndependentConfig
) -> tuple[Instance, ...]:
    """Visible parts as :class:`Instance` objects, in z-order; hidden ones are dropped."""
    out: list[Instance] = []
    shorter = min(owner.shape)
    for value, kind in drawn:
        mask = owner == value
        area = int(mask.sum())
        if area < config.min_visible:
            continue
        box = tight_boxes(mask[None])[0]
        side = math.sqrt(area) / shorter
        size = "small" if side < 0.1 else "medium" if side < 0.25 else "large"
        out.append(
            Instance(
                mask=mask,
                box=box,
                kind=kind,
                color="hsv",
                size=size,
                category_id=1 + INDEPENDENT_KINDS.index(kind),
                caption=f"{size} {kind}",
                instance_id=len(out) + 1,
            )
        )
    return tuple(out)
