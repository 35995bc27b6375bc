"""COCO mask AP of instance segmentation results (pycocotools ``COCOeval``), or LVIS AP
(:mod:`composeseg.evaluation.lvis`) when the ground truth is in LVIS format.

Sits in the core package but imports pipelines only inside functions, when the caller hands in
a pipeline, so the core keeps no import-time dependency on them.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from composeseg.coco import check_dataset, image_file_name, image_path, load_json
from composeseg.evaluation.lvis import LvisMetrics, resolve_protocol, score_lvis
from composeseg.evaluation.table import metrics_table, percent_cells
from composeseg.io import write_json

_STAT_NAMES = (
    "ap",
    "ap50",
    "ap75",
    "ap_small",
    "ap_medium",
    "ap_large",
    "ar_1",
    "ar_10",
    "ar_100",
    "ar_small",
    "ar_medium",
    "ar_large",
)


@dataclass(frozen=True)
class InstanceMetrics:
    """COCO summary metrics in ``[0, 1]`` (-1 where COCO has nothing to measure, e.g. no
    small objects), plus counts.

    Attributes:
        ap, ap50, ap75: AP averaged over IoU 0.50:0.95, at 0.50 and at 0.75.
        ap_small, ap_medium, ap_large: AP by object area (< 32², < 96², larger).
        ar_1, ar_10, ar_100: recall with at most 1 / 10 / 100 detections per image.
        ar_small, ar_medium, ar_large: AR@100 by area.
        iou_type: ``"segm"`` (masks) or ``"bbox"``.
        num_images: images evaluated; num_predictions: predictions scored.
        protocol: always ``"coco"`` (tells saved metrics apart from :class:`LvisMetrics`).
    """

    ap: float
    ap50: float
    ap75: float
    ap_small: float
    ap_medium: float
    ap_large: float
    ar_1: float
    ar_10: float
    ar_100: float
    ar_small: float
    ar_medium: float
    ar_large: float
    iou_type: str
    num_images: int
    num_predictions: int
    protocol: ClassVar[str] = "coco"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "protocol": self.protocol}

    def table(self) -> str:
        """A Markdown table of the AP / AR numbers (percent)."""
        head = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")
        vals = (
            self.ap,
            self.ap50,
            self.ap75,
            self.ap_small,
            self.ap_medium,
            self.ap_large,
            self.ar_100,
        )
        return metrics_table(head, percent_cells(vals))


def evaluate_instances(
    pipeline_or_predictions: Any,
    gt_json: str | os.PathLike | Mapping[str, Any],
    image_dir: str | os.PathLike | None = None,
    *,
    iou_type: str = "segm",
    protocol: str = "auto",
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> InstanceMetrics | LvisMetrics:
    """Score instance masks against a COCO or LVIS ground-truth file.

    Args:
        pipeline_or_predictions: one of
            - an :class:`~composeseg.pipelines.InstanceSegmentation` (or any object with
              ``stream(paths)`` yielding ``ImageResult``): run on every ground-truth image
              found under ``image_dir``;
            - ``ImageResult`` objects (matched to ground-truth images by file name);
            - a COCO results list (``image_id``, ``category_id``, ``segmentation``,
              ``score``), or a path to one, or to a COCO dataset JSON written by
              :func:`composeseg.pipelines.export.write_coco` (matched by file name).
        gt_json: the COCO or LVIS ground truth, a path or a loaded dict.
        image_dir: where the ground-truth images are (needed for a pipeline).
        iou_type: ``"segm"`` (mask AP) or ``"bbox"``.
        protocol: ``"coco"`` (pycocotools, :class:`InstanceMetrics`), ``"lvis"`` (federated
            LVIS rules through faster-coco-eval, :class:`LvisMetrics`, see
            :mod:`composeseg.evaluation.lvis`) or ``"auto"``: LVIS when the ground truth has
            category ``frequency`` or image ``neg_category_ids`` /
            ``not_exhaustive_category_ids``, else COCO.
        out_dir: when given, ``predictions.json`` (COCO results) and ``metrics.json`` are
            written there, so runs can be compared later.
        progress: progress bar while running a pipeline.

    Predictions carrying ``class_name`` (in ``data`` or as a record key) are matched to
    ground-truth categories by name when the names agree; otherwise ``class_id`` is taken as
    the COCO ``category_id``.

    Raises:
        ImportError: LVIS scoring without faster-coco-eval (before any prediction is made).
    """
    from pycocotools.coco import COCO

    if iou_type not in ("segm", "bbox"):
        raise ValueError(f"iou_type must be 'segm' or 'bbox', got {iou_type!r}")
    gt_data = load_json(gt_json, "ground-truth file")
    if not isinstance(gt_data, Mapping) or "images" not in gt_data:
        raise ValueError("the ground truth must be a COCO dataset with 'images'")
    check_dataset(
        gt_data,
        str(gt_json) if isinstance(gt_json, (str, Path)) else "ground truth",
        need="segmentation" if iou_type == "segm" else "bbox",
    )
    protocol = resolve_protocol(protocol, gt_data)
    gt_data = dict(gt_data)
    gt_data.setdefault("info", {})
    gt_data.setdefault("licenses", [])
    # LVIS annotations carry no iscrowd, which pycocotools' COCOeval reads
    gt_data["annotations"] = [
        a if "iscrowd" in a else {**a, "iscrowd": 0} for a in gt_data.get("annotations", [])
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_data
        gt.createIndex()
    records = _predictions(pipeline_or_predictions, gt, image_dir, progress)
    records = _map_categories(records, gt)
    if out_dir is not None:
        write_json(Path(out_dir) / "predictions.json", records)
    metrics: InstanceMetrics | LvisMetrics
    if protocol == "lvis":
        metrics = score_lvis(gt.dataset, records, iou_type)
    else:
        metrics = _score(gt, records, iou_type)
    if out_dir is not None:
        write_json(Path(out_dir) / "metrics.json", metrics.to_dict())
    return metrics


def _file_ids(gt: Any) -> dict[str, int]:
    ids: dict[str, int] = {}
    for image in gt.dataset["images"]:
        name = image_file_name(image)
        ids[name] = int(image["id"])
        ids.setdefault(Path(name).name, int(image["id"]))
    return ids


def _predictions(source: Any, gt: Any, image_dir: Any, progress: bool) -> list[dict[str, Any]]:
    if callable(getattr(source, "stream", None)):
        if image_dir is None:
            raise ValueError("evaluating a pipeline needs image_dir (where the GT images are)")
        root = Path(image_dir)
        paths = [image_path(root, im) for im in gt.dataset["images"]]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"ground-truth image not found: {missing[0]}")
        return _from_results(source.stream(paths, progress=progress), gt)
    if isinstance(source, (str, os.PathLike)):
        source = load_json(source, "predictions file")
    if isinstance(source, Mapping):
        if "annotations" not in source or "images" not in source:
            raise ValueError("a predictions dict must be a COCO dataset (images, annotations)")
        ids = _file_ids(gt)
        own = {int(im["id"]): str(im["file_name"]) for im in source["images"]}
        out = []
        for record in source["annotations"]:
            name = own[int(record["image_id"])]
            if name not in ids and Path(name).name not in ids:
                raise ValueError(f"predicted image {name!r} is not in the ground truth")
            image_id = ids.get(name, ids.get(Path(name).name))
            out.append({**record, "image_id": image_id})
        return out
    items = list(source)
    if items and isinstance(items[0], Mapping):
        return [dict(r) for r in items]
    return _from_results(items, gt)


def _from_results(results: Iterable[Any], gt: Any) -> list[dict[str, Any]]:
    from composeseg.coco import detections_to_annotations

    ids = _file_ids(gt)
    records: list[dict[str, Any]] = []
    for result in results:
        key = str(result.name)
        if key not in ids and Path(key).name not in ids:
            raise ValueError(f"image {key!r} is not in the ground truth")
        image_id = ids[key] if key in ids else ids[Path(key).name]
        records += detections_to_annotations(result.detections, image_id, len(records) + 1)
    return records


def _map_categories(records: Sequence[dict[str, Any]], gt: Any) -> list[dict[str, Any]]:
    by_name = {str(c["name"]): int(c["id"]) for c in gt.dataset.get("categories", [])}
    named = [r for r in records if "class_name" in r]
    use_names = bool(named) and any(r["class_name"] in by_name for r in named)
    out = []
    for record in records:
        record = dict(record)
        if use_names and "class_name" in record:
            if record["class_name"] not in by_name:
                continue  # a class the ground truth does not annotate cannot be scored
            record["category_id"] = by_name[record["class_name"]]
        out.append(record)
    return out


def _score(gt: Any, records: list[dict[str, Any]], iou_type: str) -> InstanceMetrics:
    import numpy as np
    from pycocotools.cocoeval import COCOeval

    num_images = len(gt.dataset["images"])
    if not records:  # pycocotools cannot load an empty result list: nothing found scores 0
        zeros = dict.fromkeys(_STAT_NAMES, 0.0)
        return InstanceMetrics(**zeros, iou_type=iou_type, num_images=num_images, num_predictions=0)
    if iou_type == "segm":
        lacking = [r for r in records if "segmentation" not in r]
        if lacking:
            raise ValueError(f"prediction for image {lacking[0]['image_id']} has no mask")
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(records)
        evaluator = COCOeval(gt, dt, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = np.asarray(evaluator.stats, float)
    values = {name: float(stats[i]) for i, name in enumerate(_STAT_NAMES)}
    return InstanceMetrics(
        **values, iou_type=iou_type, num_images=num_images, num_predictions=len(records)
    )
