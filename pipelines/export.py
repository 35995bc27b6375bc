"""Write instance results as COCO JSON (RLE), YOLO-seg or Pascal VOC, and read them back.

COCO records are made and read by :mod:`composeseg.coco`, the library's one COCO writer.

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

from composeseg.coco import annotations_to_detections, categories, detections_to_annotations
from composeseg.io import write_json
from composeseg.pipelines.detections import ImageResult

if TYPE_CHECKING:
    import supervision as sv


def write_image_result(path: str | os.PathLike, result: ImageResult) -> Path:
    """One image's result as a small COCO-style JSON (atomic): the resume unit of ``run``."""
    height, width = result.image_size
    payload = {
        "image": {"file_name": result.name, "height": height, "width": width},
        "annotations": detections_to_annotations(result.detections, image_id=0),
    }
    return write_json(path, payload)


def read_image_result(path: str | os.PathLike, source: Path | None = None) -> ImageResult:
    """Read a file written by :func:`write_image_result`."""
    payload = json.loads(Path(path).read_text())
    image = payload["image"]
    size = (int(image["height"]), int(image["width"]))
    detections = annotations_to_detections(payload["annotations"], size)
    return ImageResult(str(image["file_name"]), detections, size, source)


def category_table(results: Iterable[ImageResult]) -> dict[int, str]:
    """``{class_id: name}`` over all results (names from ``data["class_name"]``)."""
    return {c["id"]: c["name"] for c in categories([r.detections for r in results])}


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
        annotations += detections_to_annotations(
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
    "read_image_result",
    "to_coco",
    "write_coco",
    "write_image_result",
    "write_pascal_voc",
    "write_yolo_seg",
]
