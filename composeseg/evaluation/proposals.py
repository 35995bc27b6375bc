"""Class-agnostic mask average recall of object proposals (pycocotools ``COCOeval``).

``useCats = 0`` (a proposal may match a ground-truth object of any category), ``maxDets =
[10, 100, 1000]``, ``iouType = "segm"``: AR@10, AR@100, AR@1000 and AR@1000 by object size
(small < 32², medium < 96², large), averaged over IoU 0.50:0.05:0.95, as in the SAM paper's
LVIS proposal experiment. Works on any COCO- or LVIS-format ground truth.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from composeseg.evaluation.table import metrics_table, percent_cells

MAX_DETS = (10, 100, 1000)


@dataclass(frozen=True)
class ProposalMetrics:
    """Average recall in [0, 1] (-1 where COCO has nothing to measure, e.g. no small objects).

    Attributes:
        ar_10, ar_100, ar_1000: AR with at most 10 / 100 / 1000 proposals per image.
        ar_small, ar_medium, ar_large: AR@1000 by ground-truth area.
        num_images: images evaluated; num_proposals: proposals scored.
    """

    ar_10: float
    ar_100: float
    ar_1000: float
    ar_small: float
    ar_medium: float
    ar_large: float
    num_images: int
    num_proposals: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """A Markdown table of the AR numbers (percent)."""
        head = ("AR@10", "AR@100", "AR@1000", "ARs", "ARm", "ARl")
        values = (
            self.ar_10,
            self.ar_100,
            self.ar_1000,
            self.ar_small,
            self.ar_medium,
            self.ar_large,
        )
        return metrics_table(head, percent_cells(values))


def detections_to_results(image_id: int, detections: Any) -> list[dict[str, Any]]:
    """COCO result records for one image's ``supervision.Detections``.

    Masks come from ``detections.mask`` ``(N, H, W) bool`` or, when it is None, from
    ``detections.data["rle"]`` (COCO RLEs); scores from ``confidence`` (1 when absent).
    """
    from composeseg.rle import encode_mask

    count = len(detections)
    scores = detections.confidence if detections.confidence is not None else np.ones(count)
    if detections.mask is not None:
        rles = [encode_mask(m) for m in detections.mask]
    elif "rle" in detections.data:
        rles = [dict(r) for r in detections.data["rle"]]
    else:
        raise ValueError(f"image {image_id}: detections carry neither mask nor data['rle']")
    return [
        {"image_id": int(image_id), "category_id": 1, "segmentation": rle, "score": float(s)}
        for rle, s in zip(rles, scores, strict=True)
    ]


def proposal_recall(
    predictions: Mapping[int, Any] | Sequence[dict[str, Any]] | str | os.PathLike,
    ground_truth: str | os.PathLike | Mapping[str, Any],
) -> ProposalMetrics:
    """Class-agnostic mask AR@{10, 100, 1000} and AR@1000 by size.

    Args:
        predictions: ``{image_id: supervision.Detections}``, a list of COCO result records
            (``image_id``, ``segmentation`` RLE, ``score``), or a path to such a JSON list.
            Images of the ground truth without predictions count with zero recall.
        ground_truth: a COCO/LVIS instances JSON path or its loaded dict (needs
            ``segmentation`` on each annotation).

    Returns:
        :class:`ProposalMetrics`, computed by pycocotools ``COCOeval``.

    Raises:
        ValueError: a prediction names an image absent from the ground truth.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from composeseg.coco import check_dataset, load_json

    name = "ground truth" if isinstance(ground_truth, Mapping) else str(ground_truth)
    dataset = check_dataset(load_json(ground_truth, "ground-truth file"), name, need="segmentation")
    dataset.setdefault("categories", [{"id": 1, "name": "object"}])
    for annotation in dataset.get("annotations", []):
        annotation.setdefault("iscrowd", 0)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
    # With useCats=0 COCOeval still only gathers results whose category is in the ground
    # truth's list, so every proposal gets one such category.
    category = min(gt.getCatIds(), default=1)
    results = [{**r, "category_id": category} for r in _as_results(predictions)]
    unknown = {r["image_id"] for r in results} - set(gt.getImgIds())
    if unknown:
        raise ValueError(
            f"predictions for images absent from the ground truth: {sorted(unknown)[:5]}"
        )
    image_ids = sorted(gt.getImgIds())
    if not results:  # COCOeval cannot load an empty result list: no proposal, no recall
        areas = [a.get("area", 0) for a in gt.dataset.get("annotations", []) if not a["iscrowd"]]
        ranges = ((0, 1e10), (0, 32**2), (32**2, 96**2), (96**2, 1e10))
        found = [0.0 if any(lo <= a < hi for a in areas) else -1.0 for lo, hi in ranges]
        return _metrics([*found[:1] * 3, *found[1:]], len(image_ids), 0)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        evaluator = COCOeval(gt, dt, iouType="segm")
        evaluator.params.useCats = 0
        evaluator.params.maxDets = list(MAX_DETS)
        evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # summarize(): stats[6:9] = AR at maxDets[0..2], stats[9:12] = AR by area at maxDets[2]
    stats = [float(v) for v in evaluator.stats[6:12]]
    return _metrics(stats, len(image_ids), len(results))


def _metrics(stats: list[float], num_images: int, num_proposals: int) -> ProposalMetrics:
    names = ("ar_10", "ar_100", "ar_1000", "ar_small", "ar_medium", "ar_large")
    values = dict(zip(names, stats, strict=True))
    return ProposalMetrics(**values, num_images=num_images, num_proposals=num_proposals)


def _as_results(
    predictions: Mapping[int, Any] | Sequence[dict[str, Any]] | str | os.PathLike,
) -> list[dict[str, Any]]:
    if isinstance(predictions, (str, os.PathLike)):
        with open(predictions) as f:
            predictions = json.load(f)
    if isinstance(predictions, Mapping):
        return [r for i, d in predictions.items() for r in detections_to_results(int(i), d)]
    results = []
    records: Sequence[dict[str, Any]] = predictions  # type: ignore[assignment]
    for i, record in enumerate(records):
        if "segmentation" not in record or "image_id" not in record:
            raise ValueError(f"predictions[{i}] needs 'image_id' and 'segmentation'")
        results.append({"category_id": 1, "score": 1.0, **record})
    return results
