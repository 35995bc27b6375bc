"""BSDS-style boundary evaluation: ODS, OIS, AP and R50 of edge maps.

For each of ``thresholds`` levels, the edge map is binarised and thinned, and its pixels are
matched one-to-one to ground-truth boundary pixels within ``max_dist`` times the image
diagonal (0.0075, the BSDS500 standard) by the BSDS minimum-cost bipartite matcher
(``correspond_pixels``, the original C++ code as ported by ``pyEdgeEval``). With several
ground-truth maps per image (BSDS annotators), recall sums over them and a predicted pixel is
correct if it matches any of them. Like the original, the matcher's sparse graph is random
(seeded from the clock, with no way to fix the seed), so repeated runs can differ by a few
pixels (up to ~2 % of a 236-pixel toy outline; a vanishing share of a real image's boundary).

- ODS: best F-measure of the dataset-wide precision/recall curve (interpolated between
  thresholds, as the BSDS benchmark does); OIS: F-measure with each image's best threshold;
- AP: interpolated average precision (101 recall points), pyEdgeEval / BSDS code;
- R50: recall at 50 % precision (the SAM paper's §7.2 metric), interpolated on the curve.

Needs ``pip install composeseg[edges]`` (pyEdgeEval).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from composeseg.evaluation.table import metrics_table

BSDS_MAX_DIST = 0.0075
BSDS_THRESHOLDS = 99


@dataclass(frozen=True)
class EdgeMetrics:
    """Boundary metrics in [0, 1].

    Attributes:
        ods, ods_threshold: dataset-wide best F-measure and its threshold.
        ois: F-measure with per-image best thresholds.
        ap: average precision; r50: recall at 50 % precision (0 if never reached).
        precision, recall: the arrays of the curve, one value per threshold.
        thresholds: the thresholds evaluated; num_images: images.
    """

    ods: float
    ods_threshold: float
    ois: float
    ap: float
    r50: float
    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray
    num_images: int

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        for key in ("precision", "recall", "thresholds"):
            values[key] = values[key].tolist()
        return values

    def table(self) -> str:
        """A Markdown table of ODS / OIS / AP / R50."""
        cells = [f"{v:.3f}" for v in (self.ods, self.ois, self.ap, self.r50)]
        return metrics_table(("ODS", "OIS", "AP", "R50"), cells)


def _require() -> Any:
    from composeseg.extras import require

    module = require(
        "pyEdgeEval.common.binary_label",
        extra="edges",
        purpose="edge evaluation (the BSDS matcher)",
        package="pyEdgeEval",
    )
    return module.evaluate_boundaries


def image_counts(
    edges: np.ndarray,
    ground_truths: Sequence[np.ndarray],
    thresholds: np.ndarray,
    *,
    max_dist: float = BSDS_MAX_DIST,
    thin: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-threshold ``(matched gt, gt, matched predicted, predicted)`` pixel counts of one image.

    Args:
        edges: ``(H, W)`` float edge strength in [0, 1].
        ground_truths: one or more ``(H, W) bool`` boundary maps.
    """
    evaluate = _require()
    for i, gt in enumerate(ground_truths):
        if gt.shape != edges.shape:
            raise ValueError(f"ground truth {i} has shape {gt.shape}, edges have {edges.shape}")
    count_r, sum_r, count_p, sum_p = evaluate.evaluate_boundaries_threshold_multiple_gts(
        thresholds,
        edges.astype(np.float64),
        [np.asarray(gt, bool) for gt in ground_truths],
        max_dist=max_dist,
        apply_thinning=thin,
    )
    return count_r, sum_r, count_p, sum_p


def edge_f_measure(
    edges: Sequence[np.ndarray],
    ground_truths: Sequence[np.ndarray | Sequence[np.ndarray]],
    *,
    thresholds: int | Sequence[float] = BSDS_THRESHOLDS,
    max_dist: float = BSDS_MAX_DIST,
    thin: bool = True,
) -> EdgeMetrics:
    """ODS, OIS, AP and R50 of edge maps against boundary ground truth.

    Args:
        edges: per image, an ``(H, W)`` float edge map in [0, 1] (higher = more edge).
        ground_truths: per image, an ``(H, W) bool`` boundary map or a list of them (several
            annotators).
        thresholds: a count ``K`` (the BSDS ``linspace(1/(K+1), K/(K+1), K)``, 99 by default)
            or explicit increasing thresholds.
        max_dist: matching tolerance as a fraction of the image diagonal.
        thin: thin each binarised map before matching (BSDS does).

    Returns:
        :class:`EdgeMetrics`.
    """
    if len(edges) != len(ground_truths):
        raise ValueError(f"{len(edges)} edge maps but {len(ground_truths)} ground truths")
    if not len(edges):
        raise ValueError("no images to evaluate")
    if isinstance(thresholds, int):
        if thresholds < 1:
            raise ValueError(f"thresholds must be >= 1, got {thresholds}")
        levels = np.linspace(1 / (thresholds + 1), 1 - 1 / (thresholds + 1), thresholds)
    else:
        levels = np.asarray(thresholds, np.float64)
        if levels.ndim != 1 or not len(levels) or np.any(np.diff(levels) <= 0):
            raise ValueError(f"thresholds must be increasing, got {levels.tolist()}")
    totals = np.zeros((4, len(levels)))
    best = np.zeros(4)
    for edge, gt in zip(edges, ground_truths, strict=True):
        gts = [gt] if isinstance(gt, np.ndarray) and gt.ndim == 2 else list(gt)
        counts = np.stack(image_counts(edge, gts, levels, max_dist=max_dist, thin=thin))
        totals += counts
        _, _, f = _prf(counts)
        best += counts[:, int(np.argmax(f))]
    recall, precision, _ = _prf(totals)
    ods_t, ods = _interpolated_best(levels, recall, precision)
    ois = float(_prf(best[:, None])[2][0])
    return EdgeMetrics(
        ods=ods,
        ods_threshold=ods_t,
        ois=ois,
        ap=_average_precision(recall, precision),
        r50=recall_at_precision(recall, precision, 0.5),
        precision=precision,
        recall=recall,
        thresholds=levels,
        num_images=len(edges),
    )


def _prf(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    count_r, sum_r, count_p, sum_p = counts
    recall = count_r / np.where(sum_r == 0, 1, sum_r)
    precision = count_p / np.where(sum_p == 0, 1, sum_p)
    denominator = precision + recall
    f = 2 * precision * recall / np.where(denominator == 0, 1, denominator)
    return recall, precision, f


def _f(p: float | np.ndarray, r: float | np.ndarray) -> Any:
    s = p + r
    return 2 * p * r / np.where(s == 0, 1, s)


def _interpolated_best(
    thresholds: np.ndarray, recall: np.ndarray, precision: np.ndarray
) -> tuple[float, float]:
    """Best F along the curve, linearly interpolated between thresholds (BSDS ``findBestRPF``)."""
    weights = np.linspace(0, 1, 101)[:, None]
    if len(thresholds) == 1:
        return float(thresholds[0]), float(_f(precision[0], recall[0]))
    t = thresholds[1:] * weights + thresholds[:-1] * (1 - weights)
    r = recall[1:] * weights + recall[:-1] * (1 - weights)
    p = precision[1:] * weights + precision[:-1] * (1 - weights)
    f = _f(p, r)
    i = np.unravel_index(int(np.argmax(f)), f.shape)
    return float(t[i]), float(f[i])


def _average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Mean over recall levels 0, 0.01, …, 1 of the best precision at that recall or more."""
    levels = np.linspace(0, 1, 101)
    return float(np.mean([np.max(precision[recall >= t], initial=0.0) for t in levels]))


def recall_at_precision(recall: np.ndarray, precision: np.ndarray, target: float) -> float:
    """Highest recall on the curve (linearly interpolated between thresholds) where precision
    is at least ``target``; 0 if precision never reaches it."""
    best = float(np.max(recall[precision >= target], initial=0.0))
    for i in range(len(recall) - 1):
        p0, p1, r0, r1 = precision[i], precision[i + 1], recall[i], recall[i + 1]
        if (p0 - target) * (p1 - target) < 0:
            w = (target - p0) / (p1 - p0)
            best = max(best, float(r0 + w * (r1 - r0)))
    return best
