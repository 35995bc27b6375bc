"""The COCO run-length codec: the one encoder and the one decoder, pycocotools underneath.

Two forms of an RLE travel through the library:

- **native** ``{"size": [H, W], "counts": bytes}``, what pycocotools returns and takes; kept
  inside pipelines (the automatic mask generator holds thousands of them);
- **JSON** ``{"size": [H, W], "counts": str}``, what COCO files hold
  (:func:`to_json`, :func:`encode_mask`).

:func:`decode` reads either, and the uncompressed ``counts: [int, ...]`` form too; polygon
annotations go through :func:`decode_segmentation`. Masks are ``(H, W) bool`` in the pixels of
the image they belong to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Rle = dict[str, Any]
"""A COCO RLE: ``{"size": [H, W], "counts": bytes | str | list[int]}``."""


def encode(masks: np.ndarray) -> list[Rle]:
    """``(N, H, W) bool`` masks -> N native RLEs (bytes counts)."""
    masks = np.asarray(masks, bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    return encode_transposed(masks.transpose(0, 2, 1))


def encode_transposed(masks_t: np.ndarray) -> list[Rle]:
    """``(N, W, H) bool`` masks stored transposed -> N native RLEs of the ``(H, W)`` masks.

    The transposed C layout is the column-major layout pycocotools reads, so a contiguous
    input is not copied (the mask generator builds its masks this way).
    """
    from pycocotools import mask as mask_utils

    if not len(masks_t):
        return []
    planes = np.ascontiguousarray(masks_t, dtype=bool).view(np.uint8)
    return list(mask_utils.encode(planes.transpose(2, 1, 0)))


def paste(patch: np.ndarray, offset: tuple[int, int], image_size: tuple[int, int]) -> Rle:
    """An ``(h, w) bool`` patch placed with its top-left pixel at ``offset = (x, y)`` in an
    ``(H, W)`` image -> the native RLE of the whole image's mask.

    Built from the patch's runs alone, so a small object's mask on a 20,000 x 20,000 image never
    becomes an image-sized array (tiled pipelines keep every mask this way).

    Raises:
        ValueError: the patch does not lie inside the image.
    """
    from pycocotools import mask as mask_utils

    patch = np.asarray(patch, bool)
    height, width = (int(v) for v in image_size)
    x0, y0 = (int(v) for v in offset)
    if patch.ndim != 2:
        raise ValueError(f"patch must be (h, w), got shape {patch.shape}")
    h, w = patch.shape
    if x0 < 0 or y0 < 0 or x0 + w > width or y0 + h > height:
        raise ValueError(
            f"a {w}x{h} patch at ({x0}, {y0}) does not fit in the {width}x{height} image"
        )
    # COCO RLE runs go down the columns: one zero above and below each patch column makes
    # every run of ones start and end inside its column.
    columns = np.zeros((w, h + 2), bool)
    columns[:, 1:-1] = patch.T
    flat = columns.ravel()
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    col, row = np.divmod(change, h + 2)
    pos = (x0 + col).astype(np.int64) * height + (y0 + row - 1)
    # a run that ends at the bottom of a full-height column goes on at the top of the next
    joined = np.zeros(len(pos), bool)
    same = pos[1:] == pos[:-1]
    joined[1:] |= same
    joined[:-1] |= same
    pos = pos[~joined]
    counts = np.diff(np.concatenate([[0], pos, [height * width]]))
    if len(counts) > 1 and counts[-1] == 0:  # ones up to the last pixel: no closing run
        counts = counts[:-1]
    return dict(
        mask_utils.frPyObjects({"size": [height, width], "counts": counts.tolist()}, height, width)
    )


def counts(rle: Mapping[str, Any]) -> np.ndarray:
    """The ``(K,) int64`` run lengths of an RLE in any form (zeros first, column-major)."""
    raw = rle["counts"]
    if isinstance(raw, list):
        return np.asarray(raw, np.int64)
    text = raw.encode("ascii") if isinstance(raw, str) else bytes(raw)
    # pycocotools' compressed form (rleFrString): 5-bit groups, deltas from two runs back
    out: list[int] = []
    p = 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            c = text[p] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(out) > 2:
            x += out[-2]
        out.append(x)
    return np.asarray(out, np.int64)


def decode_window(rle: Mapping[str, Any], window: Sequence[int]) -> np.ndarray:
    """The part of an RLE mask inside the xyxy ``window``, ``(y1 - y0, x1 - x0) bool``,
    without decoding the whole image (masks of huge images)."""
    height = int(rle["size"][0])
    x0, y0, x1, y1 = (int(v) for v in window)
    out = np.zeros((x1 - x0, y1 - y0), bool)  # column-major, like the runs
    ends = np.cumsum(counts(rle))
    starts = ends - counts(rle)
    for start, end in zip(starts[1::2], ends[1::2], strict=False):  # the runs of ones
        first, last = max(start, x0 * height), min(end, x1 * height)
        for col in range(first // height, (last - 1) // height + 1 if last > first else 0):
            a = max(first, col * height) - col * height
            b = min(last, (col + 1) * height) - col * height
            a, b = max(a, y0), min(b, y1)
            if b > a:
                out[col - x0, a - y0 : b - y0] = True
    return np.ascontiguousarray(out.T)


def to_json(rle: Mapping[str, Any]) -> Rle:
    """A native RLE -> its JSON form (``counts`` as an ASCII string, ``size`` as ints)."""
    counts = rle["counts"]
    text = counts.decode("ascii") if isinstance(counts, bytes) else counts
    return {"size": [int(s) for s in rle["size"]], "counts": text}


def encode_mask(mask: np.ndarray) -> Rle:
    """One ``(H, W) bool`` mask -> a JSON-ready RLE ``{"size": [H, W], "counts": str}``."""
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    return to_json(encode(mask[None])[0])


def _native(rle: Mapping[str, Any]) -> Rle:
    from pycocotools import mask as mask_utils

    counts = rle.get("counts")
    if isinstance(counts, list):
        return dict(mask_utils.frPyObjects(dict(rle), *rle["size"]))
    if isinstance(counts, str):
        return {"size": list(rle["size"]), "counts": counts.encode("ascii")}
    return dict(rle)


def decode(rle: Mapping[str, Any]) -> np.ndarray:
    """One RLE in any form (bytes, str or list counts) -> ``(H, W) bool``."""
    from pycocotools import mask as mask_utils

    return mask_utils.decode(_native(rle)).astype(bool)


def decode_segmentation(segmentation: Any, size: tuple[int, int]) -> np.ndarray:
    """A COCO ``segmentation`` (polygons ``[[x, y, ...], ...]`` or an RLE) -> ``(H, W) bool``
    in an image of ``size = (H, W)``; an empty or missing one gives an empty mask."""
    from pycocotools import mask as mask_utils

    if not segmentation:
        return np.zeros(size, bool)
    if isinstance(segmentation, list):  # polygons
        height, width = size
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        return mask_utils.decode(rle).astype(bool)
    return decode(segmentation)


def area(rles: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """``(N,) int64`` pixel counts of RLEs in any form."""
    from pycocotools import mask as mask_utils

    if not rles:
        return np.zeros(0, np.int64)
    native = [_native(r) for r in rles]
    # pycocotools 2.0.11's area() overflows on more than 255 RLEs at once (it sizes its output
    # with a uint8), so ask in chunks that it handles.
    chunks = [mask_utils.area(native[i : i + 255]) for i in range(0, len(native), 255)]
    return np.concatenate([np.asarray(c, np.int64).reshape(-1) for c in chunks])


def boxes(rles: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """``(N, 4) float32`` tight xyxy boxes around RLE masks, max coordinate exclusive (the
    convention of :func:`composeseg.geometry.tight_boxes`); zeros for an empty mask."""
    from pycocotools import mask as mask_utils

    if not rles:
        return np.zeros((0, 4), np.float32)
    xywh = mask_utils.toBbox([_native(r) for r in rles]).reshape(-1, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1).astype(np.float32)


def boxes_inclusive(rles: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """``(N, 4) float32`` xyxy boxes around RLE masks with the max coordinate *inclusive* (the
    last pixel, as Meta's ``batched_mask_to_box``, which the mask generator reproduces);
    ``[0, 0, 0, 0]`` for an empty mask."""
    from pycocotools import mask as mask_utils

    if not rles:
        return np.zeros((0, 4), np.float32)
    xywh = mask_utils.toBbox([_native(r) for r in rles]).reshape(-1, 4)
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:] - 1], axis=1)
    boxes[(xywh[:, 2] <= 0) | (xywh[:, 3] <= 0)] = 0
    return boxes.astype(np.float32)
