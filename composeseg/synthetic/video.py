"""Seeded synthetic videos of moving shapes with stable track ids.

Objects translate with constant velocity and rotate slowly; each either bounces off the
image border or is an "exiter" that passes through it and is removed once outside. New
objects enter from outside the frame; every new object gets a fresh track id, so an id is
never reused. Later-spawned objects are drawn on top, and the ground-truth masks are the
visible parts after occlusion. With ``occlusion=False`` objects bounce off each other
(bounding circles never intersect), so masks are never hidden.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from composeseg.geometry import tight_boxes
from composeseg.synthetic.scenes import (
    check,
    check_choices,
    check_int,
    min_instance_pixels,
    stack_boxes,
    stack_masks,
)
from composeseg.synthetic.shapes import (
    COLORS,
    KINDS,
    polygon_area,
    rasterize_polygons,
    sample_aspect,
    shape_polygons,
)
from composeseg.synthetic.textures import (
    BACKGROUNDS,
    Pattern,
    composite,
    distinct_from,
    finalize,
    illumination,
    local_coords,
    object_fill,
    render_background,
    sample_pattern,
)


@dataclass(frozen=True)
class VideoConfig:
    """How videos are drawn. Invalid values raise ``ValueError`` naming the field.

    Attributes:
        height, width: frame size in pixels (>= 16).
        n_frames: number of frames (>= 1).
        min_objects, max_objects: objects present at the start (uniform in range); entries
            keep the count at most ``max_objects`` and top it up towards ``min_objects``.
        min_size, max_size: object extent as a fraction of ``min(height, width)``.
        min_speed, max_speed: object speed range, pixels per frame.
        max_rotation: maximum rotation speed, degrees per frame.
        enter_leave: objects enter through and leave across the border; if False every
            object bounces and the set of tracks is fixed.
        enter_rate: chance per frame that a new object enters (when below ``max_objects``).
        exit_prob: chance that an object present at the start leaves across the border
            instead of bouncing (entering objects always pass through).
        occlusion: if False, objects bounce off each other instead of overlapping.
        kinds, colors, background, object_texture_prob, lighting_noise: as in
            ``SceneConfig``; the background and illumination are static, the pixel noise is
            redrawn every frame.
    """

    height: int = 256
    width: int = 256
    n_frames: int = 60
    min_objects: int = 2
    max_objects: int = 6
    min_size: float = 0.1
    max_size: float = 0.3
    min_speed: float = 1.0
    max_speed: float = 5.0
    max_rotation: float = 3.0
    enter_leave: bool = True
    enter_rate: float = 0.08
    exit_prob: float = 0.6
    occlusion: bool = True
    kinds: tuple[str, ...] = KINDS
    colors: tuple[str, ...] = tuple(COLORS)
    background: str = "random"
    object_texture_prob: float = 0.2
    lighting_noise: float = 0.03

    def __post_init__(self) -> None:
        check_int("height", self.height, 16)
        check_int("width", self.width, 16)
        check_int("n_frames", self.n_frames, 1)
        check_int("min_objects", self.min_objects, 0)
        check_int("max_objects", self.max_objects, max(int(self.min_objects), 1))
        # Bouncers must fit inside the frame with their bounding circle (radius <= 0.71 size).
        check(0.0 < self.min_size <= 0.6, "min_size", self.min_size, "in (0, 0.6]")
        check(
            self.min_size <= self.max_size <= 0.6, "max_size", self.max_size, "in [min_size, 0.6]"
        )
        check(self.min_speed >= 0.0, "min_speed", self.min_speed, ">= 0")
        check(self.min_speed <= self.max_speed, "max_speed", self.max_speed, ">= min_speed")
        check(self.max_rotation >= 0.0, "max_rotation", self.max_rotation, ">= 0")
        check(0.0 <= self.enter_rate <= 1.0, "enter_rate", self.enter_rate, "in [0, 1]")
        check(0.0 <= self.exit_prob <= 1.0, "exit_prob", self.exit_prob, "in [0, 1]")
        for name in ("enter_leave", "occlusion"):
            check(isinstance(getattr(self, name), bool), name, getattr(self, name), "a bool")
        object.__setattr__(self, "kinds", check_choices("kinds", self.kinds, KINDS))
        object.__setattr__(self, "colors", check_choices("colors", self.colors, COLORS))
        check(self.background in BACKGROUNDS, "background", self.background, f"in {BACKGROUNDS}")
        p = self.object_texture_prob
        check(0.0 <= p <= 1.0, "object_texture_prob", p, "in [0, 1]")
        check(
            0.0 <= self.lighting_noise <= 0.5, "lighting_noise", self.lighting_noise, "in [0, 0.5]"
        )


@dataclass(frozen=True, eq=False)
class TrackedInstance:
    """One object in one frame.

    Attributes:
        mask: ``(H, W) bool`` visible part (after occlusion and border cropping).
        box: ``(4,) float32`` xyxy pixels, tight box of ``mask`` (x2, y2 exclusive).
        track_id: stable over the video, ``>= 1``, never reused after the object leaves.
        kind, color, category_id: as in ``Instance``.
        visible_fraction: visible area / full shape area (occlusion and cropping both count).
    """

    mask: np.ndarray
    box: np.ndarray
    track_id: int
    kind: str
    color: str
    category_id: int
    visible_fraction: float


@dataclass(frozen=True, eq=False)
class VideoFrame:
    """Frame ``index``: ``image`` ``(H, W, 3) uint8`` RGB and its instances by track id."""

    index: int
    image: np.ndarray
    instances: tuple[TrackedInstance, ...]

    def masks(self) -> np.ndarray:
        """``(N, H, W) bool``."""
        return stack_masks(self.instances, self.image.shape[:2])

    def boxes(self) -> np.ndarray:
        """``(N, 4) float32`` xyxy pixels."""
        return stack_boxes(self.instances)

    def track_ids(self) -> np.ndarray:
        """``(N,) int64``."""
        return np.array([t.track_id for t in self.instances], dtype=np.int64)


@dataclass(frozen=True, eq=False)
class SyntheticVideo:
    """A whole generated video held in memory (``n_frames * H * W * 3`` bytes of frames).

    Attributes:
        frames: per frame ``(H, W, 3) uint8`` RGB.
        tracks: per frame, the visible instances sorted by ``track_id`` (= z-order).
        seed, config: what generated it.
    """

    frames: tuple[np.ndarray, ...]
    tracks: tuple[tuple[TrackedInstance, ...], ...]
    seed: int
    config: VideoConfig

    def __len__(self) -> int:
        return len(self.frames)

    def iter_frames(self) -> Iterator[VideoFrame]:
        """Frames with their instances, in order."""
        for i, (image, instances) in enumerate(zip(self.frames, self.tracks, strict=True)):
            yield VideoFrame(index=i, image=image, instances=instances)

    def track_ids(self) -> tuple[int, ...]:
        """All track ids visible in at least one frame, ascending."""
        return tuple(sorted({t.track_id for frame in self.tracks for t in frame}))


@dataclass(eq=False)
class _Mover:
    """Mutable simulation state of one object (positions in pixels, angles in degrees)."""

    track_id: int
    kind: str
    color: str
    size: float
    aspect: float
    pattern: Pattern | None
    x: float
    y: float
    vx: float
    vy: float
    angle: float
    omega: float
    exits: bool

    @property
    def radius(self) -> float:
        return _bounding_radius(self.size, self.aspect)


def _bounding_radius(size: float, aspect: float) -> float:
    # Unit shapes fit in [-0.5, 0.5] x [-0.5 aspect, 0.5 aspect]; this circle holds any
    # rotation, which makes wall and collision tests rotation-proof.
    return 0.5 * size * math.hypot(1.0, aspect)


class _Simulation:
    def __init__(self, seed: int, config: VideoConfig) -> None:
        self.rng = np.random.default_rng(seed)
        self.cfg = config
        h, w = config.height, config.width
        self.background = render_background(self.rng, h, w, config.background)
        s = config.lighting_noise
        self.light = illumination(self.rng, h, w, s) if s > 0 else None
        self.bg_sample = self.background[::4, ::4].reshape(-1, 3)
        self.movers: list[_Mover] = []
        self.next_id = 1
        n0 = int(self.rng.integers(config.min_objects, config.max_objects + 1))
        for _ in range(30 * n0):
            if len(self.movers) >= n0:
                break
            self._spawn(inside=True)

    def _pick_color(self) -> str | None:
        active = {m.color for m in self.movers}
        # Prefer colours no present object has, so occlusion boundaries stay visible.
        candidates = [c for c in self.cfg.colors if c not in active] or list(self.cfg.colors)
        for name in self.rng.permutation(candidates):
            if distinct_from(COLORS[str(name)], self.bg_sample):
                return str(name)
        return None

    def _clear(self, m: _Mover, x: float, y: float) -> bool:
        return all(
            math.hypot(x - o.x, y - o.y) >= m.radius + o.radius for o in self.movers if o is not m
        )

    def _spawn(self, inside: bool) -> None:
        """Add one object: fully inside the frame, or just outside one edge heading in."""
        cfg, rng = self.cfg, self.rng
        h, w = cfg.height, cfg.width
        kind = cfg.kinds[int(rng.integers(len(cfg.kinds)))]
        scale = min(h, w)
        size = math.exp(rng.uniform(math.log(cfg.min_size * scale), math.log(cfg.max_size * scale)))
        aspect = sample_aspect(kind, size, rng)
        speed = float(rng.uniform(cfg.min_speed, cfg.max_speed))
        angle = float(rng.uniform(0.0, 360.0))
        omega = float(rng.uniform(-1.0, 1.0)) * cfg.max_rotation
        r = _bounding_radius(size, aspect)
        if inside:
            x, y = float(rng.uniform(r, w - r)), float(rng.uniform(r, h - r))
            heading = float(rng.uniform(0.0, 2.0 * math.pi))
            exits = bool(cfg.enter_leave and rng.random() < cfg.exit_prob)
        else:
            edge = int(rng.integers(4))
            along = float(rng.uniform(0.1, 0.9))
            starts = [  # (x, y, inward heading) for left, right, top, bottom
                (-r, along * h, 0.0),
                (w + r, along * h, math.pi),
                (along * w, -r, 0.5 * math.pi),
                (along * w, h + r, 1.5 * math.pi),
            ]
            x, y, inward = starts[edge]
            heading = inward + float(rng.uniform(-0.25, 0.25)) * math.pi
            speed = max(speed, 0.5)  # an entrant that never arrives would be a ghost track
            exits = True
        m = _Mover(
            track_id=self.next_id, kind=kind, color="", size=size, aspect=aspect, pattern=None,
            x=x, y=y, vx=speed * math.cos(heading), vy=speed * math.sin(heading),
            angle=angle, omega=omega, exits=exits,
        )  # fmt: skip
        color = self._pick_color()
        overlap_ok = not inside and cfg.occlusion
        if color is None or not (overlap_ok or self._clear(m, m.x, m.y)):
            return  # initial objects start apart so every one is visible in frame 0
        m.color = color
        if rng.random() < cfg.object_texture_prob:
            m.pattern = sample_pattern(rng, (max(4.0, 0.12 * size), max(6.0, 0.3 * size)))
        self.movers.append(m)
        self.next_id += 1

    def render(self, index: int) -> VideoFrame:
        cfg = self.cfg
        h, w = cfg.height, cfg.width
        canvas = self.background.copy()
        drawn = []
        for m in self.movers:  # spawn order = z-order
            polygons = shape_polygons(m.kind, (m.x, m.y), m.size, m.angle, m.aspect)
            raster = rasterize_polygons(polygons, h, w)
            if raster.alpha.size:
                fill = object_fill(
                    COLORS[m.color], m.pattern, *local_coords(raster, (m.x, m.y), m.angle)
                )
                composite(canvas, raster, fill)
                drawn.append((m, raster, polygon_area(polygons)))
        image = finalize(canvas, self.rng, cfg.lighting_noise, self.light)
        cover = np.zeros((h, w), dtype=bool)
        min_pixels = min_instance_pixels(h, w)
        instances = []
        for m, raster, full_area in reversed(drawn):
            rows, cols = raster.slices
            visible = raster.mask & ~cover[rows, cols]
            cover[rows, cols] |= raster.mask
            area = int(np.count_nonzero(visible))
            if area < min_pixels:
                continue
            mask = np.zeros((h, w), dtype=bool)
            mask[rows, cols] = visible
            instances.append(
                TrackedInstance(mask=mask, box=tight_boxes(mask[None])[0], track_id=m.track_id,
                                kind=m.kind, color=m.color,
                                category_id=KINDS.index(m.kind) + 1,
                                visible_fraction=min(1.0, area / max(full_area, 1.0)))
            )  # fmt: skip
        return VideoFrame(index=index, image=image, instances=tuple(instances[::-1]))

    def step(self) -> None:
        cfg = self.cfg
        h, w = cfg.height, cfg.width
        for m in list(self.movers):
            r = m.radius
            if not m.exits:
                if (m.x - r < 0 and m.vx < 0) or (m.x + r > w and m.vx > 0):
                    m.vx = -m.vx
                if (m.y - r < 0 and m.vy < 0) or (m.y + r > h and m.vy > 0):
                    m.vy = -m.vy
            nx, ny = m.x + m.vx, m.y + m.vy
            if not cfg.occlusion and not self._clear(m, nx, ny):
                m.vx, m.vy = -m.vx, -m.vy  # bounce off the other object; stay put this frame
            else:
                m.x, m.y = nx, ny
            m.angle += m.omega
            gone = (
                (m.x + r < 0 and m.vx <= 0)
                or (m.x - r > w and m.vx >= 0)
                or (m.y + r < 0 and m.vy <= 0)
                or (m.y - r > h and m.vy >= 0)
            )
            if gone:
                self.movers.remove(m)
        if cfg.enter_leave and len(self.movers) < cfg.max_objects:
            rate = (
                cfg.enter_rate if len(self.movers) >= cfg.min_objects else max(cfg.enter_rate, 0.2)
            )
            if self.rng.random() < rate:
                self._spawn(inside=False)


def iter_video_frames(seed: int, config: VideoConfig = VideoConfig()) -> Iterator[VideoFrame]:
    """Render a video lazily, one ``VideoFrame`` at a time (constant memory).

    Identical ``(seed, config)`` give identical frames. Use this for long or large videos;
    ``generate_video`` collects the same frames into memory.
    """
    check_int("seed", seed, 0)
    sim = _Simulation(int(seed), config)
    for index in range(config.n_frames):
        yield sim.render(index)
        sim.step()


def generate_video(seed: int, config: VideoConfig = VideoConfig()) -> SyntheticVideo:
    """Render a whole video into memory; see ``iter_video_frames`` and ``VideoConfig``."""
    frames = list(iter_video_frames(seed, config))
    return SyntheticVideo(
        frames=tuple(f.image for f in frames),
        tracks=tuple(f.instances for f in frames),
        seed=int(seed),
        config=config,
    )
