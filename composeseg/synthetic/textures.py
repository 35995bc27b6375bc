"""Backgrounds, object fills, compositing and lighting for synthetic scenes.

All functions draw randomness only from the ``np.random.Generator`` they are given. Images
under construction ("canvases") are ``(H, W, 3) float32`` RGB in ``[0, 255]``; ``finalize``
turns one into the ``(H, W, 3) uint8`` image. Coordinates follow ``shapes``: pixel centres
at ``+0.5``.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import cv2
import numpy as np

from composeseg.synthetic.shapes import ShapeRaster

PATTERN_KINDS: tuple[str, ...] = ("stripes", "checker", "grain", "blotches")
SHARP_PATTERN_KINDS: tuple[str, ...] = ("stripes", "checker", "grain")  # crisp texture edges
BACKGROUNDS: tuple[str, ...] = ("flat", "gradient", "textured", "random")

TEXTURE_AMPLITUDE = 30.0  # ± grey levels a texture adds to a named colour; keeps the name right
_BLOTCH_WAVES = 5
_BLOTCH_DOWNSCALE = 8  # blotches are low-frequency, so backgrounds render them coarse


@dataclass(frozen=True, eq=False)
class Pattern:
    """A procedural texture: a function of position returning values in ``[0, 1]``.

    Being a pure function of coordinates (no stored noise image) lets a texture move and
    rotate with its object in videos and be rendered on any crop.

    Attributes:
        kind: one of ``PATTERN_KINDS``.
        period: stripe period or checker cell-pair size, pixels (blotches: a quarter of the
            typical wavelength; the actual waves are in ``waves``).
        angle_deg: orientation of stripes and checks.
        duty: fraction of each stripe period that is "on" (stripes, checker).
        seed: hash key for ``grain``.
        waves: ``(K, 3) float64`` rows ``(kx, ky, phase)`` for ``blotches``, radians/pixel.
    """

    kind: str
    period: float
    angle_deg: float = 0.0
    duty: float = 0.5
    seed: int = 0
    waves: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))

    def render(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Evaluate at positions ``x``, ``y`` (pixels, broadcastable, e.g. ``(1, w)`` and
        ``(h, 1)``); returns the broadcast shape as ``float32`` in ``[0, 1]``."""
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y, dtype=np.float32)
        if self.kind == "grain":
            return _hash01(x, y, self.seed)
        if self.kind == "blotches":
            s = np.zeros(np.broadcast_shapes(x.shape, y.shape), dtype=np.float32)
            for kx, ky, phase in self.waves:
                s += np.cos(np.float32(kx) * x + np.float32(ky) * y + np.float32(phase))
            s *= np.float32(np.sqrt(2.0 / max(len(self.waves), 1)))
            # A steep sigmoid turns smooth noise into patches with soft but definite edges.
            return (1.0 / (1.0 + np.exp(-4.0 * s))).astype(np.float32)
        theta = np.deg2rad(self.angle_deg)
        c, s_ = np.float32(np.cos(theta)), np.float32(np.sin(theta))
        a = _square_wave(x * c + y * s_, self.period, self.duty)
        if self.kind == "stripes":
            return a
        if self.kind == "checker":
            b = _square_wave(y * c - x * s_, self.period, self.duty)
            return a + b - 2.0 * a * b  # soft XOR
        raise ValueError(f"pattern kind must be one of {PATTERN_KINDS}, got {self.kind!r}")


def _square_wave(t: np.ndarray, period: float, duty: float) -> np.ndarray:
    """Anti-aliased square wave of ``t`` (pixels): 1 on the first ``duty`` of each period."""
    s = np.mod(t, np.float32(period))
    on = np.float32(duty * period)
    # Signed distance (px) to the nearest stripe edge, positive inside; a 1 px ramp
    # approximates pixel coverage.
    d = np.where(s < on, np.minimum(s, on - s), -np.minimum(s - on, np.float32(period) - s))
    return np.clip(d + np.float32(0.5), 0.0, 1.0).astype(np.float32)


def _hash01(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Per-pixel white noise in ``[0, 1]`` keyed by integer position and ``seed``."""
    xi = np.floor(x).astype(np.int64).astype(np.uint64)
    yi = np.floor(y).astype(np.int64).astype(np.uint64)
    h = (xi * np.uint64(73856093)) ^ (yi * np.uint64(19349663)) ^ np.uint64(seed)
    h ^= h >> np.uint64(15)
    h *= np.uint64(0x2C1B3C6D)
    h ^= h >> np.uint64(12)
    h *= np.uint64(0x297A2D39)
    h ^= h >> np.uint64(15)
    return ((h & np.uint64(0xFFFF)).astype(np.float32) / np.float32(65535.0)).astype(np.float32)


def sample_pattern(
    rng: np.random.Generator,
    period_range: tuple[float, float],
    kinds: tuple[str, ...] = PATTERN_KINDS,
) -> Pattern:
    """Draw a random ``Pattern`` with period (pixels) uniform in ``period_range``."""
    kind = str(kinds[int(rng.integers(len(kinds)))])
    period = float(rng.uniform(*period_range))
    angle = float(rng.uniform(0.0, 180.0))
    duty = float(rng.uniform(0.35, 0.65))
    seed = int(rng.integers(2**31))
    waves = np.zeros((0, 3))
    if kind == "blotches":
        k = 2.0 * np.pi / (period * 4.0) * rng.uniform(0.6, 1.4, _BLOTCH_WAVES)
        direction = rng.uniform(0.0, 2.0 * np.pi, _BLOTCH_WAVES)
        phase = rng.uniform(0.0, 2.0 * np.pi, _BLOTCH_WAVES)
        waves = np.stack([k * np.cos(direction), k * np.sin(direction), phase], axis=1)
    return Pattern(kind=kind, period=period, angle_deg=angle, duty=duty, seed=seed, waves=waves)


def random_color(rng: np.random.Generator) -> np.ndarray:
    """A random, mostly muted background colour, ``(3,) float32`` RGB in ``[0, 255]``."""
    h, s, v = rng.uniform(0.0, 1.0), rng.uniform(0.0, 0.7), rng.uniform(0.2, 0.95)
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32) * np.float32(255.0)


def _color_pair(rng: np.random.Generator, min_distance: float) -> tuple[np.ndarray, np.ndarray]:
    """Two random colours at least ``min_distance`` apart in RGB (or the farthest of 20 tries)."""
    c1 = random_color(rng)
    best = random_color(rng)
    for _ in range(20):
        if np.linalg.norm(c1 - best) >= min_distance:
            break
        c2 = random_color(rng)
        if np.linalg.norm(c1 - c2) > np.linalg.norm(c1 - best):
            best = c2
    return c1, best


def _mix(c1: np.ndarray, c2: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``(h, w, 3) float32`` blend: ``c1`` where ``(h, w)`` ``t`` is 0, ``c2`` where it is 1."""
    t = np.ascontiguousarray(t, dtype=np.float32)
    d = c2 - c1
    # Per-plane OpenCV ops: ~5x faster than numpy's (h, w, 1) * (3,) broadcast at 1024².
    return cv2.merge([cv2.addWeighted(t, float(d[k]), t, 0.0, float(c1[k])) for k in range(3)])


def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``x`` ``(1, width)`` and ``y`` ``(height, 1)``, float32."""
    x = (np.arange(width, dtype=np.float32) + np.float32(0.5))[None, :]
    y = (np.arange(height, dtype=np.float32) + np.float32(0.5))[:, None]
    return x, y


def render_background(
    rng: np.random.Generator, height: int, width: int, mode: str, *, strong: bool = False
) -> np.ndarray:
    """A background canvas, ``(height, width, 3) float32`` in ``[0, 255]``.

    Args:
        mode: ``"flat"``, ``"gradient"`` (linear or radial), ``"textured"`` (stripes, checker,
            grain or blotches mixing two colours) or ``"random"`` (one of those).
        strong: for ``"textured"``, use only sharp patterns (no blotches) and force high
            contrast between the two colours, so texture edges rival object edges.
    """
    if mode not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {mode!r}")
    if mode == "random":
        mode = ("flat", "gradient", "textured")[int(rng.choice(3, p=[0.25, 0.4, 0.35]))]
    x, y = pixel_grid(height, width)
    if mode == "flat":
        color = random_color(rng)
        return np.broadcast_to(color, (height, width, 3)).copy()
    if mode == "gradient":
        c1, c2 = _color_pair(rng, 60.0)
        if rng.random() < 0.5:
            theta = rng.uniform(0.0, 2.0 * np.pi)
            t = (x - width / 2) * np.float32(np.cos(theta)) + (y - height / 2) * np.float32(
                np.sin(theta)
            )
            t = t / np.float32(max(height, width)) + np.float32(0.5)
        else:
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            radius = rng.uniform(0.5, 1.2) * max(height, width)
            t = np.sqrt((x - np.float32(cx)) ** 2 + (y - np.float32(cy)) ** 2) / np.float32(radius)
        return _mix(c1, c2, np.clip(t, 0.0, 1.0))
    c1, c2 = _color_pair(rng, 140.0 if strong else 70.0)
    scale = min(height, width)
    kinds = SHARP_PATTERN_KINDS if strong else PATTERN_KINDS
    pattern = sample_pattern(rng, (max(6.0, 0.03 * scale), max(12.0, 0.09 * scale)), kinds)
    if pattern.kind == "blotches":
        # Render coarse then upsample: ~60x fewer cosines for the same look.
        hs, ws = -(-height // _BLOTCH_DOWNSCALE), -(-width // _BLOTCH_DOWNSCALE)
        xs, ys = pixel_grid(hs, ws)
        small = pattern.render(xs * _BLOTCH_DOWNSCALE, ys * _BLOTCH_DOWNSCALE)
        big = cv2.resize(small, (ws * _BLOTCH_DOWNSCALE, hs * _BLOTCH_DOWNSCALE))
        tex = np.asarray(big, dtype=np.float32)[:height, :width]
    else:
        tex = pattern.render(x, y)
    if pattern.kind == "grain" and not strong:
        tex = np.float32(0.25) + np.float32(0.5) * tex  # full-contrast salt-and-pepper is unnatural
    return _mix(c1, c2, tex)


def local_coords(
    raster: ShapeRaster, center_xy: tuple[float, float], angle_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """Object-frame coordinates of the pixels of ``raster``'s crop, each ``(h, w) float32``.

    The frame is centred on the object and rotated with it, so an object texture rendered
    in it moves and turns with the object.
    """
    h, w = raster.alpha.shape
    x, y = pixel_grid(h, w)
    dx = x + np.float32(raster.x0 - center_xy[0])
    dy = y + np.float32(raster.y0 - center_xy[1])
    theta = np.deg2rad(angle_deg)
    c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    return dx * c + dy * s, dy * c - dx * s


def object_fill(
    rgb: tuple[int, int, int], pattern: Pattern | None, x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """Fill colour of an object over its crop: ``(h, w, 3) float32`` (broadcast view if flat).

    A texture adds at most ``±TEXTURE_AMPLITUDE`` grey levels around the named colour, so a
    "red" striped object still reads as red.
    """
    shape = np.broadcast_shapes(np.shape(x), np.shape(y))
    color = np.asarray(rgb, dtype=np.float32)
    if pattern is None:
        return np.broadcast_to(color, (*shape, 3))
    amp = np.float32(TEXTURE_AMPLITUDE)
    base = np.clip(color, amp, np.float32(255.0) - amp)  # room for the full swing both ways
    t = pattern.render(x, y)
    return (base + (np.float32(2.0) * t[..., None] - np.float32(1.0)) * amp).astype(np.float32)


def composite(canvas: np.ndarray, raster: ShapeRaster, fill: np.ndarray) -> None:
    """Alpha-blend ``fill`` (``(h, w, 3)``, the crop's size) over ``canvas`` in place."""
    if raster.alpha.size == 0:
        return
    a = raster.alpha[..., None].astype(np.float32) * np.float32(1.0 / 255.0)
    sub = canvas[raster.slices]
    sub *= np.float32(1.0) - a
    sub += fill * a


def illumination(rng: np.random.Generator, height: int, width: int, strength: float) -> np.ndarray:
    """Multiplicative lighting field ``(height, width) float32`` within ``1 ± strength``."""
    x, y = pixel_grid(height, width)
    theta = rng.uniform(0.0, 2.0 * np.pi)
    scale = np.float32(strength / (0.5 * np.hypot(height, width)))
    gx = (x - np.float32(width / 2)) * (np.float32(np.cos(theta)) * scale)
    gy = (y - np.float32(height / 2)) * (np.float32(np.sin(theta)) * scale) + np.float32(1.0)
    return gx + gy


def finalize(
    canvas: np.ndarray, rng: np.random.Generator, strength: float, light: np.ndarray | None
) -> np.ndarray:
    """Apply ``light`` (``(H, W) float32`` or None) and Gaussian pixel noise (sigma
    ``128 * strength`` grey levels) to a copy of ``canvas``; return ``(H, W, 3) uint8``."""
    out = canvas.copy() if light is None else canvas * light[..., None]
    if strength > 0:
        # Luminance-only noise: one draw per pixel instead of three, and hue stays put.
        noise = rng.standard_normal(canvas.shape[:2], dtype=np.float32)
        noise *= np.float32(128.0 * strength)
        out += noise[..., None]
    np.maximum(out, 0.0, out=out)
    return cv2.convertScaleAbs(out)  # rounds and saturates at 255


def distinct_from(
    rgb: tuple[int, int, int],
    pixels: np.ndarray,
    *,
    min_distance: float = 70.0,
    max_close_fraction: float = 0.03,
) -> bool:
    """Whether colour ``rgb`` stands out from ``pixels`` (``(K, 3)`` RGB).

    True when at most ``max_close_fraction`` of the pixels are within ``min_distance`` (RGB
    Euclidean) of ``rgb``; a fraction rather than the mean so that one stripe colour of a
    textured background equal to the object's colour is still caught.
    """
    if len(pixels) == 0:
        return True
    d2 = np.sum((pixels.astype(np.float32) - np.asarray(rgb, dtype=np.float32)) ** 2, axis=1)
    return float(np.mean(d2 < min_distance**2)) <= max_close_fraction
