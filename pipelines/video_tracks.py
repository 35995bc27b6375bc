"""Building blocks of :class:`~composeseg.pipelines.VideoSegmentation`: trackers and track state.

Kept apart from the pipeline so that each piece (tracker construction, motion-shifted mask
logits, mask-IoU association) can be read and tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from composeseg.geometry import clip_boxes

if TYPE_CHECKING:
    import supervision as sv

TRACKERS: tuple[str, ...] = ("bytetrack", "ocsort", "sort", "botsort", "none")
"""Tracker names accepted by :func:`make_tracker`; ``"none"`` uses the detector's own ids
(e.g. ultralytics ``model.track`` results, read by :func:`composeseg.adapters.from_ultralytics`)."""

# A logit this low means "certainly background" to SAM's mask encoder; it fills the pixels
# that a shifted mask prompt uncovers.
_BACKGROUND_LOGIT = -20.0


def make_tracker(
    name: str,
    *,
    frame_rate: float = 30.0,
    lost_track_buffer: int = 30,
    minimum_consecutive_frames: int = 1,
) -> Any:
    """A tracker of the ``trackers`` package by name (see :data:`TRACKERS`); ``None`` for "none".

    Every tracker gets ``frame_rate``, ``lost_track_buffer`` (frames a lost track is kept for
    re-identification at 30 fps) and ``minimum_consecutive_frames`` (hits before a track gets
    an id; the trackers' defaults are 2-3, which leaves new objects without an id for that many
    frames). BoT-SORT also compensates camera motion (it is given the frames).

    Raises:
        ValueError: an unknown name.
        ImportError: the ``trackers`` package is missing (names the pip extra).
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key == "none":
        return None
    classes = {
        "bytetrack": "ByteTrackTracker",
        "ocsort": "OCSORTTracker",
        "sort": "SORTTracker",
        "botsort": "BoTSORTTracker",
    }
    if key not in classes:
        raise ValueError(f"unknown tracker {name!r}; expected one of {TRACKERS}")
    from composeseg.extras import require

    trackers = require("trackers", extra="video", purpose="video tracking")
    tracker_class = getattr(trackers, classes[key])
    return tracker_class(
        lost_track_buffer=lost_track_buffer,
        frame_rate=frame_rate,
        minimum_consecutive_frames=minimum_consecutive_frames,
    )


@dataclass(eq=False)
class Track:
    """What the pipeline remembers of one output identity (bounded: no per-frame history).

    Attributes:
        track_id: the id reported in ``Detections.tracker_id``.
        box: ``(4,) float32`` xyxy pixels in the last frame it was seen or filled: its mask's
            box, or the detector's where the two disagree (box IoU < 0.5).
        velocity: ``(4,) float32`` smoothed per-frame change of ``box``.
        logits: ``(M, M) float32`` low-resolution mask logits from that frame.
        frame: index of that frame.
        last_detected: last frame in which the detector found it.
        hits: frames in which the detector found it.
        class_id, data, confidence: from its last detection (``data``: the detector's data
            columns' values for it, ``class_name`` among them when the detector names classes).
    """

    track_id: int
    box: np.ndarray
    velocity: np.ndarray
    logits: np.ndarray
    frame: int
    last_detected: int
    hits: int
    class_id: int
    data: dict[str, Any]
    confidence: float

    def predicted_box(self, frame: int) -> np.ndarray:
        """``(4,)`` xyxy box extrapolated to ``frame`` at constant velocity."""
        return self.box + self.velocity * float(frame - self.frame)

    def update(
        self, box: np.ndarray, logits: np.ndarray, frame: int, *, detected: bool, smoothing: float
    ) -> None:
        step = max(frame - self.frame, 1)
        observed = (box - self.box) / step
        self.velocity = (smoothing * self.velocity + (1 - smoothing) * observed).astype(np.float32)
        self.box = box.astype(np.float32)
        self.logits = logits
        self.frame = frame
        if detected:
            self.last_detected = frame
            self.hits += 1


def shift_logits(logits: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Translate ``(..., M, M)`` logits by whole low-res pixels; uncovered pixels are background."""
    sy, sx = round(dy), round(dx)
    if sy == 0 and sx == 0:
        return logits
    out = np.full_like(logits, _BACKGROUND_LOGIT)
    m_h, m_w = logits.shape[-2:]
    if abs(sy) >= m_h or abs(sx) >= m_w:
        return out
    src_y = slice(max(0, -sy), m_h - max(0, sy))
    dst_y = slice(max(0, sy), m_h - max(0, -sy))
    src_x = slice(max(0, -sx), m_w - max(0, sx))
    dst_x = slice(max(0, sx), m_w - max(0, -sx))
    out[..., dst_y, dst_x] = logits[..., src_y, src_x]
    return out


def match(similarity: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Optimal one-to-one ``(row, col)`` pairs with similarity ``>= threshold`` (Hungarian)."""
    if similarity.size == 0:
        return []
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(similarity, maximize=True)
    return [
        (int(r), int(c)) for r, c in zip(rows, cols, strict=True) if similarity[r, c] >= threshold
    ]


# the data columns of VideoSegmentation's Detections
VIDEO_COLUMNS = {
    "detector_score": np.float32,
    "mask_score": np.float32,
    "gap_filled": bool,
    "source_tracker_id": np.int64,
}


@dataclass(frozen=True, eq=False)
class Rows:
    """One frame's objects (detected, plus lost tracks to gap-fill), one row each."""

    boxes: np.ndarray  # (N, 4) float32 xyxy pixels
    tracker_ids: np.ndarray  # (N,) int64 as given by the tracker (-1: unconfirmed)
    track_ids: np.ndarray  # (N,) int64 output ids (-1: still to assign)
    class_id: np.ndarray  # (N,) int64
    data: dict[str, np.ndarray]  # (N,) each: the detector's data columns
    detector_score: np.ndarray  # (N,) float32
    gap: np.ndarray  # (N,) bool: gap-filled from a lost track, not detected


def build_detections(
    rows: Rows,
    index: np.ndarray,
    ids: np.ndarray,
    boxes: np.ndarray,
    masks: np.ndarray,
    scores: np.ndarray,
    min_mask_area: int,
) -> sv.Detections:
    from composeseg.detections import assemble

    data: dict[str, Any] = {
        "gap_filled": rows.gap[index],
        "source_tracker_id": rows.tracker_ids[index],
    }
    data = {key: values[index] for key, values in rows.data.items()} | data
    detections = assemble(
        masks,
        xyxy=boxes,
        mask_score=scores[index],
        detector_score=rows.detector_score[index],
        class_id=rows.class_id[index],
        tracker_id=ids[index],
        data=data,
    )
    order = np.argsort(ids[index], kind="stable")
    detections = detections[order]  # type: ignore[assignment]
    if min_mask_area:
        area = detections.mask.reshape(len(detections), -1).sum(1)  # type: ignore[union-attr]
        detections = detections[area >= min_mask_area]  # type: ignore[assignment]
    return detections


# How much a pixel's previous owner counts against the current logits when objects overlap.
# A full weight lets an object's old mask beat the object now moving in front of it; a quarter
# only breaks near-ties (two boxes framing the same visible object). Chosen on generated clips
# (seeds 100-109) that are not the ones the README reports.
PRIOR_WEIGHT = 0.25


def resolve_overlaps(
    logits: np.ndarray, priors: np.ndarray | None, active: np.ndarray
) -> np.ndarray:
    """Give each pixel claimed by several ``active`` rows to one of them (masks of distinct
    objects cannot overlap in an image).

    The winner has the highest current logit plus a quarter of its motion-shifted previous logit
    (clipped to +-10; 0 without history): where the current logits nearly tie, the object that
    covered the pixel in the previous frame keeps it. This stops a track whose box now also
    frames an occluder from taking over the occluder's mask (then its identity: the swaps seen
    on generated clips with occlusion). Losers' logits there are set to -10 (as SAM 2 does for
    its non-overlap constraint).

    Args:
        logits: ``(N, M, M) float32`` low-resolution logits of one frame.
        priors: ``(N, M, M)`` shifted previous logits, NaN rows without history; or None.
        active: ``(N,) bool`` rows taking part (dropped rows neither win nor lose pixels).
    Returns:
        ``(N, M, M) float32`` logits, a copy when anything changed.
    """
    index = np.flatnonzero(active)
    if len(index) < 2:
        return logits
    current = logits[index]
    inside = current > 0
    contested = inside.sum(0) >= 2
    if not contested.any():
        return logits
    score = current.copy()
    if priors is not None:
        prior = priors[index]
        score += PRIOR_WEIGHT * np.where(np.isfinite(prior), np.clip(prior, -10.0, 10.0), 0.0)
    winner = np.where(inside, score, -np.inf).argmax(0)
    lose = contested[None] & inside & (winner[None] != np.arange(len(index))[:, None, None])
    out = logits.copy()
    out[index] = np.where(lose, np.minimum(current, -10.0), current)
    return out


def append_columns(
    columns: dict[str, np.ndarray], count: int, extra: list[dict[str, Any]]
) -> dict[str, np.ndarray]:
    """``count`` rows of ``columns`` followed by one row per dict of ``extra``; a column that
    one side lacks is filled with an empty value of its kind ("" text, NaN, -1, False)."""
    keys = list(columns) + [k for row in extra for k in row if k not in columns]
    out = {}
    for key in dict.fromkeys(keys):
        given = [row[key] for row in extra if key in row]
        # an empty column (a frame without detections) has no meaningful dtype of its own
        known = key in columns and (count > 0 or not given)
        dtype = columns[key].dtype if known else np.asarray(given).dtype
        blank = _blank(dtype)
        head = columns[key] if known else np.full(count, blank, dtype)
        tail = np.asarray([row.get(key, blank) for row in extra], dtype)
        out[key] = np.concatenate([head, tail])
    return out


def _blank(dtype: np.dtype) -> Any:
    return {"U": "", "S": b"", "O": None, "f": np.nan, "b": False, "u": 0}.get(dtype.kind, -1)


def with_gap_rows(rows: Rows, lost: list[Track], frame: int, size: tuple[int, int]) -> Rows:
    """``rows`` plus one row per lost track, at its box extrapolated to ``frame`` and clipped to
    the ``(H, W)`` image (tracks whose box leaves the image are not added)."""
    boxes, kept = [], []
    for track in lost:
        box = clip_boxes(track.predicted_box(frame), size)
        if box[2] - box[0] >= 1 and box[3] - box[1] >= 1:
            boxes.append(box)
            kept.append(track)
    if not kept:
        return rows
    m = len(kept)
    return Rows(
        boxes=np.concatenate([rows.boxes, np.asarray(boxes, np.float32)]),
        tracker_ids=np.concatenate([rows.tracker_ids, np.full(m, -1, np.int64)]),
        track_ids=np.concatenate([rows.track_ids, [k.track_id for k in kept]]).astype(np.int64),
        class_id=np.concatenate([rows.class_id, [k.class_id for k in kept]]).astype(np.int64),
        data=append_columns(rows.data, len(rows.boxes), [k.data for k in kept]),
        detector_score=np.concatenate([rows.detector_score, [k.confidence for k in kept]]).astype(
            np.float32
        ),
        gap=np.concatenate([rows.gap, np.ones(m, bool)]),
    )
