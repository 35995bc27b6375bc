"""Options of :class:`~composeseg.pipelines.VideoSegmentation` (kept apart: plain data)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Unconfirmed = Literal["provisional", "drop", "keep"]


@dataclass(frozen=True)
class VideoSegmentationConfig:
    """Options of :class:`VideoSegmentation`. Invalid values raise ``ValueError``.

    Attributes:
        mask_prompt: feed each track's previous (motion-shifted) mask logits as SAM's mask
            prompt together with the new box.
        mask_prompt_min_iou: use the previous logits only when the track's predicted box
            overlaps the new box at least this much (box IoU); below it the object changed
            too much for the old mask to help.
        mask_association: match detections with a new tracker id to recently lost tracks by
            mask IoU, or box IoU with the track's extrapolated box (keeps the old id).
        association_iou: minimum mask or box IoU for that match and for resolving
            provisional ids.
        exclusive_masks: give a pixel claimed by several objects to one of them: the highest
            logit, with the object whose previous mask covered it winning near-ties (see
            :func:`~composeseg.pipelines.video_tracks.resolve_overlaps`).
        max_gap: frames a track without detection is kept alive by gap filling (0: off).
        gap_min_score: SAM's predicted IoU below which a gap-filled mask is dropped.
        unconfirmed: detections the tracker has not confirmed yet (``tracker_id == -1``):
            ``"provisional"`` gives them a new id that the confirmed track inherits,
            ``"drop"`` leaves them out, ``"keep"`` reports them with id -1.
        min_consecutive_frames, lost_track_buffer, frame_rate: passed to a tracker given by
            name (see :func:`~composeseg.pipelines.video_tracks.make_tracker`).
        velocity_smoothing: weight of the old velocity in a track's exponential average.
        min_mask_area: drop objects whose mask has fewer pixels.
    """

    mask_prompt: bool = True
    mask_prompt_min_iou: float = 0.3
    mask_association: bool = True
    association_iou: float = 0.4
    exclusive_masks: bool = True
    max_gap: int = 5
    gap_min_score: float = 0.5
    unconfirmed: Unconfirmed = "provisional"
    min_consecutive_frames: int = 1
    lost_track_buffer: int = 30
    frame_rate: float = 30.0
    velocity_smoothing: float = 0.5
    min_mask_area: int = 0

    def __post_init__(self) -> None:
        for name in ("mask_prompt_min_iou", "association_iou", "velocity_smoothing"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        for name in ("max_gap", "min_mask_area", "lost_track_buffer"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.min_consecutive_frames < 1:
            raise ValueError(
                f"min_consecutive_frames must be >= 1, got {self.min_consecutive_frames}"
            )
        if self.frame_rate <= 0:
            raise ValueError(f"frame_rate must be > 0, got {self.frame_rate}")
        if self.unconfirmed not in ("provisional", "drop", "keep"):
            raise ValueError(
                f"unconfirmed must be 'provisional', 'drop' or 'keep', got {self.unconfirmed!r}"
            )


PER_FRAME: dict[str, object] = {
    "mask_prompt": False,
    "mask_association": False,
    "exclusive_masks": False,
    "max_gap": 0,
}
"""Overrides that switch every consistency feature off: plain per-frame segmentation of the
tracker's boxes (the baseline of ``composeseg eval tracking --compare``)."""
