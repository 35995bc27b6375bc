"""Shape geometry and rasterisation for synthetic scenes.

Coordinate frame used throughout ``composeseg.synthetic``: continuous pixel coordinates with
``x`` to the right and ``y`` down; pixel ``(row i, col j)`` covers ``[j, j + 1) x [i, i + 1)``,
so its centre is ``(j + 0.5, i + 0.5)``. Angles are in degrees and rotate in this frame, which
is clockwise on screen.

A shape is described by its kind, centre, ``size`` (extent along its long axis, pixels),
``aspect`` (short/long extent ratio) and angle. Rasterisation is anti-aliased; the boolean
mask is ``alpha >= 128``, the same alpha the scene compositor blends with, so a mask edge is
exactly where the image changes from background to object.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

KINDS: tuple[str, ...] = (
    "ellipse",
    "rectangle",
    "square",
    "triangle",
    "star",
    "ring",
    "bar",
    "cross",
    "hexagon",
    "heart",
)
"""Shape kinds; ``KINDS.index(kind) + 1`` is the COCO category id."""

COLORS: dict[str, tuple[int, int, int]] = {
    # Chosen so every pair is >= 80 apart in RGB, which keeps the names unambiguous even
    # after texture modulation and lighting noise.
    "red": (220, 35, 35),
    "green": (40, 170, 60),
    "blue": (40, 75, 225),
    "yellow": (245, 225, 40),
    "orange": (250, 135, 20),
    "purple": (125, 50, 180),
    "cyan": (40, 215, 225),
    "magenta": (235, 55, 205),
    "white": (248, 248, 248),
    "black": (18, 18, 18),
    "gray": (128, 128, 128),
    "brown": (125, 75, 35),
}
"""Named object colours, RGB uint8 values."""

# (low, high) of the short/long extent ratio sampled per kind; 1.0 means fixed proportions.
ASPECT_RANGES: dict[str, tuple[float, float]] = {
    "ellipse": (0.45, 1.0),
    "rectangle": (0.4, 0.75),
    "square": (1.0, 1.0),
    "triangle": (1.0, 1.0),
    "star": (1.0, 1.0),
    "ring": (0.75, 1.0),
    "bar": (0.08, 0.18),
    "cross": (1.0, 1.0),
    "hexagon": (1.0, 1.0),
    "heart": (1.0, 1.0),
}

RING_HOLE_RATIO = 0.55  # inner/outer radius; leaves a band >= ~3 px at the smallest sizes
MIN_THICKNESS_PX = 3.0  # thinner parts alias into broken masks
_SHIFT = 4  # OpenCV fixed-point bits: vertices are placed to 1/16 px


def _circle(n: int) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _regular(n: int, radius: float, start_deg: float) -> np.ndarray:
    t = np.deg2rad(start_deg) + np.arange(n) * (2.0 * np.pi / n)
    return radius * np.stack([np.cos(t), np.sin(t)], axis=1)


def _heart() -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, 96, endpoint=False)
    x = 16.0 * np.sin(t) ** 3
    y = -(13.0 * np.cos(t) - 5.0 * np.cos(2 * t) - 2.0 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y], axis=1)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return (pts - (lo + hi) / 2.0) / (hi - lo).max()


def _cross() -> np.ndarray:
    a, b = 0.5, 1.0 / 6.0  # half extent, half arm width
    return np.array(
        [[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a], [-b, b],
         [-a, b], [-a, -b], [-b, -b]],
        dtype=np.float64,
    )  # fmt: skip


def _unit_polygons(kind: str, size: float, aspect: float) -> list[np.ndarray]:
    """Polygons in unit coordinates (long extent 1 along x, centred at 0), before aspect."""
    if kind in ("ellipse", "ring"):
        # Enough vertices that the chord error stays below ~0.1 px at any size.
        n = int(np.clip(np.pi * size / 2.0, 24, 256))
        outer = 0.5 * _circle(n)
        return [outer, RING_HOLE_RATIO * outer[::-1]] if kind == "ring" else [outer]
    if kind in ("rectangle", "square", "bar"):
        return [np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])]
    if kind == "triangle":
        tri = _regular(3, 1.0 / np.sqrt(3.0), -90.0)
        return [tri - (tri.min(axis=0) + tri.max(axis=0)) / 2.0]
    if kind == "star":
        outer, inner = _regular(5, 0.5, -90.0), _regular(5, 0.5 * 0.42, -54.0)
        star = np.empty((10, 2))
        star[0::2], star[1::2] = outer, inner
        return [star - [0.0, (star[:, 1].min() + star[:, 1].max()) / 2.0]]
    if kind == "cross":
        return [_cross()]
    if kind == "hexagon":
        return [_regular(6, 0.5, 0.0)]
    if kind == "heart":
        return [_heart()]
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def shape_polygons(
    kind: str,
    center_xy: tuple[float, float],
    size: float,
    angle_deg: float = 0.0,
    aspect: float = 1.0,
) -> list[np.ndarray]:
    """Outline of a shape in pixel coordinates.

    Args:
        kind: one of ``KINDS``.
        center_xy: ``(x, y)`` centre of the shape's bounding box before rotation, pixels.
        size: extent along the long axis, pixels (> 0).
        angle_deg: rotation, degrees, clockwise on screen.
        aspect: short/long extent ratio in ``(0, 1]``; squares always use 1.

    Returns:
        List of ``(K, 2) float64`` ``(x, y)`` polygons; the first is the outer contour, any
        further ones are holes (only ``ring`` has one).
    """
    if not size > 0:
        raise ValueError(f"size must be > 0, got {size}")
    if not 0.0 < aspect <= 1.0:
        raise ValueError(f"aspect must be in (0, 1], got {aspect}")
    if kind == "square":
        aspect = 1.0
    theta = np.deg2rad(angle_deg)
    c, s = np.cos(theta), np.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    scale = np.array([size, size * aspect])
    center = np.asarray(center_xy, dtype=np.float64)
    return [(p * scale) @ rot.T + center for p in _unit_polygons(kind, size, aspect)]


def polygon_area(polygons: list[np.ndarray]) -> float:
    """Area in px² of an outer contour minus its holes, as returned by ``shape_polygons``."""
    areas = [abs(cv2.contourArea(p.astype(np.float32))) for p in polygons]
    return float(areas[0] - sum(areas[1:]))


def sample_aspect(kind: str, size: float, rng: np.random.Generator) -> float:
    """Draw an aspect ratio for ``kind`` whose short extent is at least ``MIN_THICKNESS_PX``."""
    lo, hi = ASPECT_RANGES[kind]
    aspect = float(rng.uniform(lo, hi)) if hi > lo else lo
    return float(min(1.0, max(aspect, MIN_THICKNESS_PX / size)))


@dataclass(frozen=True, eq=False)
class ShapeRaster:
    """Anti-aliased coverage of a shape, cropped to its bounding box inside the image.

    Attributes:
        y0: first row of the crop in the image.
        x0: first column of the crop in the image.
        alpha: ``(h, w) uint8`` coverage, 255 = fully inside; may be ``(0, 0)`` if the shape
            lies entirely outside the image.
    """

    y0: int
    x0: int
    alpha: np.ndarray

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices of the crop in the image."""
        h, w = self.alpha.shape
        return slice(self.y0, self.y0 + h), slice(self.x0, self.x0 + w)

    @property
    def mask(self) -> np.ndarray:
        """``(h, w) bool`` crop mask, ``alpha >= 128``."""
        return self.alpha >= 128

    def full_mask(self, height: int, width: int) -> np.ndarray:
        """``(height, width) bool`` mask in the image frame."""
        out = np.zeros((height, width), dtype=bool)
        out[self.slices] = self.mask
        return out


def rasterize_polygons(polygons: list[np.ndarray], height: int, width: int) -> ShapeRaster:
    """Rasterise ``shape_polygons`` output into a ``ShapeRaster`` clipped to ``(height, width)``."""
    pts = np.concatenate(polygons)
    x0 = int(np.clip(np.floor(pts[:, 0].min()) - 1, 0, width))
    y0 = int(np.clip(np.floor(pts[:, 1].min()) - 1, 0, height))
    x1 = int(np.clip(np.ceil(pts[:, 0].max()) + 2, 0, width))
    y1 = int(np.clip(np.ceil(pts[:, 1].max()) + 2, 0, height))
    alpha = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), dtype=np.uint8)
    if alpha.size:
        # OpenCV puts pixel centres at integer coordinates; ours are at +0.5.
        offset = np.array([x0 + 0.5, y0 + 0.5])
        fixed = [np.round((p - offset) * (1 << _SHIFT)).astype(np.int32) for p in polygons]
        cv2.fillPoly(alpha, fixed, 255, lineType=cv2.LINE_AA, shift=_SHIFT)
    return ShapeRaster(y0=y0, x0=x0, alpha=alpha)


def rasterize_alpha(
    kind: str,
    height: int,
    width: int,
    center_xy: tuple[float, float],
    size: float,
    angle_deg: float = 0.0,
    aspect: float = 1.0,
) -> ShapeRaster:
    """Anti-aliased crop of one shape in a ``(height, width)`` image; see ``shape_polygons``."""
    return rasterize_polygons(
        shape_polygons(kind, center_xy, size, angle_deg, aspect), height, width
    )


def rasterize(
    kind: str,
    height: int,
    width: int,
    center_xy: tuple[float, float],
    size: float,
    angle_deg: float = 0.0,
    aspect: float = 1.0,
) -> np.ndarray:
    """``(height, width) bool`` mask of one shape; arguments as in ``shape_polygons``.

    Example:
        >>> bool(rasterize("ring", 64, 64, (32, 32), 40)[32, 32])  # the hole
        False
    """
    return rasterize_alpha(kind, height, width, center_xy, size, angle_deg, aspect).full_mask(
        height, width
    )
