"""COCO records <-> ``supervision.Detections``: the one writer and the one reader.

Every file of results the library writes (``composeseg segment``/``everything``/``text``
outputs, :mod:`composeseg.pipelines.export`, video JSON, the evaluation harness's predictions)
goes through :func:`detections_to_annotations`, and files are read back through
:func:`annotations_to_detections`.

Conventions: ``bbox`` is COCO ``[x, y, w, h]`` in pixels of the image, from ``Detections.xyxy``
(``x1, y1`` exclusive); ``segmentation`` is a JSON RLE (:mod:`composeseg.rle`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
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
    pairs: list[tuple[int, str | None]] = []
    for d in detections:
        if d.class_id is None:
            continue
        names = d.data.get("class_name")
        pairs += [
            (int(c), None if names is None else str(names[i])) for i, c in enumerate(d.class_id)
        ]
    return _category_list(pairs)


def _category_list(pairs: Sequence[tuple[int, str | None]]) -> list[dict[str, Any]]:
    # the first name seen for an id wins; an id without a name is named by its number
    table: dict[int, str] = {}
    for class_id, name in pairs:
        table.setdefault(class_id, name if name is not None else str(class_id))
    if not table:
        table = {DEFAULT_CATEGORY: "object"}
    return [{"id": k, "name": v} for k, v in sorted(table.items())]


def merge_image_records(
    records: Sequence[tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]],
) -> dict[str, Any]:
    """One COCO dataset dict from per-image ``(image, annotations)`` records.

    Each ``image`` has ``file_name``, ``height``, ``width`` and optionally ``id`` (kept, e.g.
    a ground-truth file's); images without one are numbered 1, 2, ... in order. Annotation ids
    are renumbered 1, 2, ... and point at their image; masks stay RLE (nothing is decoded).
    """
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index, (image, records_of_image) in enumerate(records, start=1):
        image_id = int(image.get("id", index))
        images.append({**image, "id": image_id})
        for record in records_of_image:
            annotations.append({**record, "id": len(annotations) + 1, "image_id": image_id})
    # a record without a class (DEFAULT_CATEGORY, no name) is an "object", as in categories()
    pairs = [
        (cid, r.get("class_name", "object" if cid == DEFAULT_CATEGORY else None))
        for r in annotations
        for cid in [int(r["category_id"])]
    ]
    table = _category_list(pairs)
    return {"images": images, "annotations": annotations, "categories": table}


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


def image_file_name(image: Mapping[str, Any]) -> str:
    """A COCO ``images`` entry's file, relative to the image root.

    COCO has ``file_name``; LVIS images have none, only ``coco_url``, whose last two parts
    (``val2017/000000397133.jpg``) name the file under a COCO image root (as detectron2 reads
    them).
    """
    if "file_name" in image:
        return str(image["file_name"])
    if "coco_url" in image:
        return "/".join(str(image["coco_url"]).split("/")[-2:])
    raise ValueError(f"image {image.get('id')!r} has no file_name or coco_url")


def image_path(root: str | os.PathLike, image: Mapping[str, Any]) -> Path:
    """Where a COCO ``images`` entry lives under ``root``: ``root / file_name``, or
    ``root / <its base name>`` when the images were copied into one flat folder (LVIS val)."""
    path = Path(root) / image_file_name(image)
    flat = Path(root) / path.name
    return flat if not path.is_file() and flat.is_file() else path


def load_json(source: Any, what: str = "COCO file") -> Any:
    """A COCO file's parsed JSON; an already-parsed object (dict or list) is returned as is.

    Raises:
        FileNotFoundError: no such file (``what`` names it: "ground-truth file" ...).
        ValueError: the file is not valid JSON (or not UTF-8), naming it.
    """
    import json

    if isinstance(source, (Mapping, list)):
        return source
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None


def check_dataset(payload: Any, name: str, *, need: str = "bbox") -> dict[str, Any]:
    """Check a COCO dataset's structure before any library indexes it.

    pycocotools and the adapters index ``images``, ``annotations`` and ``categories`` without
    checking them, so a file missing one field ended in a ``KeyError`` deep inside them.

    Args:
        payload: the parsed JSON.
        name: how to name the file in errors (its path).
        need: what each annotation must carry besides ``image_id`` and ``category_id``:
            ``"bbox"``, ``"segmentation"`` or ``"any"`` (either).

    Returns:
        ``payload`` (a dict), unchanged.

    Raises:
        ValueError: naming the file, the entry's index and the missing or bad field.
    """
    if not isinstance(payload, Mapping):
        raise ValueError(f"{name}: a COCO dataset is a JSON object, got {type(payload).__name__}")
    images = payload.get("images")
    if not isinstance(images, list):
        raise ValueError(f"{name}: 'images' must be a list of images")
    ids = set()
    for i, image in enumerate(images):
        if not isinstance(image, Mapping) or not _is_int(image.get("id")):
            raise ValueError(f"{name}: images[{i}] has no valid id (an integer): {image!r}")
        ids.add(int(image["id"]))
    fields = {"bbox": ("bbox",), "segmentation": ("segmentation",)}.get(
        need, ("bbox", "segmentation")
    )
    annotations = payload.get("annotations", [])
    if not isinstance(annotations, list):
        raise ValueError(f"{name}: 'annotations' must be a list, got {type(annotations).__name__}")
    for i, annotation in enumerate(annotations):
        where = f"{name}: annotations[{i}]"
        if not isinstance(annotation, Mapping):
            raise ValueError(f"{where} is not an object")
        for key in ("image_id", "category_id"):
            if not _is_int(annotation.get(key)):
                raise ValueError(f"{where} has no valid {key} (an integer): {annotation!r}")
        if int(annotation["image_id"]) not in ids:
            raise ValueError(f"{where}: image_id {annotation['image_id']} is not in 'images'")
        if not any(key in annotation for key in fields):
            raise ValueError(f"{where} has no {' or '.join(repr(f) for f in fields)}")
    categories = payload.get("categories", [])
    if not isinstance(categories, list) or not all(
        isinstance(c, Mapping) and _is_int(c.get("id")) for c in categories
    ):
        raise ValueError(f"{name}: 'categories' must be a list of objects with an integer 'id'")
    return dict(payload)


def _is_int(value: Any) -> bool:
    if isinstance(value, float):  # some writers store ids as 3.0
        return value.is_integer()
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
