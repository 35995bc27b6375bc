"""Video instance segmentation: detector -> tracker -> box prompts -> SAM masks, per frame.

Each frame: the detector's boxes go through a multi-object tracker (the ``trackers`` package);
every tracked box becomes a SAM box prompt; all prompts of the frame are decoded in batched
calls on one image embedding. These features make the result temporally consistent:

- **mask prompts**: a track's previous low-resolution mask logits, shifted by its motion, are
  given to SAM with the new box, so the mask does not flicker between plausible shapes;
- **mask-IoU association**: a detection the tracker gives a new id is matched by mask (or box)
  overlap to a recently lost track (or to the provisional id of a not-yet-confirmed track),
  which removes most id switches caused by missed detections and the tracker's start-up delay;
- **exclusive masks**: a pixel claimed by several objects goes to one (the highest logit, the
  object that covered it in the previous frame winning near-ties), so an occluded object's box
  cannot take over the mask (and then the identity) of the object in front of it;
- **gap filling**: a track whose detection is missing is re-prompted with its extrapolated box
  and last logits for up to ``max_gap`` frames, so short detector misses do not drop it.

Memory is flat: frames are streamed, and the only state is one :class:`Track` per live
identity (a box and one low-res logit map) plus the tracker's own bounded state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from composeseg.detections import empty_detections
from composeseg.geometry import box_iou, mask_iou, tight_boxes
from composeseg.pipelines.config import resolve_config
from composeseg.pipelines.video_config import VideoSegmentationConfig
from composeseg.pipelines.video_io import Frame, VideoSource, read_frames
from composeseg.pipelines.video_tracks import (
    VIDEO_COLUMNS,
    Rows,
    Track,
    build_detections,
    make_tracker,
    match,
    resolve_overlaps,
    shift_logits,
    with_gap_rows,
)
from composeseg.progress import progress as progress_bar
from composeseg.prompts import Prompts

if TYPE_CHECKING:
    import supervision as sv
    import torch

    from composeseg.prediction import ImageEmbedding
    from composeseg.sam import Sam


class VideoSegmentation:
    """Segment and track every object a detector finds in a video.

    Args:
        sam: a loaded :class:`~composeseg.Sam`.
        detector: any callable ``image (H, W, 3) uint8 -> Prompts`` with boxes (see
            :mod:`composeseg.adapters`); called once per frame, in order.
        tracker: a name from :data:`~composeseg.pipelines.video_tracks.TRACKERS`
            (``"none"``: the detector's prompts carry ``tracker_id`` already; rows without
            one count as unconfirmed, so a plain detector gets mask-IoU tracking), or a tracker
            object with ``update(sv.Detections) -> sv.Detections`` and ``reset()``.
        config: :class:`VideoSegmentationConfig`; ``overrides`` replace some of its fields.

    ``pipe(source)`` yields one ``supervision.Detections`` per frame with ``mask (N, H, W)
    bool``, ``xyxy`` (the detector's box, or the mask's box for gap-filled objects),
    ``tracker_id`` (stable output ids, from 1), ``class_id``, ``confidence`` (detector score x
    predicted mask IoU) and ``data`` columns ``class_name`` (when the detector names classes),
    ``detector_score``, ``mask_score``, ``gap_filled`` and ``source_tracker_id`` (the
    tracker's or detector's own id; -1 when unconfirmed or gap-filled).
    """

    def __init__(
        self,
        sam: Sam,
        detector: Callable[[np.ndarray], Prompts],
        tracker: str | Any = "bytetrack",
        *,
        config: VideoSegmentationConfig | None = None,
        **overrides: Any,
    ) -> None:
        if not callable(detector):
            raise TypeError(f"detector must be callable image -> Prompts, got {detector!r}")
        self.config = resolve_config(
            VideoSegmentationConfig, config, overrides, "VideoSegmentation"
        )
        self.sam = sam
        self.detector = detector
        self.tracker_spec = tracker
        self.reset()

    def __repr__(self) -> str:
        return f"VideoSegmentation({self.sam!r}, {self.detector!r}, {self.tracker_spec!r})"

    def reset(self) -> None:
        """Forget all tracks (called at the start of every video)."""
        cfg = self.config
        if isinstance(self.tracker_spec, str):
            self.tracker = make_tracker(
                self.tracker_spec,
                frame_rate=cfg.frame_rate,
                lost_track_buffer=cfg.lost_track_buffer,
                minimum_consecutive_frames=cfg.min_consecutive_frames,
            )
        else:
            self.tracker = self.tracker_spec
            if hasattr(self.tracker, "reset"):
                self.tracker.reset()
        self.tracks: dict[int, Track] = {}
        # tracker id -> output id, and the frame the tracker last reported that id: kept as
        # long as the tracker itself may re-report a lost id (its lost_track_buffer)
        self._alias: dict[int, int] = {}
        self._alias_seen: dict[int, int] = {}
        self._next_id = 1
        self._frame = 0

    def __call__(self, source: VideoSource, *, progress: bool = False) -> Iterator[sv.Detections]:
        """Yield one ``Detections`` per frame of ``source`` (path, folder or iterable of frames)."""
        for _, detections in self.frames(source, progress=progress):
            yield detections

    def frames(
        self, source: VideoSource, *, progress: bool = False, total: int | None = None
    ) -> Iterator[tuple[Frame, sv.Detections]]:
        """Like calling the pipeline, but yields ``(Frame, Detections)`` pairs (for writers)."""
        self.reset()
        frames = read_frames(source)
        bar = progress_bar(frames, total=total, desc="track", unit="frame", enabled=progress)
        for frame in bar:
            yield frame, self.step(frame.image)

    def step(self, image: np.ndarray) -> sv.Detections:
        """Process the next frame (``(H, W, 3) uint8`` RGB) of the current video."""
        from composeseg.sam import fit_to_image

        size = (int(image.shape[0]), int(image.shape[1]))
        prompts = self.detector(image)
        if not isinstance(prompts, Prompts):
            raise TypeError(
                f"the detector returned {type(prompts).__name__}; it must return composeseg.Prompts"
            )
        if len(prompts) and prompts.boxes is None:
            raise ValueError("VideoSegmentation needs box prompts from the detector")
        if len(prompts):
            prompts = fit_to_image(prompts, size)
        rows = self._gap_rows(self._tracked_rows(prompts, image), size)
        if len(rows.boxes) == 0:
            self._expire()
            self._frame += 1
            return empty_detections(size, VIDEO_COLUMNS, tracker_id=True)
        detections = self._segment(image, rows, size)
        self._expire()
        self._frame += 1
        return detections

    def _tracked_rows(self, prompts: Prompts, image: np.ndarray) -> Rows:
        import supervision as sv

        n = len(prompts)
        boxes = prompts.boxes if prompts.boxes is not None else np.zeros((0, 4), np.float32)
        score = prompts.confidence if prompts.confidence is not None else np.ones(n, np.float32)
        classes = prompts.class_id if prompts.class_id is not None else np.zeros(n, np.int64)
        if self.tracker is None:
            # the detector tracks (e.g. ultralytics ``model.track``); it may leave new objects
            # without an id, as ultralytics does before confirming them: those are unconfirmed
            order = np.arange(n)
            ids = prompts.tracker_id if prompts.tracker_id is not None else np.full(n, -1)
        elif n == 0:
            self._update_tracker(sv.Detections.empty(), image)
            order, ids = np.zeros(0, int), np.zeros(0, np.int64)
        else:
            tracked = self._update_tracker(
                sv.Detections(
                    xyxy=boxes.astype(np.float32),
                    confidence=score.astype(np.float32),
                    class_id=classes,
                    data={"row": np.arange(n)},
                ),
                image,
            )
            order = np.asarray(tracked.data["row"], int)
            ids = np.asarray(tracked.tracker_id, np.int64)
        ids = np.asarray(ids if ids is not None else np.zeros(0), np.int64)
        if self.config.unconfirmed == "drop":
            order, ids = order[ids >= 0], ids[ids >= 0]
        known = np.array([self._alias.get(int(t), -1) for t in ids], np.int64)
        for t in ids[known >= 0].tolist():
            self._alias_seen[int(t)] = self._frame
        return Rows(
            boxes=boxes[order].astype(np.float32).reshape(-1, 4),
            tracker_ids=ids,
            track_ids=known,
            class_id=classes[order].astype(np.int64),
            data={key: np.asarray(values)[order] for key, values in prompts.data.items()},
            detector_score=score[order].astype(np.float32),
            gap=np.zeros(len(order), bool),
        )

    def _update_tracker(self, detections: sv.Detections, image: np.ndarray) -> sv.Detections:
        if getattr(self.tracker, "enable_cmc", False):  # BoT-SORT's camera-motion compensation
            return self.tracker.update(detections, frame=image)
        return self.tracker.update(detections)

    def _gap_rows(self, rows: Rows, size: tuple[int, int]) -> Rows:
        """Append lost tracks, at their extrapolated boxes, as candidates for gap filling."""
        cfg, t = self.config, self._frame
        present = set(rows.track_ids.tolist())
        lost = [
            track
            for track in self.tracks.values()
            if track.track_id not in present
            and track.hits >= 2  # one-off false positives are not kept alive
            and 0 < t - track.last_detected <= cfg.max_gap
        ]
        return with_gap_rows(rows, lost, t, size)

    def _priors(self, rows: Rows, embedding: ImageEmbedding) -> np.ndarray | None:
        """``(N, M, M)`` each row's motion-shifted previous logits (NaN rows: none usable,
        because the row has no track yet or its box moved too far from the track's)."""
        size, t = self.sam.backend.mask_size, self._frame
        out = np.full((len(rows.boxes), size, size), np.nan, np.float32)
        for i, track_id in enumerate(rows.track_ids.tolist()):
            track = self.tracks.get(track_id)
            if track is None or track.logits.shape != (size, size):
                continue
            iou = box_iou(track.predicted_box(t)[None], rows.boxes[i : i + 1])[0, 0]
            if rows.gap[i] or iou >= self.config.mask_prompt_min_iou:
                out[i] = self._shifted(track, embedding)
        return out if np.isfinite(out).any() else None

    def _shifted(self, track: Track, embedding: ImageEmbedding) -> np.ndarray:
        """``(M, M)`` the track's last logits moved by its own predicted (mask-box) motion: not
        towards the new detector box, whose jitter would misplace them by several pixels."""
        from composeseg.transforms import boxes_to_input_frame

        scale = self.sam.backend.mask_size / self.sam.image_size
        pair = np.stack([track.box, track.predicted_box(self._frame)])
        frame = boxes_to_input_frame(pair, embedding.original_size, embedding.input_size)
        shift = ((frame[1, :2] + frame[1, 2:]) - (frame[0, :2] + frame[0, 2:])) / 2 * scale
        return shift_logits(track.logits, float(shift[1]), float(shift[0]))

    def _decode(
        self, embedding: ImageEmbedding, rows: Rows, priors: np.ndarray | None
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Low-res logits ``(N, M, M)`` on the device and predicted IoU ``(N,)``: one decoder
        pass per group (with and without a mask prompt). The priors (the model's own shifted
        logits) go to the decoder as a device tensor, not as a prompt to check again."""
        import torch

        n = len(rows.boxes)
        base = Prompts(boxes=rows.boxes)
        masks_in = priors if self.config.mask_prompt else None
        with_prompt = np.zeros(n, bool) if masks_in is None else np.isfinite(masks_in[:, 0, 0])
        size = self.sam.backend.mask_size
        logits = torch.zeros((n, size, size), device=self.sam.device)
        scores = torch.zeros(n, device=self.sam.device)
        for group in (~with_prompt, with_prompt):
            index = np.flatnonzero(group)
            if len(index) == 0:
                continue
            fed = None
            if masks_in is not None and group is with_prompt:
                fed = torch.from_numpy(masks_in[index]).to(self.sam.device)
            low, iou = self.sam.decode_low_res(
                embedding, base[index], multimask=False, mask_logits=fed
            )
            logits[torch.as_tensor(index, device=logits.device)] = low[:, 0]
            scores[torch.as_tensor(index, device=logits.device)] = iou[:, 0]
        return logits, scores.float().cpu().numpy()

    def _segment(self, image: np.ndarray, rows: Rows, size: tuple[int, int]) -> sv.Detections:
        import torch

        cfg, t = self.config, self._frame
        embedding = self.sam.embed(image)
        use_priors = cfg.mask_prompt or cfg.exclusive_masks
        priors = self._priors(rows, embedding) if use_priors else None
        decoded, scores = self._decode(embedding, rows, priors)
        logits = decoded.float().cpu().numpy()  # association and overlaps work on the host
        fg = logits > 0
        ids = rows.track_ids.copy()
        keep = np.ones(len(ids), bool)
        detected = np.flatnonzero(~rows.gap)
        # 1. a detection without a known id: is it a lost or provisional track?
        fresh = [i for i in detected if ids[i] < 0]
        gap_rows = np.flatnonzero(rows.gap)
        claimed = set(ids[detected].tolist())
        aliased = set(self._alias.values())
        # without mask association only provisional tracks (no tracker id yet) of the previous
        # frame are candidates: that is how a confirmed track inherits its provisional id
        candidates = [
            track
            for track in self.tracks.values()
            if track.track_id not in claimed
            and (cfg.mask_association or (track.frame == t - 1 and track.track_id not in aliased))
        ]
        if fresh and candidates:
            # mask IoU is robust to box jitter; box IoU to the coarse low-res masks of small
            # and thin objects
            previous = np.stack([self._shifted(track, embedding) > 0 for track in candidates])
            predicted = np.stack([track.predicted_box(t) for track in candidates])
            similarity = np.maximum(
                mask_iou(fg[fresh], previous), box_iou(rows.boxes[fresh], predicted)
            )
            pairs = match(similarity, cfg.association_iou)
            for row, col in pairs:
                ids[fresh[row]] = candidates[col].track_id
        taken = set(ids[detected].tolist())
        # 2. gap rows: only for tracks no detection claimed, and not on top of a detection
        for i in gap_rows:
            keep[i] = ids[i] not in taken and scores[i] >= cfg.gap_min_score and fg[i].any()
        if cfg.exclusive_masks:
            resolved = resolve_overlaps(logits, priors, keep)
            if resolved is not logits:  # pixels changed hands: the device copy is stale
                logits, decoded = resolved, torch.from_numpy(resolved).to(decoded.device)
            emptied = fg.any(axis=(1, 2)) & ~(logits > 0).any(axis=(1, 2))
            keep &= ~emptied  # every pixel went to other objects
            fg = logits > 0
        if len(gap_rows):
            overlap = mask_iou(fg[gap_rows], fg[detected]).max(axis=1, initial=0.0)
            keep[gap_rows] &= overlap < cfg.association_iou
        # 3. new identities, and aliases from tracker ids to output ids
        for i in detected:
            new = rows.tracker_ids[i] >= 0 or cfg.unconfirmed == "provisional"
            if ids[i] < 0 and keep[i] and new:
                ids[i] = self._next_id
                self._next_id += 1
            tracker_id = int(rows.tracker_ids[i])
            if tracker_id >= 0 and ids[i] >= 0 and self._alias.get(tracker_id) != ids[i]:
                # one tracker id per output id: the tracker's old id for it is dead
                for old in [k for k, v in self._alias.items() if v == ids[i]]:
                    del self._alias[old], self._alias_seen[old]
                self._alias[tracker_id] = int(ids[i])
                self._alias_seen[tracker_id] = self._frame
        index = np.flatnonzero(keep)
        kept = decoded[torch.as_tensor(index, device=decoded.device)][:, None]
        masks = self.sam.masks_from_logits(kept, embedding)[:, 0]
        boxes = rows.boxes[index].copy()
        mask_boxes = tight_boxes(masks)
        gap = rows.gap[index]
        boxes[gap] = mask_boxes[gap]
        # tracks move with their masks, whose boxes are steadier than a jittery detector's;
        # unless the mask disagrees with its detection (a weak model), then the detection
        agree = box_iou(mask_boxes, boxes).diagonal() >= 0.5
        memory = np.where((agree | gap)[:, None], mask_boxes, boxes)
        self._remember(rows, index, ids, memory, logits)
        return build_detections(rows, index, ids, boxes, masks, scores, cfg.min_mask_area)

    def _remember(
        self, rows: Rows, index: np.ndarray, ids: np.ndarray, boxes: np.ndarray, logits: np.ndarray
    ) -> None:
        t, smoothing = self._frame, self.config.velocity_smoothing
        for k, i in enumerate(index):
            track_id = int(ids[i])
            if track_id < 0:
                continue
            detected = not rows.gap[i]
            track = self.tracks.get(track_id)
            values = {key: column[i] for key, column in rows.data.items()}
            if track is None:
                self.tracks[track_id] = Track(
                    track_id=track_id, box=boxes[k].astype(np.float32),
                    velocity=np.zeros(4, np.float32), logits=logits[i], frame=t,
                    last_detected=t, hits=1, class_id=int(rows.class_id[i]), data=values,
                    confidence=float(rows.detector_score[i]),
                )  # fmt: skip
                continue
            track.update(boxes[k], logits[i], t, detected=detected, smoothing=smoothing)
            if detected:
                track.class_id, track.data = int(rows.class_id[i]), values
                track.confidence = float(rows.detector_score[i])

    def _expire(self) -> None:
        """Forget tracks undetected for longer than ``max_gap`` frames, and tracker ids unseen
        for longer than ``lost_track_buffer`` frames (bounds the state)."""
        horizon = self._frame - max(self.config.max_gap, 1)
        for key in [k for k, track in self.tracks.items() if track.last_detected < horizon]:
            del self.tracks[key]
        horizon = self._frame - self.config.lost_track_buffer - 1
        for key in [k for k, seen in self._alias_seen.items() if seen < horizon]:
            del self._alias[key], self._alias_seen[key]
