"""Huge generated scenes (aerial-photo-sized) rendered window by window, and a simulated
detector that sees them at its own input resolution.

A :class:`LargeScene` is a flat background with many separate shapes of the generated scenes'
kinds and colours (or, with ``family="independent"``, of the evaluation-only family's): hundreds
of small ones and a few large ones that cross any tiling's seams.
Only the shapes are stored (each as a patch around it), so a 20,000 x 20,000 scene costs a
few megabytes until a window is rendered; :meth:`LargeScene.render` of a window equals the
same window of :meth:`LargeScene.image`, which is what tiled readers and tests rely on.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from composeseg import rle
from composeseg.geometry import tight_boxes
from composeseg.prompts import Prompts
from composeseg.synthetic.independent import hsv_color, independent_object
from composeseg.synthetic.shapes import (
    COLORS,
    KINDS,
    rasterize_polygons,
    sample_aspect,
    shape_polygons,
)
from composeseg.synthetic.textures import (
    PATTERN_KINDS,
    _hash01,
    distinct_from,
    local_coords,
    object_fill,
    random_color,
    sample_pattern,
)

_CELL = 512  # side of the buckets that find the shapes of a window


@dataclass(frozen=True)
class LargeSceneConfig:
    """How a large scene is drawn.

    Attributes:
        height, width: pixels.
        small_objects: shapes with a long side in ``small_size`` pixels ...
        small_size: ``(low, high)``, drawn log-uniformly.
        large_objects: ... and shapes with a long side in ``large_size`` pixels.
        large_size: ``(low, high)``.
        gap: minimum distance between two shapes' boxes, pixels.
        texture_prob: chance that a shape is striped, checked, grainy or blotchy.
        noise: amplitude of per-pixel noise, grey levels (0: an exactly flat background,
            whose blank tiles a tiled generator can skip).
        family: ``"generated"``: the training generator's shapes and named colours, each
            far from the background's; ``"independent"``: the evaluation-only family's
            blobs, concave polygons, strokes and rings (:mod:`composeseg.synthetic.independent`),
            in its HSV colours with shading and grain, a quarter of them low-contrast. Both
            on a flat background with separate objects, so a simulated detector can find them.
    """

    height: int = 8000
    width: int = 8000
    small_objects: int = 500
    small_size: tuple[float, float] = (8.0, 60.0)
    large_objects: int = 6
    large_size: tuple[float, float] = (300.0, 1500.0)
    gap: int = 6
    texture_prob: float = 0.3
    noise: float = 6.0
    family: Literal["generated", "independent"] = "generated"

    def __post_init__(self) -> None:
        if min(self.height, self.width) < 16:
            raise ValueError(f"height and width must be >= 16, got {self.height}x{self.width}")
        for name in ("small_size", "large_size"):
            low, high = getattr(self, name)
            if not 3 <= low <= high:
                raise ValueError(f"{name} must satisfy 3 <= low <= high, got {(low, high)}")
        if self.small_objects < 0 or self.large_objects < 0 or self.gap < 0 or self.noise < 0:
            raise ValueError("object counts, gap and noise must be >= 0")
        if self.family not in ("generated", "independent"):
            raise ValueError(f"family must be 'generated' or 'independent', got {self.family!r}")


@dataclass(frozen=True, eq=False)
class LargeObject:
    """One shape of a large scene.

    Attributes:
        origin: ``(x, y)`` of the patch's top-left pixel in the scene.
        alpha: ``(h, w) uint8`` coverage (255 = inside); the mask is ``alpha >= 128``.
        fill: ``(h, w, 3) uint8`` colour of the patch.
        box: ``(4,) int64`` xyxy tight box of the mask in the scene, ``x1, y1`` exclusive.
        kind, color: as in the generated scenes.
    """

    origin: tuple[int, int]
    alpha: np.ndarray
    fill: np.ndarray
    box: np.ndarray
    kind: str
    color: str

    @property
    def mask(self) -> np.ndarray:
        """``(h, w) bool`` mask over the patch."""
        return self.alpha >= 128

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))


class LargeScene:
    """A generated scene of any size; see :func:`generate_large_scene`.

    Attributes:
        height, width: pixels.
        background: ``(3,) uint8`` RGB of the flat background.
        objects: the shapes, none overlapping another.
        noise: per-pixel noise amplitude (grey levels).
        seed: where it came from.
    """

    def __init__(
        self,
        height: int,
        width: int,
        background: np.ndarray,
        objects: list[LargeObject],
        noise: float,
        seed: int,
    ) -> None:
        self.height, self.width = int(height), int(width)
        self.background = np.asarray(background, np.uint8)
        self.objects = tuple(objects)
        self.noise = float(noise)
        self.seed = int(seed)
        self.name = f"large scene {seed}"
        self._cells: dict[tuple[int, int], list[int]] = {}
        for i, obj in enumerate(self.objects):
            x0, y0 = obj.origin
            h, w = obj.alpha.shape
            for cy in range(y0 // _CELL, (y0 + h - 1) // _CELL + 1):
                for cx in range(x0 // _CELL, (x0 + w - 1) // _CELL + 1):
                    self._cells.setdefault((cy, cx), []).append(i)

    def __repr__(self) -> str:
        return f"LargeScene({self.width}x{self.height}, {len(self.objects)} objects)"

    def boxes(self) -> np.ndarray:
        """``(N, 4) float32`` xyxy tight boxes of the shapes."""
        return np.array([o.box for o in self.objects], np.float32).reshape(-1, 4)

    def read(self, window: tuple[int, int, int, int]) -> np.ndarray:
        """A :class:`~composeseg.raster.Raster`'s read: :meth:`render`."""
        return self.render(window)

    def close(self) -> None:
        pass

    def render(self, window: tuple[int, int, int, int]) -> np.ndarray:
        """The ``(y1 - y0, x1 - x0, 3) uint8`` pixels of the xyxy ``window``."""
        x0, y0, x1, y1 = (int(v) for v in window)
        if not (0 <= x0 < x1 <= self.width and 0 <= y0 < y1 <= self.height):
            raise ValueError(f"window {window} is outside the {self.width}x{self.height} scene")
        canvas = np.empty((y1 - y0, x1 - x0, 3), np.float32)
        canvas[:] = self.background
        for i in self._objects_in(x0, y0, x1, y1):
            obj = self.objects[i]
            ox, oy = obj.origin
            h, w = obj.alpha.shape
            ax, ay, bx, by = max(x0, ox), max(y0, oy), min(x1, ox + w), min(y1, oy + h)
            if bx <= ax or by <= ay:
                continue
            a = obj.alpha[ay - oy : by - oy, ax - ox : bx - ox, None].astype(np.float32) / 255
            sub = canvas[ay - y0 : by - y0, ax - x0 : bx - x0]
            sub *= 1 - a
            sub += obj.fill[ay - oy : by - oy, ax - ox : bx - ox] * a
        if self.noise > 0:
            xs = np.arange(x0, x1, dtype=np.float32)[None, :]
            ys = np.arange(y0, y1, dtype=np.float32)[:, None]
            canvas += ((_hash01(xs, ys, self.seed) - 0.5) * (2 * self.noise))[..., None]
        return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)

    def image(self) -> np.ndarray:
        """The whole ``(H, W, 3) uint8`` image (mind the size), rendered in bands."""
        out = np.empty((self.height, self.width, 3), np.uint8)
        for y in range(0, self.height, _CELL):
            y1 = min(y + _CELL, self.height)
            out[y:y1] = self.render((0, y, self.width, y1))
        return out

    def _objects_in(self, x0: int, y0: int, x1: int, y1: int) -> list[int]:
        found: set[int] = set()
        for cy in range(y0 // _CELL, (y1 - 1) // _CELL + 1):
            for cx in range(x0 // _CELL, (x1 - 1) // _CELL + 1):
                found.update(self._cells.get((cy, cx), ()))
        return sorted(found)

    def coco(self, file_name: str = "scene.tif") -> dict[str, Any]:
        """Class-agnostic COCO ground truth (one category, ``"object"``), RLE masks built
        without image-sized arrays."""
        annotations = []
        for i, obj in enumerate(self.objects):
            encoded = rle.to_json(rle.paste(obj.mask, obj.origin, (self.height, self.width)))
            x0, y0, x1, y1 = (float(v) for v in obj.box)
            annotations.append(
                {
                    "id": i + 1,
                    "image_id": 1,
                    "category_id": 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": obj.area,
                    "iscrowd": 0,
                    "segmentation": encoded,
                }
            )
        return {
            "images": [
                {"id": 1, "file_name": file_name, "height": self.height, "width": self.width}
            ],
            "annotations": annotations,
            "categories": [{"id": 1, "name": "object"}],
        }

    def tiles(self, tile: int) -> Iterator[np.ndarray]:
        """Whole ``(tile, tile, 3)`` tiles in TIFF order (padded with background at the
        edges), for writing a tiled TIFF without the whole image."""
        for y in range(0, self.height, tile):
            for x in range(0, self.width, tile):
                out = np.empty((tile, tile, 3), np.uint8)
                out[:] = self.background
                part = self.render((x, y, min(x + tile, self.width), min(y + tile, self.height)))
                out[: part.shape[0], : part.shape[1]] = part
                yield out

    def write_tiff(self, path: str | Path, tile: int = 512, compression: str | None = None) -> Path:
        """Write the scene as a tiled TIFF, one tile in memory at a time."""
        import tifffile

        path = Path(path)
        tifffile.imwrite(
            path,
            self.tiles(tile),
            shape=(self.height, self.width, 3),
            dtype=np.uint8,
            tile=(tile, tile),
            photometric="rgb",
            compression=compression,
        )
        return path


def generate_large_scene(seed: int, config: LargeSceneConfig = LargeSceneConfig()) -> LargeScene:
    """Place ``config``'s shapes at random, large ones first, none touching another; a pure
    function of ``(seed, config)``."""
    rng = np.random.default_rng(int(seed))
    height, width = config.height, config.width
    independent = config.family == "independent"
    background = hsv_color(rng) if independent else random_color(rng)
    flat = np.broadcast_to(background, (64, 3))
    colors = [c for c in COLORS if distinct_from(COLORS[c], flat, min_distance=90.0)]
    taken: dict[tuple[int, int], list[np.ndarray]] = {}
    objects: list[LargeObject] = []
    plan = [config.large_size] * config.large_objects + [config.small_size] * config.small_objects
    for low, high in plan:
        for _ in range(50):  # attempts at a free spot
            if independent:
                obj = _draw_independent(rng, height, width, low, high, background)
            else:
                obj = _draw(rng, height, width, low, high, colors)
            if obj is not None and _free(taken, obj.box, config.gap):
                _take(taken, obj.box)
                objects.append(obj)
                break
    return LargeScene(
        height, width, np.rint(background).astype(np.uint8), objects, config.noise, seed
    )


def _draw(
    rng: np.random.Generator, height: int, width: int, low: float, high: float, colors: list[str]
) -> LargeObject | None:
    kind = KINDS[int(rng.integers(len(KINDS)))]
    size = math.exp(rng.uniform(math.log(low), math.log(high)))
    aspect = sample_aspect(kind, size, rng)
    angle = float(rng.uniform(0.0, 360.0))
    center = (float(rng.uniform(0, width)), float(rng.uniform(0, height)))
    color = colors[int(rng.integers(len(colors)))]
    pattern = None
    if rng.random() < 0.3:
        pattern = sample_pattern(rng, (max(4.0, 0.12 * size), max(6.0, 0.3 * size)), PATTERN_KINDS)
    raster = rasterize_polygons(shape_polygons(kind, center, size, angle, aspect), height, width)
    mask = raster.mask
    if np.count_nonzero(mask) < 16:
        return None
    fill = object_fill(COLORS[color], pattern, *local_coords(raster, center, angle))
    fill = np.clip(np.rint(np.broadcast_to(fill, (*mask.shape, 3))), 0, 255).astype(np.uint8)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    box = np.array(
        [
            raster.x0 + cols[0],
            raster.y0 + rows[0],
            raster.x0 + cols[-1] + 1,
            raster.y0 + rows[-1] + 1,
        ],
        np.int64,
    )
    return LargeObject((raster.x0, raster.y0), raster.alpha, fill, box, kind, color)


def _draw_independent(
    rng: np.random.Generator, height: int, width: int, low: float, high: float, bg: np.ndarray
) -> LargeObject | None:
    size = math.exp(rng.uniform(math.log(low), math.log(high)))
    mask, fill, kind = independent_object(rng, size, bg)
    h, w = mask.shape
    x = int(rng.integers(-(w // 2), width - w // 2))
    y = int(rng.integers(-(h // 2), height - h // 2))
    # crop the patch to the scene: a shape centred near the border is cut by it
    ax, ay, bx, by = max(0, x), max(0, y), min(width, x + w), min(height, y + h)
    mask, fill = mask[ay - y : by - y, ax - x : bx - x], fill[ay - y : by - y, ax - x : bx - x]
    if np.count_nonzero(mask) < 16:
        return None
    x0, y0, x1, y1 = (int(v) for v in tight_boxes(mask[None])[0])
    box = np.array([ax + x0, ay + y0, ax + x1, ay + y1], np.int64)
    alpha = mask[y0:y1, x0:x1].astype(np.uint8) * 255
    return LargeObject((ax + x0, ay + y0), alpha, fill[y0:y1, x0:x1], box, kind, "hsv")


def _cells_of(box: np.ndarray, gap: int) -> Iterator[tuple[int, int]]:
    x0, y0, x1, y1 = (int(v) for v in box)
    for cy in range((y0 - gap) // _CELL, (y1 + gap) // _CELL + 1):
        for cx in range((x0 - gap) // _CELL, (x1 + gap) // _CELL + 1):
            yield cy, cx


def _free(taken: dict[tuple[int, int], list[np.ndarray]], box: np.ndarray, gap: int) -> bool:
    for cell in _cells_of(box, gap):
        for other in taken.get(cell, ()):
            if (
                box[0] < other[2] + gap
                and other[0] < box[2] + gap
                and box[1] < other[3] + gap
                and other[1] < box[3] + gap
            ):
                return False
    return True


def _take(taken: dict[tuple[int, int], list[np.ndarray]], box: np.ndarray) -> None:
    for cell in _cells_of(box, 0):
        taken.setdefault(cell, []).append(box)


class SimulatedTileDetector:
    """A detector for large scenes that sees, like a real one, at its own input resolution.

    It is given any image (a whole scene, a tile) and finds the connected regions that
    differ from the known background colour after shrinking the image so its long side is at
    most ``input_size``, as a detector's preprocessing does. Small objects therefore vanish
    or come out coarse on a whole huge image and exact on a tile, which is the effect tiling
    is for. On the boxes found: each side not at the image's border moves by a Gaussian of
    ``jitter`` x the box side, ``drop`` of the objects are missed, and the score grows with
    the object's apparent size. Random numbers are keyed by the image's content, so the same
    tile gives the same boxes.

    Args:
        background: ``(3,)`` RGB of the scene's background.
        input_size: the detector's input long side, pixels.
        threshold: a pixel differs from the background by more than this (max over channels).
        min_area: regions smaller than this at the input resolution are not seen (pixels).
        jitter, drop: box noise and miss rate.
        seed: the noise's stream.
    """

    def __init__(
        self,
        background: np.ndarray,
        *,
        input_size: int = 1024,
        threshold: float = 40.0,
        min_area: int = 4,
        jitter: float = 0.05,
        drop: float = 0.1,
        seed: int = 0,
    ) -> None:
        if input_size < 16:
            raise ValueError(f"input_size must be >= 16, got {input_size}")
        if not (0.0 <= jitter <= 1.0 and 0.0 <= drop <= 1.0):
            raise ValueError(f"jitter and drop must be in [0, 1], got {jitter}, {drop}")
        self.background = np.asarray(background, np.int16).reshape(3)
        self.input_size = int(input_size)
        self.threshold = float(threshold)
        self.min_area = int(min_area)
        self.jitter = float(jitter)
        self.drop = float(drop)
        self.seed = int(seed)

    def __repr__(self) -> str:
        return (
            f"SimulatedTileDetector(input_size={self.input_size}, jitter={self.jitter}, "
            f"drop={self.drop})"
        )

    def __call__(self, image: np.ndarray) -> Prompts:
        """``(h, w, 3) uint8`` -> box prompts (xyxy pixels of ``image``) with scores."""
        rgb = np.asarray(image)
        h, w = rgb.shape[:2]
        scale = min(1.0, self.input_size / max(h, w))
        small = rgb
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        differs = np.abs(small.astype(np.int16) - self.background).max(axis=2) > self.threshold
        _, _, stats, _ = cv2.connectedComponentsWithStats(differs.view(np.uint8), connectivity=8)
        key = zlib.crc32(
            np.ascontiguousarray(rgb[:: max(1, h // 64), :: max(1, w // 64)]).tobytes()
        )
        rng = np.random.default_rng([self.seed, key, h, w])
        sy, sx = h / small.shape[0], w / small.shape[1]
        boxes, scores = [], []
        for x, y, bw, bh, area in stats[1:]:
            missed = rng.random() < self.drop
            noise = rng.normal(0.0, self.jitter, 4)
            if missed or area < self.min_area:
                continue
            box = np.array([x * sx, y * sy, (x + bw) * sx, (y + bh) * sy])
            sides = np.array([box[2] - box[0], box[3] - box[1]] * 2)
            # a side on the image's border stays there: the object visibly goes on past it
            inner = np.array([x > 0, y > 0, x + bw < small.shape[1], y + bh < small.shape[0]])
            box += np.where(inner, noise * sides, 0.0)
            box = np.clip(box, 0, [w, h, w, h])
            if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                continue
            boxes.append(box)
            scores.append(1.0 - 0.5 * math.exp(-area / 50.0) - 0.05 * rng.random())
        n = len(boxes)
        return Prompts(
            boxes=np.asarray(boxes, np.float32).reshape(n, 4),
            confidence=np.asarray(scores, np.float32).reshape(n),
            class_id=np.zeros(n, np.int64),
        )
