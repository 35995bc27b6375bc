"""Videos of the independent scene family, for evaluation only.

The training generator's videos (:mod:`composeseg.synthetic.video`) move its named-colour
polygons over its backgrounds. These move the shapes and looks of
:mod:`composeseg.synthetic.independent` instead: blobs, concave polygons, strokes and rings with
shaded HSV fills, some barely distinct from the background, over noise fields or gradients with
clutter, with the family's camera effects (lighting, blur, noise, JPEG) drawn once per video
and fresh sensor noise per frame. Objects drift and turn, pass over each other and may leave
through the border. Frame sizes are non-square.

Seeds are the family's (:func:`~composeseg.synthetic.independent.independent_seeds`): choose
settings on ``"validation"``, report ``"test"``.

Example:
    >>> from composeseg.synthetic.independent import independent_seeds
    >>> frames = list(iter_independent_video_frames(independent_seeds("test", 1)[0], 3))
    >>> len(frames), frames[0].image.dtype
    (3, dtype('uint8'))
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from composeseg.geometry import tight_boxes
from composeseg.image import jpeg_roundtrip
from composeseg.synthetic.independent import (
    INDEPENDENT_KINDS,
    IndependentConfig,
    _background,
    _clutter,
    _image_size,
    _paint,
    _shape,
)
from composeseg.synthetic.video import TrackedInstance, VideoFrame


@dataclass
class _Sprite:
    """An object drawn once on its own canvas, then moved rigidly from frame to frame."""

    track_id: int
    kind: str
    pixels: np.ndarray  # (s, s, 3) float32
    mask: np.ndarray  # (s, s) uint8
    x: float
    y: float
    vx: float
    vy: float
    angle: float
    omega: float

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))


def iter_independent_video_frames(
    seed: int, n_frames: int = 60, config: IndependentConfig | None = None
) -> Iterator[VideoFrame]:
    """Render one video lazily, frame by frame; the same arguments give the same frames.

    Args:
        seed: the video's seed (use the family's splits).
        n_frames: frames to render.
        config: image-size and object-count ranges (the family's defaults, with the longer
            side capped at 384 px to keep videos light).

    Yields:
        :class:`~composeseg.synthetic.VideoFrame` objects: ``image (H, W, 3) uint8`` RGB and
        the visible objects as ``TrackedInstance`` (``(H, W) bool`` masks, disjoint, xyxy
        boxes, ``track_id`` >= 1 stable over the video, ``color`` ``"hsv"``).
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    config = config or IndependentConfig(max_side=384, max_objects=6)
    rng = np.random.default_rng([int(seed), 29])
    height, width = _image_size(rng, config)
    background = _background(rng, height, width)
    _clutter(rng, background, np.ones((height, width), bool))  # under the objects, never on
    behind = background.reshape(-1, 3).mean(0)
    sprites = [
        _sprite(rng, track_id, behind, height, width, config)
        for track_id in range(1, int(rng.integers(config.min_objects, config.max_objects + 1)) + 1)
    ]
    gain, gamma = rng.uniform(0.75, 1.2), rng.uniform(0.8, 1.25)
    blur, noise, quality = rng.uniform(0, 1.2), rng.uniform(1, 6), int(rng.integers(55, 95))
    for index in range(n_frames):
        canvas = background.copy()
        owner = np.zeros((height, width), np.int32)
        full_area: dict[int, int] = {}
        for sprite in sprites:
            pixels, mask = _pose(sprite, height, width)
            canvas[mask] = pixels[mask]
            owner[mask] = sprite.track_id
            full_area[sprite.track_id] = sprite.area
        image = _camera(rng, canvas, gain, gamma, blur, noise, quality)
        yield VideoFrame(index, image, _instances(owner, sprites, full_area, config.min_visible))
        for sprite in sprites:
            sprite.x += sprite.vx
            sprite.y += sprite.vy
            sprite.angle += sprite.omega


def _sprite(
    rng: np.random.Generator,
    track_id: int,
    behind: np.ndarray,
    height: int,
    width: int,
    config: IndependentConfig,
) -> _Sprite:
    """One object, painted on the background's mean colour (what low contrast is relative to)."""
    kind = str(rng.choice(INDEPENDENT_KINDS, p=[0.35, 0.3, 0.15, 0.2]))
    size = min(height, width) * float(np.exp(rng.uniform(np.log(0.12), np.log(0.4))))
    side = math.ceil(size * 1.5) + 4  # room to turn without clipping
    mask = _shape(rng, kind, (side / 2, side / 2), size, (side, side))
    if mask.sum() < config.min_visible:  # a stroke drawn too thin: fall back to a blob
        kind, mask = "blob", _shape(rng, "blob", (side / 2, side / 2), size, (side, side))
    local = np.broadcast_to(behind.astype(np.float32), (side, side, 3)).copy()
    _paint(rng, local, mask, low_contrast=bool(rng.random() < config.low_contrast))
    speed, heading = rng.uniform(0.5, 4.0), rng.uniform(0, 2 * np.pi)
    return _Sprite(
        track_id=track_id,
        kind=kind,
        pixels=local,
        mask=mask.astype(np.uint8),
        x=float(rng.uniform(0.1, 0.9) * width),
        y=float(rng.uniform(0.1, 0.9) * height),
        vx=speed * math.cos(heading),
        vy=speed * math.sin(heading),
        angle=float(rng.uniform(0, 360)),
        omega=float(rng.uniform(-2.0, 2.0)),
    )


def _pose(sprite: _Sprite, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The sprite turned by its angle and centred at its position: pixels and bool mask."""
    side = sprite.mask.shape[0]
    matrix = cv2.getRotationMatrix2D((side / 2, side / 2), sprite.angle, 1.0)
    matrix[:, 2] += (sprite.x - side / 2, sprite.y - side / 2)
    pixels = cv2.warpAffine(sprite.pixels, matrix, (width, height), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(sprite.mask, matrix, (width, height), flags=cv2.INTER_NEAREST)
    return pixels, mask.astype(bool)


def _camera(
    rng: np.random.Generator,
    canvas: np.ndarray,
    gain: float,
    gamma: float,
    blur: float,
    noise: float,
    quality: int,
) -> np.ndarray:
    """The video's lighting, blur and JPEG, with fresh sensor noise: ``(H, W, 3) uint8``."""
    image = (np.clip(canvas / 255.0 * gain, 0, 1) ** gamma * 255).astype(np.float32)
    if blur > 0.3:
        image = np.asarray(cv2.GaussianBlur(image, (0, 0), blur), np.float32)
    image += rng.normal(0, noise, image.shape).astype(np.float32)
    return jpeg_roundtrip(np.clip(np.round(image), 0, 255).astype(np.uint8), quality)


def _instances(
    owner: np.ndarray, sprites: list[_Sprite], full_area: dict[int, int], min_visible: int
) -> tuple[TrackedInstance, ...]:
    out = []
    for sprite in sprites:
        mask = owner == sprite.track_id
        area = int(np.count_nonzero(mask))
        if area < min_visible:
            continue
        out.append(
            TrackedInstance(
                mask=mask,
                box=tight_boxes(mask[None])[0],
                track_id=sprite.track_id,
                kind=sprite.kind,
                color="hsv",
                category_id=1 + INDEPENDENT_KINDS.index(sprite.kind),
                visible_fraction=min(1.0, area / max(full_area[sprite.track_id], 1)),
            )
        )
    return tuple(out)
