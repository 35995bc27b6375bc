"""Domain-randomised training scenes: wide shape, look, layout and camera distributions.

The named-colour polygons of :mod:`composeseg.synthetic.scenes` teach a model one narrow
world. Training also on scenes drawn here widens what the demo SAM has seen, in the spirit of
domain randomisation (Tobin et al. 2017): every nuisance factor is drawn from a broad range so
that the model has to rely on what stays true, an object's outline.

- **shapes**: thresholded sums of Gaussian bumps, smooth closed splines through jittered
  radii, unions of 2-4 primitives, thick arcs and wandering bands; a quarter get holes;
- **looks**: flat, two-colour linear or radial ramps, smooth-noise mottling and sine stripes,
  in colours drawn uniformly in RGB; some objects are close to what lies behind them;
- **layouts**: free, stacked on an earlier object, or placed inside one; unlabelled
  distractor shapes under the objects;
- **camera**: colour cast, gain and gamma, vignetting, Gaussian or motion blur, resampling,
  noise and JPEG, after the masks are fixed; aspect ratios 1:3 to 3:1.

Training code draws it with seeds below ``composeseg.train.config.TRAIN_SEED_LIMIT``
(validation from ``VALIDATION_SEED_START``). It shares no code with the evaluation-only
family of :mod:`composeseg.synthetic.independent`, which is what measures whether any of this
transfers.

Example:
    >>> scene = generate_randomized_scene(3)
    >>> scene.image.dtype, len(scene.instances) > 0
    (dtype('uint8'), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from composeseg.geometry import tight_boxes
from composeseg.image import jpeg_roundtrip
from composeseg.synthetic.scenes import Instance, Scene, size_name

RANDOMIZED_KINDS = ("bumps", "spline", "union", "band")
"""Shape kinds; ``Instance.category_id`` is ``1 + RANDOMIZED_KINDS.index(kind)``."""


@dataclass(frozen=True)
class RandomizedConfig:
    """Ranges of :func:`generate_randomized_scene`; bad values raise ``ValueError``.

    Attributes:
        min_side, max_side: range of the image's longer side, pixels.
        max_aspect: the longer side is at most this many times the shorter.
        min_objects, max_objects: objects drawn (hidden ones are dropped).
        low_contrast: share of objects coloured close to what lies behind them.
        stacked: share of objects centred on an earlier one (half of them small enough to sit
            inside it); the rest are placed anywhere.
        min_visible: smallest visible area kept as an object, pixels.
    """

    min_side: int = 160
    max_side: int = 512
    max_aspect: float = 3.0
    min_objects: int = 2
    max_objects: int = 10
    low_contrast: float = 0.3
    stacked: float = 0.35
    min_visible: int = 48

    def __post_init__(self) -> None:
        if not 32 <= self.min_side <= self.max_side:
            raise ValueError(
                f"need 32 <= min_side <= max_side, got {self.min_side}, {self.max_side}"
            )
        if self.max_aspect < 1:
            raise ValueError(f"max_aspect must be >= 1, got {self.max_aspect}")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(f"need 1 <= min_objects <= max_objects, got {self.min_objects}, "
                             f"{self.max_objects}")  # fmt: skip
        if not 0 <= self.low_contrast <= 1:
            raise ValueError(f"low_contrast must be in [0, 1], got {self.low_contrast}")
        if not 0 <= self.stacked <= 1:
            raise ValueError(f"stacked must be in [0, 1], got {self.stacked}")


DENSE_LAYOUT = RandomizedConfig(max_objects=14, stacked=0.55)
"""Crowded layouts: more objects, more of them on or inside another (``composeseg train
--dense-layouts``). Most objects then touch another, and others cover part of their box."""


def generate_randomized_scene(seed: int, config: RandomizedConfig | None = None) -> Scene:
    """One domain-randomised scene; the same ``(seed, config)`` gives the same arrays.

    Returns:
        A :class:`~composeseg.synthetic.Scene`: ``image (H, W, 3) uint8`` RGB; instances in
        z-order with visible, pairwise-disjoint ``(H, W) bool`` masks (an occluded object's
        mask may be in several pieces), ``kind`` from :data:`RANDOMIZED_KINDS`, ``color``
        ``"rgb"``.
    """
    config = config or RandomizedConfig()
    for attempt in range(50):  # a draw whose objects all ended up hidden is drawn again
        scene = _draw(np.random.default_rng([int(seed), 23, attempt]), int(seed), config)
        if scene.instances:
            return scene
    raise RuntimeError(f"seed {seed}: no visible object in 50 attempts")  # pragma: no cover


def _draw(rng: np.random.Generator, seed: int, config: RandomizedConfig) -> Scene:
    longer = int(rng.integers(config.min_side, config.max_side + 1))
    ratio = math.exp(rng.uniform(0, math.log(config.max_aspect)))
    shorter = max(32, round(longer / ratio))
    height, width = (shorter, longer) if rng.random() < 0.5 else (longer, shorter)
    canvas = _background(rng, height, width)
    owner = np.zeros((height, width), np.int16)
    kinds: list[str] = []
    for _ in range(int(rng.integers(config.min_objects, config.max_objects + 1))):
        kind = RANDOMIZED_KINDS[int(rng.integers(len(RANDOMIZED_KINDS)))]
        extent = min(height, width) * math.exp(rng.uniform(math.log(0.08), math.log(0.7)))
        mask = _place(rng, kind, extent, owner, config.stacked)
        if rng.random() < 0.25:
            _punch_holes(rng, mask, extent)
        if mask.sum() < config.min_visible:
            continue
        _fill(rng, canvas, mask, low_contrast=rng.random() < config.low_contrast)
        kinds.append(kind)
        owner[mask] = len(kinds)
    return Scene(_camera(rng, canvas), _instances(owner, kinds, config.min_visible), seed)


def _smooth_field(rng: np.random.Generator, height: int, width: int, scale: float) -> np.ndarray:
    """``(H, W) float32`` in [0, 1]: white noise low-passed at ``scale`` pixels."""
    small = (max(2, round(width / scale)), max(2, round(height / scale)))
    noise = rng.standard_normal((small[1], small[0])).astype(np.float32)
    field = cv2.resize(cv2.GaussianBlur(noise, (0, 0), 0.8), (width, height),
                       interpolation=cv2.INTER_LINEAR)  # fmt: skip
    low, high = float(field.min()), float(field.max())
    return (field - low) / max(high - low, 1e-6)


def _color(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3).astype(np.float32)


def _ramp(rng: np.random.Generator, height: int, width: int, radial: bool) -> np.ndarray:
    """``(H, W) float32`` in [0, 1]: a linear ramp at a random angle, or distance from a point."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    if radial:
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        t = np.hypot(ys - cy, xs - cx)
    else:
        angle = rng.uniform(0, 2 * math.pi)
        t = math.cos(angle) * xs + math.sin(angle) * ys
    return (t - t.min()) / max(float(t.max() - t.min()), 1e-6)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """``(H, W, 3) float32``: a mottled, ramped or flat colour field with distractor shapes."""
    a, b = _color(rng), _color(rng)
    style = rng.random()
    if style < 0.4:
        t = _smooth_field(rng, height, width, rng.uniform(4, 80))
    elif style < 0.8:
        t = _ramp(rng, height, width, radial=rng.random() < 0.5)
    else:
        t = np.zeros((height, width), np.float32)
    canvas = a * (1 - t[..., None]) + b * t[..., None]
    for _ in range(int(rng.integers(0, 8))):  # shapes that are background, not objects
        extent = min(height, width) * rng.uniform(0.03, 0.4)
        centre = (rng.uniform(0, width), rng.uniform(0, height))
        kind = RANDOMIZED_KINDS[int(rng.integers(len(RANDOMIZED_KINDS)))]
        _fill(rng, canvas, _shape(rng, kind, centre, extent, (height, width)), low_contrast=True)
    return canvas


def _place(
    rng: np.random.Generator, kind: str, extent: float, owner: np.ndarray, stacked: float
) -> np.ndarray:
    """The shape's full mask, centred freely, on an earlier object, or inside one."""
    height, width = owner.shape
    centre = (rng.uniform(0, width), rng.uniform(0, height))
    if owner.any() and rng.random() < stacked:
        ys, xs = np.nonzero(owner)
        pick = int(rng.integers(len(ys)))
        centre = (float(xs[pick]), float(ys[pick]))
        if rng.random() < 0.5:  # nested: small enough to sit inside what it lands on
            extent = min(
                extent, 0.4 * math.sqrt(np.count_nonzero(owner == owner[ys[pick], xs[pick]]))
            )
    return _shape(rng, kind, centre, max(extent, 6.0), (height, width))


def _shape(
    rng: np.random.Generator,
    kind: str,
    centre: tuple[float, float],
    extent: float,
    image_size: tuple[int, int],
) -> np.ndarray:
    """``(H, W) bool``: one shape about ``extent`` pixels across at ``centre`` (x, y)."""
    mask = np.zeros(image_size, np.uint8)
    cx, cy = centre
    half = extent / 2
    if kind == "bumps":
        side = max(8, int(extent))
        ys, xs = np.mgrid[0:side, 0:side].astype(np.float32) / side - 0.5
        field = np.zeros((side, side), np.float32)
        for _ in range(int(rng.integers(2, 7))):
            my, mx = rng.uniform(-0.25, 0.25, 2)
            sigma = rng.uniform(0.06, 0.18)
            field += np.exp(-((ys - my) ** 2 + (xs - mx) ** 2) / (2 * sigma**2))
        local = (field > rng.uniform(0.35, 0.7) * field.max()).astype(np.uint8)
        _paste(mask, local, round(cx - side / 2), round(cy - side / 2))
    elif kind == "spline":
        count = int(rng.integers(5, 13))
        radii = rng.uniform(0.3, 1.0, count)
        dense = np.interp(np.linspace(0, count, 180, endpoint=False), np.arange(count + 1),
                          np.append(radii, radii[0]))  # fmt: skip
        dense = np.convolve(
            np.concatenate([dense[-9:], dense, dense[:9]]), np.ones(19) / 19, "valid"
        )
        theta = np.linspace(0, 2 * math.pi, len(dense), endpoint=False) + rng.uniform(
            0, 2 * math.pi
        )
        squash = rng.uniform(0.4, 1.0)
        pts = np.stack(
            [cx + half * dense * np.cos(theta), cy + half * squash * dense * np.sin(theta)], 1
        )
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    elif kind == "union":
        for _ in range(int(rng.integers(2, 5))):
            px, py = cx + rng.uniform(-0.5, 0.5) * half, cy + rng.uniform(-0.5, 0.5) * half
            a, b = rng.uniform(0.15, 0.6, 2) * extent
            angle = float(rng.uniform(0, 180))
            if rng.random() < 0.5:
                cv2.ellipse(mask, ((px, py), (a, b), angle), 1, -1)
            else:
                corners = cv2.boxPoints(((px, py), (a, b), angle))
                cv2.fillPoly(
                    mask, [np.round(corners[: 3 + int(rng.random() < 0.6)]).astype(np.int32)], 1
                )
    else:  # band: a thick arc or a wandering polyline
        thickness = max(2, round(extent * rng.uniform(0.04, 0.2)))
        if rng.random() < 0.5:
            start = float(rng.uniform(0, 360))
            axes = (max(1, round(half)), max(1, round(half * rng.uniform(0.3, 1.0))))
            cv2.ellipse(mask, (round(cx), round(cy)), axes, float(rng.uniform(0, 180)), start,
                        start + float(rng.uniform(70, 300)), 1, thickness)  # fmt: skip
        else:
            steps = rng.normal(0, 1, (int(rng.integers(3, 8)), 2)).cumsum(0)
            steps = steps - steps.mean(0)
            steps *= half / max(float(np.abs(steps).max()), 1e-6)
            cv2.polylines(
                mask, [np.round(steps + np.array([cx, cy])).astype(np.int32)], False, 1, thickness
            )
    return mask.astype(bool)


def _paste(mask: np.ndarray, local: np.ndarray, x0: int, y0: int) -> None:
    """Write ``local`` into ``mask`` with its top-left at (x0, y0), clipped to the image."""
    height, width = mask.shape
    ys, xs = max(0, -y0), max(0, -x0)
    ye, xe = min(local.shape[0], height - y0), min(local.shape[1], width - x0)
    if ye > ys and xe > xs:
        mask[y0 + ys : y0 + ye, x0 + xs : x0 + xe] |= local[ys:ye, xs:xe]


def _punch_holes(rng: np.random.Generator, mask: np.ndarray, extent: float) -> None:
    """Cut 1-2 elliptical holes centred on the shape's own pixels, in place."""
    ys, xs = np.nonzero(mask)
    if len(ys) < 64:
        return
    hole = np.zeros(mask.shape, np.uint8)
    for _ in range(int(rng.integers(1, 3))):
        pick = int(rng.integers(len(ys)))
        axes = tuple(max(1, round(v)) for v in rng.uniform(0.06, 0.2, 2) * extent)
        cv2.ellipse(
            hole, (int(xs[pick]), int(ys[pick])), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1
        )
    mask &= hole == 0


def _fill(
    rng: np.random.Generator, canvas: np.ndarray, mask: np.ndarray, *, low_contrast: bool
) -> None:
    """Paint ``mask`` on ``canvas`` (``(H, W, 3) float32``) with a random look, in place."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return
    if low_contrast:
        base = canvas[ys, xs].mean(0) + rng.choice([-1.0, 1.0], 3) * rng.uniform(8, 35, 3)
    else:
        base = _color(rng)
    y0, x0 = ys.min(), xs.min()
    h, w = ys.max() - y0 + 1, xs.max() - x0 + 1
    style = rng.random()
    if style < 0.3:
        t = np.zeros((h, w), np.float32)
    elif style < 0.6:
        t = _ramp(rng, h, w, radial=rng.random() < 0.5)
    elif style < 0.85:
        t = _smooth_field(rng, h, w, rng.uniform(2, 24))
    else:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        angle, period = rng.uniform(0, math.pi), rng.uniform(3, 16)
        t = 0.5 + 0.5 * np.sin((math.cos(angle) * xx + math.sin(angle) * yy) * 2 * math.pi / period)
    other = base + rng.normal(0, 45 if not low_contrast else 12, 3)
    tt = t[ys - y0, xs - x0, None]
    canvas[ys, xs] = np.clip(base * (1 - tt) + other * tt, 0, 255)


def _camera(rng: np.random.Generator, canvas: np.ndarray) -> np.ndarray:
    """Photometric and optical nuisances applied to the finished picture: ``uint8 (H, W, 3)``."""
    height, width = canvas.shape[:2]
    image = canvas * rng.uniform(0.8, 1.2, 3).astype(np.float32)  # colour cast
    image = 255 * np.clip(image / 255 * rng.uniform(0.6, 1.3), 0, 1) ** rng.uniform(0.7, 1.4)
    if rng.random() < 0.3:
        image *= 1 - rng.uniform(0.1, 0.5) * _ramp(rng, height, width, radial=True)[..., None] ** 2
    blur = rng.random()
    if blur < 0.35:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 2.0))
    elif blur < 0.5:
        length = int(rng.integers(3, 9))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2] = 1 / length
        rotation = cv2.getRotationMatrix2D(
            (length / 2 - 0.5, length / 2 - 0.5), rng.uniform(0, 180), 1
        )
        image = cv2.filter2D(image, -1, cv2.warpAffine(kernel, rotation, (length, length)))
    if rng.random() < 0.2:  # resampled, as from a smaller sensor
        factor = rng.uniform(0.35, 0.8)
        small = cv2.resize(image, (max(8, round(width * factor)), max(8, round(height * factor))),
                           interpolation=cv2.INTER_AREA)  # fmt: skip
        image = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    image = image + rng.normal(0, rng.uniform(0, 10), image.shape).astype(np.float32)
    out = np.clip(np.round(image), 0, 255).astype(np.uint8)
    if rng.random() < 0.6:
        out = jpeg_roundtrip(out, int(rng.integers(30, 96)))
    return out


def _instances(owner: np.ndarray, kinds: list[str], min_visible: int) -> tuple[Instance, ...]:
    """The visible part of each drawn object, in z-order; hidden or tiny ones are dropped."""
    out: list[Instance] = []
    for value, kind in enumerate(kinds, start=1):
        mask = owner == value
        area = int(np.count_nonzero(mask))
        if area < min_visible:
            continue
        size = size_name(area, owner.size)
        out.append(
            Instance(
                mask=mask,
                box=tight_boxes(mask[None])[0],
                kind=kind,
                color="rgb",
                size=size,
                category_id=1 + RANDOMIZED_KINDS.index(kind),
                caption=f"{size} {kind}",
                instance_id=len(out) + 1,
            )
        )
    return tuple(out)
