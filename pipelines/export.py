"""Write instance results as COCO JSON (RLE), YOLO-seg or Pascal VOC, and read them back.

COCO uses pycocotools RLE, which keeps holes and is lossless; YOLO-seg and Pascal VOC store
polygons and go through supervision's ``DetectionDataset`` writers.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from composeseg.io import mask_to_rle, write_json

if TYPE_CHECKING:
    import supervision as sv

    from composeseg.pipelines.instance import ImageResult

# per-detection data columns that export as numbers / strings in COCO records
_SCALAR_DATA = ("class_name", "detector_score", "mask_score")


def detections_to_coco_annotations(
    detections: sv.Detections, image_id: int, first_id: int = 1
) -> list[dict[str, Any]]:
    """COCO annotation records (``bbox`` xywh pixels, RLE ``segmentation``, ``iscrowd=0``).

    ``category_id`` is the detection's ``class_id`` (1 when there is none); ``score`` the
    confidence; ``tracker_id`` and the data columns class_name / detector_score / mask_score
    ride along as extra keys (COCO tools ignore them).
    """
    from pycocotools import mask as mask_utils

    records = []
    for i in range(len(detections)):
        x0, y0, x1, y1 = (float(v) for v in detections.xyxy[i])
        record: dict[str, Any] = {
            "id": first_id + i,
            "image_id": int(image_id),
            "category_id": int(detections.class_id[i]) if detections.class_id is not None else 1,
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "iscrowd": 0,
        }
        if detections.mask is not None:
            rle = mask_to_rle(detections.mask[i])
            record["segmentation"] = rle
            record["area"] = float(mask_utils.area({**rle, "counts": rle["counts"].encode()}))
        else:
            record["area"] = (x1 - x0) * (y1 - y0)
        if detections.confidence is not None:
            record["score"] = float(detections.confidence[i])
        if detections.tracker_id is not None:
            record["tracker_id"] = int(detections.tracker_id[i])
        for key in _SCALAR_DATA:
            if key in detections.data:
                value = np.asarray(detections.data[key])[i]
                record[key] = str(value) if key == "class_name" else float(value)
        records.append(record)
    return records


def coco_annotations_to_detections(
    records: Sequence[Mapping[str, Any]], image_size: tuple[int, int]
) -> sv.Detections:
    """The inverse of :func:`detections_to_coco_annotations` for one ``(H, W)`` image."""
    import supervision as sv

    from composeseg.adapters.coco import _mask

    n = len(records)
    xyxy = np.array([r["bbox"] for r in records], np.float32).reshape(-1, 4)
    xyxy[:, 2:] += xyxy[:, :2]
    masks = np.zeros((n, *image_size), bool)
    for i, record in enumerate(records):
        masks[i] = _mask(record, image_size)
    data: dict[str, Any] = {}
    for key in _SCALAR_DATA:
        if n and all(key in r for r in records):
            dtype = str if key == "class_name" else np.float32
            data[key] = np.array([r[key] for r in records], dtype=dtype)
    return sv.Detections(
        xyxy=xyxy,
        mask=masks,
        confidence=np.array([r.get("score", 1.0) for r in records], np.float32),
        class_id=np.array([r.get("category_id", 1) for r in records], np.int64),
        tracker_id=np.array([r["tracker_id"] for r in records], np.int64)
        if n and all("tracker_id" in r for r in records)
        else None,
        data=data,
    )


def write_image_result(path: str | os.PathLike, result: ImageResult) -> Path:
    """One image's result as a small COCO-style JSON (atomic): the resume unit of ``run``."""
    height, width = result.image_size
    payload = {
        "image": {"file_name": result.name, "height": height, "width": width},
        "annotations": detections_to_coco_annotations(result.detections, image_id=0),
    }
    return write_json(path, payload)


def read_image_result(path: str | os.PathLike, source: Path | None = None) -> ImageResult:
    """Read a file written by :func:`write_image_result`."""
    from composeseg.pipelines.instance import ImageResult

    payload = json.loads(Path(path).read_text())
    image = payload["image"]
    size = (int(image["height"]), int(image["width"]))
    detections = coco_annotations_to_detections(payload["annotations"], size)
    return ImageResult(str(image["file_name"]), detections, size, source)


def category_table(results: Iterable[ImageResult]) -> dict[int, str]:
    """``{class_id: name}`` over all results (names from ``data["class_name"]``)."""
    table: dict[int, str] = {}
    for result in results:
        d = result.detections
        if d.class_id is None:
            continue
        names = d.data.get("class_name")
        for i, class_id in enumerate(d.class_id):
            table.setdefault(int(class_id), str(names[i]) if names is not None else str(class_id))
    return table


def to_coco(
    results: Iterable[ImageResult],
    *,
    categories: Mapping[int, str] | None = None,
    image_ids: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """A COCO dataset dict (``images``, ``annotations`` with RLE masks, ``categories``).

    Args:
        results: per-image results from :meth:`InstanceSegmentation.run`.
        categories: ``{id: name}``; default: the classes found in the results.
        image_ids: file name -> image id (e.g. a ground-truth file's); default 1, 2, ...
    """
    results = list(results)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index, result in enumerate(results, start=1):
        image_id = image_ids[result.name] if image_ids is not None else index
        height, width = result.image_size
        images.append({"id": image_id, "file_name": result.name, "height": height, "width": width})
        annotations += detections_to_coco_annotations(
            result.detections, image_id, first_id=len(annotations) + 1
        )
    table = dict(categories) if categories is not None else category_table(results)
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k, "name": v} for k, v in sorted(table.items())],
    }


def write_coco(path: str | os.PathLike, results: Iterable[ImageResult], **kwargs: Any) -> Path:
    """Write :func:`to_coco` to ``path`` atomically."""
    return write_json(path, to_coco(results, **kwargs))


@contextlib.contextmanager
def _dataset(results: Sequence[ImageResult], classes: Sequence[str] | None) -> Iterator[Any]:
    """A supervision ``DetectionDataset`` with contiguous class ids 0..C-1.

    supervision reads each image only for its shape; results without an image file get a
    blank stand-in of the right size in a temporary folder (its in-memory image dicts are
    deprecated).
    """
    import supervision as sv
    from PIL import Image

    table = category_table(results)
    names = list(classes) if classes is not None else [table[k] for k in sorted(table)]
    index = {name: i for i, name in enumerate(names)}
    with tempfile.TemporaryDirectory(prefix="composeseg-export-") as scratch:
        paths: list[str] = []
        annotations: dict[str, sv.Detections] = {}
        for result in results:
            d = result.detections
            if result.path is not None and result.path.exists():
                key = str(result.path)
            else:
                key = str(Path(scratch) / f"{Path(result.name).stem}.png")
                Image.new("L", (result.image_size[1], result.image_size[0])).save(key)
            if d.class_id is not None and len(d):
                labels = d.data.get("class_name")
                label_list = (
                    [str(v) for v in labels]
                    if labels is not None
                    else [table[int(c)] for c in d.class_id]
                )
                missing = [n for n in label_list if n not in index]
                if missing:
                    raise ValueError(f"class {missing[0]!r} of {result.name} is not in {names}")
                d = sv.Detections(
                    xyxy=d.xyxy,
                    mask=d.mask,
                    confidence=d.confidence,
                    class_id=np.array([index[n] for n in label_list], np.int64),
                )
            paths.append(key)
            annotations[key] = d
        yield sv.DetectionDataset(classes=names, images=paths, annotations=annotations)


def write_yolo_seg(
    out_dir: str | os.PathLike,
    results: Iterable[ImageResult],
    *,
    classes: Sequence[str] | None = None,
    approximation: float = 0.0,
) -> Path:
    """YOLO segmentation labels: ``labels/<stem>.txt`` (normalised polygons) + ``data.yaml``.

    Class ids become 0..C-1 in ``classes`` order (default: the results' classes by id).
    """
    out = Path(out_dir)
    with _dataset(list(results), classes) as dataset:
        dataset.as_yolo(
            annotations_directory_path=str(out / "labels"),
            data_yaml_path=str(out / "data.yaml"),
            approximation_percentage=approximation,
        )
    return out


def write_pascal_voc(
    out_dir: str | os.PathLike,
    results: Iterable[ImageResult],
    *,
    classes: Sequence[str] | None = None,
    approximation: float = 0.0,
) -> Path:
    """Pascal VOC XML per image (boxes, and polygons for masks) under ``out_dir``."""
    out = Path(out_dir)
    with _dataset(list(results), classes) as dataset:
        dataset.as_pascal_voc(
            annotations_directory_path=str(out), approximation_percentage=approximation
        )
    return out


__all__ = [
    "coco_annotations_to_detections",
    "detections_to_coco_annotations",
    "read_image_result",
    "to_coco",
    "write_coco",
    "write_image_result",
    "write_pascal_voc",
    "write_yolo_seg",
]
