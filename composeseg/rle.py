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
