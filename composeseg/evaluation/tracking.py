"""Multi-object tracking metrics: HOTA, MOTA, IDF1, ID switches, plus mask IoU and flicker.

The identity and CLEAR/HOTA metrics are computed by the ``trackers`` package's evaluators
(TrackEval-compatible), fed per-frame similarity matrices: mask IoU when both sides have masks,
else box IoU. On top of them this module measures the masks themselves:

- ``mask_iou``: per frame, each ground-truth object's IoU with the prediction matched to it
  (Hungarian on mask IoU; 0 when unmatched), averaged over objects, then over frames;
- ``mask_flicker``: for each ground-truth object matched to the *same* predicted id in two
  consecutive frames, ``|IoU_t - IoU_{t-1}|``, averaged; masks that jump between plausible
  shapes from frame to frame score high even when their mean IoU is fine.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from composeseg.geometry import box_iou, mask_iou

# ids of successive sequences are offset by this much so that they never collide
_SEQUENCE_STRIDE = 1 << 40


@dataclass(frozen=True)
class TrackingMetrics:
    """Tracking quality of one or more sequences (fractions in [0, 1] unless noted).

    Attributes:
        HOTA, DetA, AssA: higher-order tracking accuracy and its detection / association parts.
        MOTA, MOTP: CLEAR MOT accuracy (may be negative) and precision.
        IDF1: identity F1.
        IDSW: identity switches (count).
        Frag: fragmentations (count).
        mask_iou: mean per-frame mask IoU (``nan`` without masks).
        mask_flicker: mean frame-to-frame change of a matched object's IoU (``nan`` without
            masks).
        frames: frames evaluated; gt_tracks / pred_tracks: distinct identities.
    """

    HOTA: float
    DetA: float
    AssA: float
    MOTA: float
    MOTP: float
    IDF1: float
    IDSW: int
    Frag: int
    mask_iou: float
    mask_flicker: float
    frames: int
    gt_tracks: int
    pred_tracks: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class TrackingEvaluator:
    """Accumulate frames, then :meth:`compute`. Memory: a few small arrays per frame.

    Args:
        threshold: IoU for a match in CLEAR and Identity metrics (HOTA sweeps its own).
        use_masks: compare masks when both sides have them (else boxes).

    Raises:
        ImportError: the ``trackers`` package is missing (names the pip extra).
    """

    def __init__(self, *, threshold: float = 0.5, use_masks: bool = True) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        from composeseg.extras import require

        require("trackers.eval", extra="video", purpose="tracking metrics", package="trackers")
        self.threshold = threshold
        self.use_masks = use_masks
        self._gt_ids: list[np.ndarray] = []
        self._pred_ids: list[np.ndarray] = []
        self._similarity: list[np.ndarray] = []
        self._frame_iou: list[float] = []
        self._flicker: list[float] = []
        self._previous: dict[int, tuple[int, float]] = {}  # gt id -> (pred id, IoU) last frame
        self._offset = 0

    def new_sequence(self) -> None:
        """Start another video: its ids are kept apart from the previous videos' ids."""
        if self._gt_ids:
            self._offset += _SEQUENCE_STRIDE
        self._previous = {}

    def update(
        self,
        gt_ids: np.ndarray,
        pred_ids: np.ndarray,
        *,
        gt_boxes: np.ndarray | None = None,
        pred_boxes: np.ndarray | None = None,
        gt_masks: np.ndarray | None = None,
        pred_masks: np.ndarray | None = None,
    ) -> None:
        """Add one frame.

        Args:
            gt_ids, pred_ids: ``(G,)`` / ``(P,)`` integer identities (any values).
            gt_boxes, pred_boxes: ``(G, 4)`` / ``(P, 4)`` xyxy pixels.
            gt_masks, pred_masks: ``(G, H, W)`` / ``(P, H, W)`` bool.
        """
        gt_ids = np.asarray(gt_ids, np.int64).reshape(-1) + self._offset
        pred_ids = np.asarray(pred_ids, np.int64).reshape(-1) + self._offset
        masks = False
        if self.use_masks and gt_masks is not None and pred_masks is not None:
            masks = True
            if len(gt_masks) != len(gt_ids) or len(pred_masks) != len(pred_ids):
                raise ValueError(
                    f"{len(gt_masks)} gt masks for {len(gt_ids)} ids, {len(pred_masks)} "
                    f"predicted masks for {len(pred_ids)} ids"
                )
            if len(gt_masks) and len(pred_masks) and gt_masks.shape[1:] != pred_masks.shape[1:]:
                raise ValueError(
                    f"mask sizes differ: gt {gt_masks.shape[1:]}, predicted {pred_masks.shape[1:]}"
                )
            similarity = (
                mask_iou(gt_masks, pred_masks)
                if len(gt_ids) and len(pred_ids)
                else np.zeros((len(gt_ids), len(pred_ids)))
            )
        else:
            if gt_boxes is None or pred_boxes is None:
                raise ValueError("give boxes (or masks on both sides) for every frame")
            gt_b = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
            pred_b = np.asarray(pred_boxes, np.float64).reshape(-1, 4)
            similarity = (
                box_iou(gt_b, pred_b)
                if len(gt_ids) and len(pred_ids)
                else np.zeros((len(gt_ids), len(pred_ids)))
            )
        self._gt_ids.append(gt_ids)
        self._pred_ids.append(pred_ids)
        self._similarity.append(similarity.astype(np.float64))
        if masks:
            self._mask_quality(gt_ids, pred_ids, similarity)

    def _mask_quality(self, gt_ids: np.ndarray, pred_ids: np.ndarray, iou: np.ndarray) -> None:
        from scipy.optimize import linear_sum_assignment

        if len(gt_ids) == 0:
            self._previous = {}
            return
        per_gt = np.zeros(len(gt_ids))
        matched: dict[int, tuple[int, float]] = {}
        if len(pred_ids):
            rows, cols = linear_sum_assignment(iou, maximize=True)
            for r, c in zip(rows, cols, strict=True):
                if iou[r, c] > 0:
                    per_gt[r] = iou[r, c]
                    matched[int(gt_ids[r])] = (int(pred_ids[c]), float(iou[r, c]))
        self._frame_iou.append(float(per_gt.mean()))
        for gt_id, (pred_id, value) in matched.items():
            before = self._previous.get(gt_id)
            if before is not None and before[0] == pred_id:
                self._flicker.append(abs(value - before[1]))
        self._previous = matched

    def add(self, ground_truth: Any, detections: Any) -> None:
        """Add one frame from objects: ground truth with ``.instances`` (each ``track_id``,
        ``box``, ``mask``; e.g. :class:`composeseg.synthetic.VideoFrame`) or a
        ``supervision.Detections``; predictions as ``supervision.Detections`` with
        ``tracker_id`` (rows with id -1 are unassigned and left out)."""
        gt_ids, gt_boxes, gt_masks = _columns(ground_truth)
        pred_ids, pred_boxes, pred_masks = _columns(detections)
        keep = pred_ids >= 0
        self.update(
            gt_ids,
            pred_ids[keep],
            gt_boxes=gt_boxes,
            pred_boxes=pred_boxes[keep],
            gt_masks=gt_masks,
            pred_masks=None if pred_masks is None else pred_masks[keep],
        )

    def compute(self) -> TrackingMetrics:
        """Metrics over every frame added so far."""
        from trackers.eval import (
            compute_clear_metrics,
            compute_hota_metrics,
            compute_identity_metrics,
        )

        gt_ids = _contiguous(self._gt_ids)
        pred_ids = _contiguous(self._pred_ids)
        clear = compute_clear_metrics(gt_ids, pred_ids, self._similarity, threshold=self.threshold)
        hota = compute_hota_metrics(gt_ids, pred_ids, self._similarity)
        identity = compute_identity_metrics(
            gt_ids, pred_ids, self._similarity, threshold=self.threshold
        )
        nan = float("nan")
        return TrackingMetrics(
            HOTA=float(hota["HOTA"]),
            DetA=float(hota["DetA"]),
            AssA=float(hota["AssA"]),
            MOTA=float(clear["MOTA"]),
            MOTP=float(clear["MOTP"]),
            IDF1=float(identity["IDF1"]),
            IDSW=int(clear["IDSW"]),
            Frag=int(clear["Frag"]),
            mask_iou=float(np.mean(self._frame_iou)) if self._frame_iou else nan,
            mask_flicker=float(np.mean(self._flicker)) if self._flicker else nan,
            frames=len(self._gt_ids),
            gt_tracks=len({int(i) for ids in self._gt_ids for i in ids}),
            pred_tracks=len({int(i) for ids in self._pred_ids for i in ids}),
        )


def _contiguous(per_frame: list[np.ndarray]) -> list[np.ndarray]:
    # the trackers evaluators index accumulators by id: ids must be 0..K-1
    values = np.unique(np.concatenate(per_frame)) if per_frame else np.zeros(0, np.int64)
    return [np.searchsorted(values, ids).astype(np.int64) for ids in per_frame]


def _columns(frame: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(ids, boxes (N, 4) xyxy, masks (N, H, W) | None)`` from a GT frame or Detections."""
    if hasattr(frame, "instances"):
        instances = frame.instances
        ids = np.array([t.track_id for t in instances], np.int64)
        boxes = np.array([t.box for t in instances], np.float64).reshape(-1, 4)
        shape = frame.image.shape[:2] if hasattr(frame, "image") else None
        if instances:
            masks: np.ndarray | None = np.stack([t.mask for t in instances])
        else:
            masks = np.zeros((0, *shape), bool) if shape is not None else None
        return ids, boxes, masks
    if hasattr(frame, "xyxy"):
        n = len(frame)
        ids = frame.tracker_id if frame.tracker_id is not None else np.full(n, -1)
        return np.asarray(ids, np.int64), np.asarray(frame.xyxy, np.float64), frame.mask
    raise TypeError(
        f"expected a frame with .instances or a supervision.Detections, got {type(frame).__name__}"
    )


def evaluate_tracking(
    predictions: Iterable[Any],
    ground_truth: Iterable[Any],
    *,
    threshold: float = 0.5,
    use_masks: bool = True,
) -> TrackingMetrics:
    """Compare per-frame predictions with ground truth, streaming (pairs are zipped in order).

    Args:
        predictions: ``supervision.Detections`` per frame with ``tracker_id`` (and masks).
        ground_truth: per frame, an object with ``.instances`` (``track_id``, ``box``,
            ``mask``), such as ``composeseg.synthetic.iter_video_frames(...)``, or
            ``supervision.Detections`` with ``tracker_id``.

    Raises:
        ValueError: the two sequences have different lengths.
    """
    evaluator = TrackingEvaluator(threshold=threshold, use_masks=use_masks)
    pred_iter, gt_iter = iter(predictions), iter(ground_truth)
    for index, gt in enumerate(gt_iter):
        detections = next(pred_iter, None)
        if detections is None:
            raise ValueError(f"predictions end at frame {index}; the ground truth goes on")
        evaluator.add(gt, detections)
    if next(pred_iter, None) is not None:
        raise ValueError("there are more predicted frames than ground-truth frames")
    return evaluator.compute()


def evaluate_mot_files(
    gt_path: str | os.PathLike, pred_path: str | os.PathLike, *, threshold: float = 0.5
) -> TrackingMetrics:
    """HOTA / CLEAR / Identity of a MOT-format result file against MOT-format ground truth.

    Uses ``trackers.eval.evaluate_mot_sequence`` as is, with MOTChallenge semantics: only
    ground-truth rows with class 1 (pedestrian) and a non-zero "consider" flag are scored;
    distractor classes are ignored. Boxes only: ``mask_iou`` and ``mask_flicker`` are ``nan``.
    """
    from trackers.eval import evaluate_mot_sequence

    for path in (gt_path, pred_path):
        if not os.path.exists(path):
            raise FileNotFoundError(f"MOT file not found: {path}")
    gt_path, pred_path = Path(gt_path), Path(pred_path)
    result = evaluate_mot_sequence(
        gt_path, pred_path, metrics=["CLEAR", "HOTA", "Identity"], threshold=threshold
    )
    clear, hota, identity = result.CLEAR, result.HOTA, result.Identity
    if clear is None or hota is None or identity is None:
        raise RuntimeError("trackers returned no CLEAR/HOTA/Identity metrics")
    from trackers import load_mot_file

    gt, pred = load_mot_file(gt_path), load_mot_file(pred_path)
    return TrackingMetrics(
        HOTA=float(hota.HOTA),
        DetA=float(hota.DetA),
        AssA=float(hota.AssA),
        MOTA=float(clear.MOTA),
        MOTP=float(clear.MOTP),
        IDF1=float(identity.IDF1),
        IDSW=int(clear.IDSW),
        Frag=int(clear.Frag),
        mask_iou=float("nan"),
        mask_flicker=float("nan"),
        frames=len(set(gt) | set(pred)),
        gt_tracks=len({int(i) for f in gt.values() for i in f.ids}),
        pred_tracks=len({int(i) for f in pred.values() for i in f.ids}),
    )
