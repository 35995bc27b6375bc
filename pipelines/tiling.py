"""Pure helpers of tiled segmentation: the tile grid, merging across seams, crop planning.

Conventions: boxes and windows are xyxy in pixels of the whole image with ``x1, y1``
exclusive (:mod:`composeseg.geometry`); a tile is a window of the grid; masks travel as
:class:`MaskPatch` (the mask cut to its tight box, as RLE) so that no image-sized array exists.

Merging across seams works on any object that has a box: boxes from a tiled detector, or
masks from tiled "segment everything". Two objects from overlapping tiles are the same when
they agree *inside the tiles' common region*, where both tiles saw the same pixels; an object
that no tile saw whole (every view touches a seam) is the union of its views, and one that
some tile saw whole is that view.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from composeseg import rle
from composeseg.geometry import box_iou
from composeseg.rle import Rle


def resolve_overlap(overlap: float, tile: int) -> int:
    """Overlap in pixels from a fraction of ``tile`` (a float in ``[0, 1)``) or pixels (an
    int, or a float >= 1 with no fraction).

    Raises:
        ValueError: a negative overlap, or one that is not smaller than the tile.
    """
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float, np.integer, np.floating)):
        raise ValueError(f"overlap must be a number, got {overlap!r}")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    if isinstance(overlap, (float, np.floating)) and overlap < 1:
        pixels = round(float(overlap) * tile)
    elif float(overlap) != int(overlap):
        raise ValueError(f"overlap must be a fraction in [0, 1) or whole pixels, got {overlap}")
    else:
        pixels = int(overlap)
    if pixels >= tile:
        raise ValueError(
            f"overlap ({pixels} px) must be smaller than the tile ({tile} px): tiles would not "
            "advance"
        )
    return pixels


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start of each tile along one axis of ``length`` pixels: steps of ``tile - overlap``,
    the last tile flush with the end (so every tile is whole and overlaps grow, never shrink)."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    count = -(-(length - overlap) // stride)
    starts = [min(i * stride, length - tile) for i in range(count)]
    return sorted(set(starts))


@dataclass(frozen=True)
class TileGrid:
    """Overlapping tiles covering an ``(H, W)`` image.

    Attributes:
        image_size: ``(H, W)``.
        tile: tile side in pixels (tiles are cut to the image when it is smaller).
        overlap: pixels shared by neighbouring tiles (at least; the last row and column are
            moved flush with the image's edge).
        boxes: ``(T, 4) int64`` xyxy windows, row by row.
    """

    image_size: tuple[int, int]
    tile: int
    overlap: int
    boxes: np.ndarray

    @classmethod
    def build(cls, image_size: tuple[int, int], tile: int, overlap: float) -> TileGrid:
        """The grid of ``tile``-pixel tiles with ``overlap`` (see :func:`resolve_overlap`).

        Raises:
            ValueError: a tile below 2 pixels or a bad overlap.
        """
        if isinstance(tile, bool) or int(tile) != tile or tile < 2:
            raise ValueError(f"tile must be an int >= 2 pixels, got {tile!r}")
        tile = int(tile)
        height, width = (int(v) for v in image_size)
        if height < 1 or width < 1:
            raise ValueError(f"image size must be positive, got {image_size}")
        pixels = resolve_overlap(overlap, tile)
        ys, xs = tile_starts(height, tile, pixels), tile_starts(width, tile, pixels)
        boxes = [[x, y, min(x + tile, width), min(y + tile, height)] for y in ys for x in xs]
        return cls((height, width), tile, pixels, np.asarray(boxes, np.int64).reshape(-1, 4))

    def __len__(self) -> int:
        return len(self.boxes)

    def neighbour_pairs(self) -> list[tuple[int, int, np.ndarray]]:
        """``(a, b, region)`` for every pair of tiles ``a < b`` that share pixels; ``region``
        is their common ``(4,)`` window."""
        pairs = []
        boxes = self.boxes
        for a in range(len(boxes)):
            lo = np.maximum(boxes[a, :2], boxes[a + 1 :, :2])
            hi = np.minimum(boxes[a, 2:], boxes[a + 1 :, 2:])
            for k in np.flatnonzero(((hi - lo) > 0).all(axis=1)):
                pairs.append((a, a + 1 + int(k), np.concatenate([lo[k], hi[k]])))
        return pairs

    def cut_sides(self, boxes: np.ndarray, tiles: np.ndarray, margin: float) -> np.ndarray:
        """``(N, 4) bool``: side k (x0, y0, x1, y1) of box i lies within ``margin`` pixels of
        an edge of its tile ``tiles[i]`` that is not an edge of the image, i.e. a seam may
        have cut the object there."""
        height, width = self.image_size
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        own = self.boxes[np.asarray(tiles, np.int64)].astype(np.float64)
        inner = np.stack(
            [own[:, 0] > 0, own[:, 1] > 0, own[:, 2] < width, own[:, 3] < height], axis=1
        )
        near = np.abs(boxes - own) <= margin
        return near & inner


class UnionFind:
    """Disjoint sets over ``0..n-1``."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = int(self.parent[root])
        while self.parent[i] != root:  # path compression
            self.parent[i], i = root, int(self.parent[i])
        return root

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)

    def labels(self) -> np.ndarray:
        return np.array([self.find(i) for i in range(len(self.parent))], np.int64)


Agreement = Callable[[int, int, np.ndarray], float]
"""``(i, j, region) -> score`` in [0, 1]: how well objects i and j agree inside ``region``."""


def clipped_box_overlap(boxes: np.ndarray) -> Agreement:
    """Agreement of boxes: the two boxes cut to the region, their intersection over the
    smaller one (0 if either is empty there). Not the IoU: a whole view's box cut to the
    region is wider than the object there (its box is the object's widest extent), so the
    narrower part another tile saw would fall short of an IoU threshold."""

    def agreement(i: int, j: int, region: np.ndarray) -> float:
        a = _clip(boxes[i], region)
        b = _clip(boxes[j], region)
        smaller = min(_box_area(a), _box_area(b))
        return _box_area(_clip(a, b)) / smaller if smaller > 0 else 0.0

    return agreement


def merge_across_tiles(
    boxes: np.ndarray,
    tiles: np.ndarray,
    scores: np.ndarray,
    grid: TileGrid,
    *,
    agreement: Agreement,
    duplicate: Callable[[int, int], float],
    join_threshold: float,
    nms_threshold: float,
    margin: float,
    classes: np.ndarray | None = None,
) -> list[list[int]]:
    """Objects seen on tiles -> objects of the image, each as the list of views to unite.

    Args:
        boxes: ``(N, 4)`` xyxy of each view, pixels of the image.
        tiles: ``(N,)`` tile index of each view.
        scores: ``(N,)`` higher is better (ties and duplicates keep the best).
        grid: the tiles.
        agreement: see :data:`Agreement`; views of neighbouring tiles that agree at least
            ``join_threshold`` inside the tiles' common region are one object.
        duplicate: ``(i, j) -> IoU`` of two whole views; among the whole views of one object,
            one above ``nms_threshold`` of a better one is a duplicate.
        margin: a view whose box comes within this many pixels of a seam is "cut".
        classes: ``(N,)``: only views of one class join (None: class-agnostic).

    Returns:
        One list of view indices per object, best objects first: a single index is a view
        kept as it is (a whole view, or a lone one); several are the cut views of an object
        that no tile saw whole, to be united.
    """
    n = len(boxes)
    if n == 0:
        return []
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    tiles = np.asarray(tiles, np.int64)
    found = UnionFind(n)
    joins: list[tuple[int, int]] = []
    by_tile = [np.flatnonzero(tiles == t) for t in range(len(grid))]
    for a, b, region in grid.neighbour_pairs():
        in_a = [int(i) for i in by_tile[a] if _box_area(_clip(boxes[i], region)) > 0]
        in_b = [int(j) for j in by_tile[b] if _box_area(_clip(boxes[j], region)) > 0]
        for i in in_a:
            for j in in_b:
                if classes is not None and classes[i] != classes[j]:
                    continue
                if agreement(i, j, region) >= join_threshold:
                    found.union(i, j)
                    joins.append((i, j))
    whole = np.logical_not(grid.cut_sides(boxes, tiles, margin).any(axis=1))
    labels = found.labels()
    objects: list[tuple[float, list[int]]] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[np.argsort(-scores[members], kind="stable")]
        kept: list[int] = []
        for c in (int(i) for i in members if whole[i]):
            if all(duplicate(c, k) <= nms_threshold for k in kept):
                kept.append(c)
        objects += [(float(scores[c]), [c]) for c in kept]
        # cut views that lie in a kept whole view are its parts; the others are parts of
        # objects that no tile saw whole: unite those joined to each other
        rest = [
            int(i)
            for i in members
            if not whole[i] and all(_inside_fraction(boxes[i], boxes[k]) < 0.5 for k in kept)
        ]
        if rest:
            parts = UnionFind(len(rest))
            where = {v: k for k, v in enumerate(rest)}
            for i, j in joins:
                if i in where and j in where:
                    parts.union(where[i], where[j])
            part_labels = parts.labels()
            for part in np.unique(part_labels):
                views = [rest[k] for k in np.flatnonzero(part_labels == part)]
                objects.append((float(scores[views[0]]), views))
    objects.sort(key=lambda item: -item[0])
    return [members for _, members in objects]


def _inside_fraction(box: np.ndarray, container: np.ndarray) -> float:
    """Share of ``box``'s area inside ``container``."""
    area = _box_area(box)
    return _box_area(_clip(box, container)) / area if area > 0 else 0.0


def union_box(boxes: np.ndarray) -> np.ndarray:
    """``(4,)`` the box around ``(K, 4)`` boxes."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    return np.concatenate([boxes[:, :2].min(0), boxes[:, 2:].max(0)])


def plan_crops(
    boxes: np.ndarray,
    image_size: tuple[int, int],
    crop: int,
    *,
    context: float = 0.8,
    min_context: int = 16,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Share encoder crops among objects: the windows to encode and the objects of each.

    Every object lies, with its context margin, inside exactly one window. A window is
    ``crop`` pixels on a side (cut to the image), so SAM sees it at ``image_size / crop`` of
    its input; neighbouring objects share one window, so the encoder runs once per region.
    Objects too big for a window get their own, as small as fits them (seen smaller by SAM).

    Args:
        boxes: ``(N, 4)`` xyxy objects, pixels of the image.
        image_size: ``(H, W)``.
        crop: the window side in pixels.
        context: margin around each object, as a fraction of its longer side ...
        min_context: ... and at least this many pixels.

    Returns:
        ``(window (4,) int64 xyxy, objects (K,) int64)`` pairs, in raster order of their
        first object.
    """
    height, width = image_size
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    pad = np.maximum(min_context, context * sides)
    padded = np.stack(
        [
            np.maximum(boxes[:, 0] - pad, 0),
            np.maximum(boxes[:, 1] - pad, 0),
            np.minimum(boxes[:, 2] + pad, width),
            np.minimum(boxes[:, 3] + pad, height),
        ],
        axis=1,
    )
    crop_w, crop_h = min(crop, width), min(crop, height)
    fits = ((padded[:, 2] - padded[:, 0]) <= crop_w) & ((padded[:, 3] - padded[:, 1]) <= crop_h)
    plans: list[tuple[np.ndarray, np.ndarray]] = []
    free = np.zeros(len(boxes), bool)
    free[fits] = True
    order = np.lexsort((padded[:, 0], padded[:, 1]))  # by top, then left
    for seed in order:
        if not free[seed]:
            continue
        # a window with the seed in its top-left corner takes the objects right and below
        window = _window_at(padded[seed, 0], padded[seed, 1], crop_w, crop_h, width, height)
        members = np.flatnonzero(free & _inside(padded, window))
        free[members] = False
        # then centre the window on its objects, for context on every side
        hull = union_box(padded[members])
        cx, cy = (hull[0] + hull[2]) / 2, (hull[1] + hull[3]) / 2
        window = _window_at(cx - crop_w / 2, cy - crop_h / 2, crop_w, crop_h, width, height)
        plans.append((window, members.astype(np.int64)))
    for big in np.flatnonzero(~fits):
        side = int(np.ceil(max(padded[big, 2] - padded[big, 0], padded[big, 3] - padded[big, 1])))
        w, h = min(side, width), min(side, height)
        cx, cy = (padded[big, 0] + padded[big, 2]) / 2, (padded[big, 1] + padded[big, 3]) / 2
        plans.append((_window_at(cx - w / 2, cy - h / 2, w, h, width, height), np.array([big])))
    return plans


@dataclass(frozen=True)
class MaskPatch:
    """One mask of a huge image, kept small: its tight-box patch as RLE.

    Attributes:
        rle: native RLE of the ``(h, w)`` patch.
        box: ``(4,) int64`` xyxy of the patch, pixels of the image, ``x1, y1`` exclusive
            (the mask's tight box; ``[0, 0, 0, 0]`` for an empty mask).
    """

    rle: Rle
    box: np.ndarray

    @classmethod
    def from_mask(cls, mask: np.ndarray, offset: tuple[int, int] = (0, 0)) -> MaskPatch:
        """From an ``(h, w) bool`` mask whose top-left pixel is ``offset = (x, y)``."""
        mask = np.asarray(mask, bool)
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if not len(rows):
            return cls(_EMPTY, _ZERO_BOX)
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        patch = np.ascontiguousarray(mask[y0:y1, x0:x1])
        box = np.array([offset[0] + x0, offset[1] + y0, offset[0] + x1, offset[1] + y1], np.int64)
        return cls(rle.encode(patch[None])[0], box)

    @property
    def area(self) -> int:
        return 0 if self.rle is _EMPTY else int(rle.area([self.rle])[0])

    def decode(self) -> np.ndarray:
        """The ``(h, w) bool`` patch."""
        if self.rle is _EMPTY:
            return np.zeros((0, 0), bool)
        return rle.decode(self.rle)

    def window(self, window: np.ndarray) -> np.ndarray:
        """The mask inside ``window`` (xyxy): ``(y1 - y0, x1 - x0) bool``."""
        x0, y0, x1, y1 = (int(v) for v in window)
        out = np.zeros((y1 - y0, x1 - x0), bool)
        bx0, by0, bx1, by1 = (int(v) for v in self.box)
        ax, ay = max(x0, bx0), max(y0, by0)
        cx, cy = min(x1, bx1), min(y1, by1)
        if cx > ax and cy > ay:
            out[ay - y0 : cy - y0, ax - x0 : cx - x0] = self.decode()[
                ay - by0 : cy - by0, ax - bx0 : cx - bx0
            ]
        return out

    def to_image_rle(self, image_size: tuple[int, int]) -> Rle:
        """Native RLE over the whole ``(H, W)`` image (:func:`composeseg.rle.paste`)."""
        if self.rle is _EMPTY:
            return rle.paste(np.zeros((0, 0), bool), (0, 0), image_size)
        return rle.paste(self.decode(), (int(self.box[0]), int(self.box[1])), image_size)

    @staticmethod
    def unite(patches: Sequence[MaskPatch]) -> MaskPatch:
        """The union of several patches."""
        nonempty = [p for p in patches if p.rle is not _EMPTY]
        if not nonempty:
            return MaskPatch(_EMPTY, _ZERO_BOX)
        hull = union_box(np.stack([p.box for p in nonempty]))
        merged = np.zeros((int(hull[3] - hull[1]), int(hull[2] - hull[0])), bool)
        for p in nonempty:
            merged |= p.window(hull)
        return MaskPatch.from_mask(merged, (int(hull[0]), int(hull[1])))


def patch_iou(a: MaskPatch, b: MaskPatch, region: np.ndarray | None = None) -> float:
    """Mask IoU of two patches, inside ``region`` (xyxy) when given."""
    hull = union_box(np.stack([a.box, b.box]))
    if region is not None:
        hull = _clip(hull, region)
    if _box_area(hull) <= 0:
        return 0.0
    ma, mb = a.window(hull), b.window(hull)
    union = np.count_nonzero(ma | mb)
    return float(np.count_nonzero(ma & mb) / union) if union else 0.0


_EMPTY: Rle = {"size": [0, 0], "counts": b""}
_ZERO_BOX = np.zeros(4, np.int64)


def _window_at(x: float, y: float, w: int, h: int, width: int, height: int) -> np.ndarray:
    x0 = int(np.clip(np.floor(x), 0, width - w))
    y0 = int(np.clip(np.floor(y), 0, height - h))
    return np.array([x0, y0, x0 + w, y0 + h], np.int64)


def _inside(boxes: np.ndarray, window: np.ndarray) -> np.ndarray:
    return (
        (boxes[:, 0] >= window[0])
        & (boxes[:, 1] >= window[1])
        & (boxes[:, 2] <= window[2])
        & (boxes[:, 3] <= window[3])
    )


def _clip(box: np.ndarray, region: np.ndarray) -> np.ndarray:
    return np.concatenate([np.maximum(box[:2], region[:2]), np.minimum(box[2:], region[2:])])


def _box_area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 0) * max(box[3] - box[1], 0))


def box_pair_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two ``(4,)`` xyxy boxes (0 when either is empty)."""
    if _box_area(a) <= 0 or _box_area(b) <= 0:
        return 0.0
    return float(box_iou(a[None], b[None])[0, 0])
