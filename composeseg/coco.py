"""COCO records <-> ``supervision.Detections``: the one writer and the one reader.

Every file of results the library writes (``composeseg segment``/``everything``/``text``
outputs, :mod:`composeseg.pipelines.export`, video JSON, the evaluation harness's predictions)
goes through :func:`detections_to_annotations`, and files are read back through
:func:`annotations_to_detections`.

Conventions: ``bbox`` is COCO ``[x, y, w, h]`` in pixels of the image, from ``Detections.xyxy``
(``x1, y1`` exclusive); ``segmentation`` is a JSON RLE (:mod:`composeseg.rle`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from composeseg import rle

if TYPE_CHECKING:
    import supervision as sv

DEFAULT_CATEGORY = 1
"""``category_id`` of detections without a ``class_id``."""

_STRING_COLUMNS = ("class_name",)


def detections_to_annotations(
    detections: sv.Detections, image_id: int, first_id: int = 1
) -> list[dict[str, Any]]:
    """COCO annotation records, one per detection.

    Keys: ``id`` (from ``first_id``), ``image_id``, ``category_id`` (the ``class_id``, else
    :data:`DEFAULT_CATEGORY`), ``bbox``, ``iscrowd`` 0, ``area`` (mask pixels; box area without
    masks), ``segmentation`` (from ``mask``, or ``data["rle"]`` when masks are kept as RLE),
    ``score`` (``confidence``), ``tracker_id``, and every other ``data`` column under its own
    name (numbers as numbers, arrays as lists, ``class_name`` as text). COCO tools ignore the
    extra keys.
    """
    n = len(detections)
    rles = detections.data.get("rle") if detections.mask is None else None
    areas: Any = None
    if detections.mask is not None:
        areas = [np.count_nonzero(detections.mask[i]) for i in range(n)]
    elif rles is not None:
        areas = rle.area(list(rles))
    columns = {k: np.asarray(v) for k, v in detections.data.items() if k != "rle"}
    records = []
    for i in range(n):
        x0, y0, x1, y1 = (float(v) for v in detections.xyxy[i])
        record: dict[str, Any] = {
            "id": first_id + i,
            "image_id": int(image_id),
            "category_id": (
                int(detections.class_id[i]) if detections.class_id is not None else DEFAULT_CATEGORY
            ),
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "iscrowd": 0,
            "area": int(areas[i]) if areas is not None else (x1 - x0) * (y1 - y0),
        }
        if detections.mask is not None:
            record["segmentation"] = rle.encode_mask(detections.mask[i])
        elif rles is not None:
            record["segmentation"] = rle.to_json(rles[i])
        if detections.confidence is not None:
            record["score"] = float(detections.confidence[i])
        if detections.tracker_id is not None:
            record["tracker_id"] = int(detections.tracker_id[i])
        for key, values in columns.items():
            record[key] = _json_value(values[i], key)
        records.append(record)
    return records


def _json_value(value: Any, key: str) -> Any:
    if key in _STRING_COLUMNS:
        return str(value)
    return value.tolist() if isinstance(value, np.ndarray) else value.item()


def annotations_to_detections(
    records: Sequence[Mapping[str, Any]], image_size: tuple[int, int]
) -> sv.Detections:
    """The inverse of :func:`detections_to_annotations` for one ``(H, W)`` image.

    ``mask (N, H, W) bool`` from each ``segmentation`` (RLE or polygons; empty when absent),
    ``confidence`` from ``score`` (1.0 when absent), ``class_id`` from ``category_id``,
    ``tracker_id`` when every record has one; the known score columns (``class_name``,
    ``detector_score``, ``mask_score``) come back into ``data`` when every record has them.
    """
    import supervision as sv

    n = len(records)
    xyxy = np.array([r["bbox"] for r in records], np.float32).reshape(-1, 4)
    xyxy[:, 2:] += xyxy[:, :2]
    masks = np.zeros((n, *image_size), bool)
    for i, record in enumerate(records):
        masks[i] = rle.decode_segmentation(record.get("segmentation"), image_size)
    data: dict[str, Any] = {}
    for key in ("class_name", "detector_score", "mask_score"):
        if n and all(key in r for r in records):
            dtype = str if key in _STRING_COLUMNS else np.float32
            data[key] = np.array([r[key] for r in records], dtype=dtype)
    return sv.Detections(
        xyxy=xyxy,
        mask=masks,
        confidence=np.array([r.get("score", 1.0) for r in records], np.float32),
        class_id=np.array([r.get("category_id", DEFAULT_CATEGORY) for r in records], np.int64),
        tracker_id=np.array([r["tracker_id"] for r in records], np.int64)
        if n and all("tracker_id" in r for r in records)
        else None,
        data=data,
    )


def categories(detections: Sequence[sv.Detections]) -> list[dict[str, Any]]:
    """COCO ``categories`` for the classes found in ``detections`` (names from
    ``data["class_name"]``, else the id as text); one ``object`` category when none has a
    ``class_id``."""
    table: dict[int, str] = {}
    for d in detections:
        if d.class_id is None:
            continue
        names = d.data.get("class_name")
        for i, class_id in enumerate(d.class_id):
            table.setdefault(int(class_id), str(names[i]) if names is not None else str(class_id))
    if not table:
        table = {DEFAULT_CATEGORY: "object"}
    return [{"id": k, "name": v} for k, v in sorted(table.items())]


def single_image_payload(
    detections: sv.Detections, file_name: str, image_size: tuple[int, int]
) -> dict[str, Any]:
    """A COCO dataset dict for one image (id 1) and its detections."""
    height, width = image_size
    return {
        "images": [{"id": 1, "file_name": file_name, "height": height, "width": width}],
        "annotations": detections_to_annotations(detections, image_id=1),
        "categories": categories([detections]),
    }
