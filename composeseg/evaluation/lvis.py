"""LVIS mask AP (federated protocol) through faster-coco-eval's LVIS mode.

LVIS annotates each image exhaustively only for some categories, so its protocol differs from
COCO's (Gupta et al., "LVIS", CVPR 2019, section 5):

- a detection of category ``c`` on an image is scored only where ``c`` is verified: present
  (the image has an annotation of ``c``) or absent (``c`` is in the image's
  ``neg_category_ids``); elsewhere it is dropped;
- on images listing ``c`` in ``not_exhaustive_category_ids``, an unmatched detection of ``c`` is
  not a false positive;
- at most 300 detections per image (the highest scores, over all categories) are scored,
  instead of COCO's 100 per image and category;
- AP is also reported by the category's ``frequency`` in the training set, ``"r"`` (rare),
  ``"c"`` (common) or ``"f"`` (frequent): APr, APc, APf.

faster-coco-eval (``pip install "composeseg[lvis]"``) implements these rules; it is imported
only when an LVIS ground truth is scored.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from composeseg.evaluation.table import metrics_table, percent_cells

LVIS_MAX_DETS = 300
"""Detections scored per image under the LVIS protocol."""

PROTOCOLS = ("auto", "coco", "lvis")
_FREQUENCIES = ("r", "c", "f")
_IMAGE_KEYS = ("neg_category_ids", "not_exhaustive_category_ids")


@dataclass(frozen=True)
class LvisMetrics:
    """LVIS summary metrics in ``[0, 1]`` (-1 where there is nothing to measure, e.g. no rare
    category in the ground truth), plus counts.

    Attributes:
        ap, ap50, ap75: AP averaged over IoU 0.50:0.95, at 0.50 and at 0.75.
        ap_small, ap_medium, ap_large: AP by object area (< 32², < 96², larger).
        ap_rare, ap_common, ap_frequent: AP over the categories of frequency ``r`` / ``c`` /
            ``f``.
        ar: recall with at most :data:`LVIS_MAX_DETS` detections per image.
        ar_small, ar_medium, ar_large: that recall by area.
        iou_type: ``"segm"`` (masks) or ``"bbox"``.
        num_images: images evaluated; num_predictions: predictions kept after the
            per-image cap (before the federated filter).
        max_dets: the per-image cap; protocol: always ``"lvis"`` (tells saved metrics apart).
    """

    ap: float
    ap50: float
    ap75: float
    ap_small: float
    ap_medium: float
    ap_large: float
    ap_rare: float
    ap_common: float
    ap_frequent: float
    ar: float
    ar_small: float
    ar_medium: float
    ar_large: float
    iou_type: str
    num_images: int
    num_predictions: int
    max_dets: int = LVIS_MAX_DETS
    protocol: ClassVar[str] = "lvis"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "protocol": self.protocol}

    def table(self) -> str:
        """A Markdown table of the LVIS AP / AR numbers (percent)."""
        head = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf", "AR300")
        vals = (
            self.ap,
            self.ap50,
            self.ap75,
            self.ap_small,
            self.ap_medium,
            self.ap_large,
            self.ap_rare,
            self.ap_common,
            self.ap_frequent,
            self.ar,
        )
        return metrics_table(head, percent_cells(vals))


def looks_like_lvis(gt_data: Mapping[str, Any]) -> bool:
    """Whether a loaded ground truth is in LVIS format: a category with a ``frequency`` or an
    image with ``neg_category_ids`` / ``not_exhaustive_category_ids``."""
    if any("frequency" in c for c in gt_data.get("categories") or []):
        return True
    return any(key in image for image in gt_data.get("images") or [] for key in _IMAGE_KEYS)


def resolve_protocol(protocol: str, gt_data: Mapping[str, Any]) -> str:
    """``"coco"`` or ``"lvis"``: ``protocol`` itself, or for ``"auto"`` what the ground truth
    looks like (:func:`looks_like_lvis`).

    For ``"lvis"`` it also checks, before any compute, that faster-coco-eval is installed and
    that every category has a ``frequency``.

    Raises:
        ValueError: an unknown protocol, or an LVIS ground truth with a category lacking
            ``frequency`` ``"r"`` / ``"c"`` / ``"f"``.
        ImportError: LVIS scoring without faster-coco-eval (names the pip extra).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if protocol == "auto":
        protocol = "lvis" if looks_like_lvis(gt_data) else "coco"
    if protocol == "lvis":
        for category in gt_data.get("categories") or []:
            if category.get("frequency") not in _FREQUENCIES:
                raise ValueError(
                    f"LVIS evaluation needs each category's frequency ('r', 'c' or 'f'); "
                    f"category {category.get('id')!r} ({category.get('name')!r}) has "
                    f"{category.get('frequency')!r} (protocol='coco' scores it as COCO)"
                )
        _require()
    return protocol


def _require() -> Any:
    from composeseg.extras import require

    return require(
        "faster_coco_eval",
        extra="lvis",
        purpose="LVIS evaluation (or score with protocol='coco')",
        package="faster-coco-eval",
    )


def cap_per_image(
    records: Sequence[Mapping[str, Any]], max_dets: int = LVIS_MAX_DETS
) -> list[dict[str, Any]]:
    """The ``max_dets`` highest-scoring records of each image (over all categories), as new
    dicts, in input order otherwise, as LVIS's own ``LVISResults`` does before evaluating."""
    if max_dets < 1:
        raise ValueError(f"max_dets must be >= 1, got {max_dets}")
    by_image: dict[Any, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        if "score" not in record:
            raise ValueError(f"prediction for image {record.get('image_id')} has no score")
        by_image[record["image_id"]].append(index)
    keep: list[int] = []
    for indices in by_image.values():
        indices.sort(key=lambda i: -float(records[i]["score"]))
        keep += indices[:max_dets]
    return [dict(records[i]) for i in sorted(keep)]


def score_lvis(
    gt_data: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    iou_type: str = "segm",
    *,
    max_dets: int = LVIS_MAX_DETS,
) -> LvisMetrics:
    """LVIS AP of COCO-format results against an LVIS ground truth.

    Args:
        gt_data: the LVIS dataset dict (``images`` with ``height``, ``width``,
            ``neg_category_ids``, ``not_exhaustive_category_ids``; ``annotations``;
            ``categories`` with ``frequency``). Not modified.
        records: COCO results (``image_id``, ``category_id``, ``score``, RLE ``segmentation``
            for ``"segm"``, xywh ``bbox`` for ``"bbox"``). Not modified.
        iou_type: ``"segm"`` (mask AP) or ``"bbox"``.
        max_dets: detections kept per image (LVIS: 300).
    """
    faster_coco_eval = _require()
    if iou_type not in ("segm", "bbox"):
        raise ValueError(f"iou_type must be 'segm' or 'bbox', got {iou_type!r}")
    kept = cap_per_image(records, max_dets)
    if iou_type == "segm":
        lacking = [r for r in kept if "segmentation" not in r]
        if lacking:
            raise ValueError(f"prediction for image {lacking[0]['image_id']} has no mask")
    dataset = copy.deepcopy(dict(gt_data))  # the evaluator writes flags into annotations
    dataset.setdefault("info", {})
    gt = faster_coco_eval.COCO(dataset, print_function=_quiet)
    dt = gt.loadRes(kept)
    evaluator = faster_coco_eval.COCOeval_faster(
        gt, dt, iou_type, lvis_style=True, print_function=_quiet
    )
    evaluator.params.maxDets = [max_dets]
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    stats = evaluator.stats_as_dict
    return LvisMetrics(
        ap=stats["AP_all"],
        ap50=stats["AP_50"],
        ap75=stats["AP_75"],
        ap_small=stats["AP_small"],
        ap_medium=stats["AP_medium"],
        ap_large=stats["AP_large"],
        ap_rare=stats["APr"],
        ap_common=stats["APc"],
        ap_frequent=stats["APf"],
        ar=stats["AR_all"],
        ar_small=stats["AR_small"],
        ar_medium=stats["AR_medium"],
        ar_large=stats["AR_large"],
        iou_type=iou_type,
        num_images=len(dataset["images"]),
        num_predictions=len(kept),
        max_dets=max_dets,
    )


def _quiet(*args: Any, **kwargs: Any) -> None:
    """faster-coco-eval's print hook: the metrics go to the caller's table instead."""
