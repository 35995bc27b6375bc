"""SAM 2 propagation: prompt objects once, let SAM 2's memory carry the masks through the video.

An alternative engine to :class:`~composeseg.pipelines.VideoSegmentation` with the same output
(one ``supervision.Detections`` per frame, ``tracker_id`` = object id). Objects are prompted
with boxes on the first frame (given, or from a detector); with a detector and
``detect_every = K``, every K-th frame the detector's boxes are matched to the propagated masks:
unmatched boxes become new objects, objects unmatched for ``max_missed`` re-seeds are retired.

It runs transformers' ``Sam2VideoModel`` in streaming mode, one frame at a time. Its inference
session keeps every frame, every memory and every prompt by default; :func:`prune_session`
drops what the model can no longer attend to after each frame, so memory stays flat. The
session cannot forget one object, so retiring objects starts a new session seeded with the
kept objects' last masks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from composeseg.geometry import box_iou, tight_boxes
from composeseg.pipelines.config import resolve_config
from composeseg.pipelines.video_io import Frame, VideoSource, read_frames
from composeseg.pipelines.video_tracks import match
from composeseg.progress import progress as progress_bar
from composeseg.prompts import Prompts

if TYPE_CHECKING:
    import supervision as sv


@dataclass(frozen=True)
class PropagationConfig:
    """Options of :class:`Sam2Propagation`.

    Attributes:
        detect_every: run the detector every K frames to add and retire objects (0: only on
            the first frame that has detections).
        match_iou: box IoU between a detection and an object's propagated mask box for them
            to be the same object.
        max_missed: re-seeds in a row without a matching detection before an object is
            retired.
        max_cond_frames: prompted (conditioning) frames kept per object in the session.
        min_object_score: SAM 2's object-score logit above which the object counts as
            visible in a frame (hidden objects are left out of that frame's output).
        prune_state: drop session state the model no longer reads (off only to measure
            what it saves: memory then grows with every frame).
    """

    detect_every: int = 10
    match_iou: float = 0.3
    max_missed: int = 2
    max_cond_frames: int = 2
    min_object_score: float = 0.0
    prune_state: bool = True

    def __post_init__(self) -> None:
        if self.detect_every < 0:
            raise ValueError(f"detect_every must be >= 0, got {self.detect_every}")
        if not 0.0 <= self.match_iou <= 1.0:
            raise ValueError(f"match_iou must be in [0, 1], got {self.match_iou}")
        if self.max_missed < 0 or self.max_cond_frames < 1:
            raise ValueError(
                f"max_missed must be >= 0 and max_cond_frames >= 1, got {self.max_missed}, "
                f"{self.max_cond_frames}"
            )


@dataclass(eq=False)
class _Object:
    box: np.ndarray  # (4,) xyxy of its last visible mask
    mask: np.ndarray | None  # (H, W) bool, last visible mask (re-seeds a new session)
    class_id: int
    class_name: str
    score: float
    missed: int = 0


def tiny_sam2_video_config(image_size: int = 128) -> Any:
    """A small ``Sam2VideoConfig`` for tests on :func:`composeseg.tiny.tiny_sam2_config`'s backbone.

    Widths are 128: transformers' memory attention reads 64-channel memories (hard-coded) and
    needs a model width that is a larger multiple of 64 (equal widths break its object-pointer
    reshaping).
    """
    from transformers import Sam2VideoConfig

    from composeseg.tiny import tiny_sam2_config

    base: Any = tiny_sam2_config(image_size)
    width = 128
    vision = {**base.vision_config.to_dict(), "fpn_hidden_size": width}
    prompt = {**base.prompt_encoder_config.to_dict(), "hidden_size": width}
    decoder = {**base.mask_decoder_config.to_dict(), "hidden_size": width}
    side = image_size // 16
    return Sam2VideoConfig(
        vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder,
        image_size=image_size, num_maskmem=3, max_object_pointers_in_encoder=4,
        memory_attention_hidden_size=width, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64, memory_attention_rope_feat_sizes=[side, side],
        memory_encoder_hidden_size=width, memory_encoder_output_channels=64,
        mask_downsampler_embed_dim=width, memory_fuser_embed_dim=width,
        memory_fuser_intermediate_dim=64,
    )  # fmt: skip


def prune_session(session: Any, frame_idx: int, *, keep_frames: int, max_cond_frames: int) -> None:
    """Drop what ``Sam2VideoModel`` will never read again after ``frame_idx`` (streaming).

    Keeps: the last ``keep_frames`` tracked outputs per object (its memory bank and object
    pointers reach that far back), its ``max_cond_frames`` most recent prompted outputs, and
    only the current frame's pixels.
    """
    horizon = frame_idx - keep_frames + 1
    for key in [k for k in session.processed_frames or {} if k < frame_idx]:
        del session.processed_frames[key]
    for obj_idx, outputs in session.output_dict_per_obj.items():
        tracked = outputs["non_cond_frame_outputs"]
        for key in [k for k in tracked if k < horizon]:
            del tracked[key]
        cond = outputs["cond_frame_outputs"]
        for key in sorted(cond)[:-max_cond_frames]:
            del cond[key]
        frames = session.frames_tracked_per_obj[obj_idx]
        for key in [k for k in frames if k < horizon]:
            del frames[key]
        for store in (session.point_inputs_per_obj[obj_idx], session.mask_inputs_per_obj[obj_idx]):
            for key in [k for k in store if k < frame_idx]:
                del store[key]


class Sam2Propagation:
    """Track objects through a video with SAM 2's memory.

    Args:
        model: a transformers ``Sam2VideoModel`` or a directory / hub id to load one from.
        detector: ``image -> Prompts`` with boxes; optional when ``prompts`` are given to the
            call.
        config: :class:`PropagationConfig`; ``overrides`` replace some of its fields.
        device: where to run (default: the model's device).
    """

    def __init__(
        self,
        model: Any,
        detector: Callable[[np.ndarray], Prompts] | None = None,
        *,
        config: PropagationConfig | None = None,
        device: str | None = None,
        **overrides: Any,
    ) -> None:
        import torch
        from transformers import Sam2VideoModel

        if isinstance(model, (str, os.PathLike)):
            model = Sam2VideoModel.from_pretrained(str(model))
        if not isinstance(model, Sam2VideoModel):
            raise TypeError(f"model must be a Sam2VideoModel, got {type(model).__name__}")
        self.model = model.eval()
        if device is not None:
            self.model.to(device)
        self.device = next(self.model.parameters()).device
        self.dtype = torch.float32
        self.detector = detector
        self.config = resolve_config(PropagationConfig, config, overrides, "Sam2Propagation")
        self.image_size = int(self.model.config.prompt_encoder_config.image_size)
        model_config = self.model.config
        self._keep = max(model_config.num_maskmem, model_config.max_object_pointers_in_encoder)
        self._processor = _processor(self.image_size)
        self.session: Any = None
        self.objects: dict[int, _Object] = {}

    def __repr__(self) -> str:
        return f"Sam2Propagation(image_size={self.image_size}, {self.config})"

    def __call__(
        self, source: VideoSource, prompts: Prompts | None = None, *, progress: bool = False
    ) -> Iterator[sv.Detections]:
        """One ``Detections`` per frame of ``source``.

        Args:
            prompts: boxes ``(N, 4)`` xyxy pixels of the first frame (with optional
                ``class_id`` / ``data["class_name"]``); default: the detector's boxes.
        """
        for _, detections in self.frames(source, prompts, progress=progress):
            yield detections

    def frames(
        self,
        source: VideoSource,
        prompts: Prompts | None = None,
        *,
        progress: bool = False,
        total: int | None = None,
    ) -> Iterator[tuple[Frame, sv.Detections]]:
        """Like calling the engine, but yields ``(Frame, Detections)`` pairs (for writers)."""
        if prompts is None and self.detector is None:
            raise ValueError("give first-frame prompts or a detector")
        self.reset()
        frames = read_frames(source)
        bar = progress_bar(frames, total=total, desc="track", unit="frame", enabled=progress)
        # the session counts the frames it was given; frame.index keeps the source's numbers
        for t, frame in enumerate(bar):
            given = prompts if t == 0 else None
            yield frame, self.step(frame.image, t, given)

    def reset(self) -> None:
        self.session = None
        self.objects = {}
        self._next_id = 1

    def step(self, image: np.ndarray, t: int, prompts: Prompts | None = None) -> sv.Detections:
        """Process frame ``t`` (consecutive from 0) of the current video."""
        import torch

        from composeseg.transforms import preprocess

        size = (int(image.shape[0]), int(image.shape[1]))
        if prompts is None and self.detector is not None and self._detect_now(t):
            prompts = self.detector(image)
        if prompts is not None:
            self._reseed(prompts, t, size)
        if self.session is None or not self.objects:
            return _detections({}, {}, size)
        pixels, _ = preprocess(image, self.image_size, "square")
        with torch.inference_mode():
            output = self.model(
                inference_session=self.session, frame=pixels[0].to(self.device), frame_idx=t
            )
        if self.config.prune_state:
            prune_session(
                self.session, t, keep_frames=self._keep, max_cond_frames=self.config.max_cond_frames
            )
        return self._collect(output, size)

    def _detect_now(self, t: int) -> bool:
        k = self.config.detect_every
        return not self.objects or (k > 0 and t % k == 0)

    def _reseed(self, prompts: Prompts, t: int, size: tuple[int, int]) -> None:
        from composeseg.sam import fit_to_image

        if len(prompts) and prompts.boxes is None:
            raise ValueError("Sam2Propagation needs box prompts")
        fitted = fit_to_image(prompts, size).boxes if len(prompts) else None
        boxes = np.zeros((0, 4), np.float32) if fitted is None else fitted
        ids = list(self.objects)
        current = np.array([self.objects[i].box for i in ids], np.float32).reshape(-1, 4)
        pairs = match(box_iou(current, boxes.astype(np.float32)), self.config.match_iou)
        matched_objects = {ids[r] for r, _ in pairs}
        matched_boxes = {c for _, c in pairs}
        for obj_id in ids:
            obj = self.objects[obj_id]
            obj.missed = 0 if obj_id in matched_objects else obj.missed + 1
        retired = [i for i in ids if self.objects[i].missed > self.config.max_missed]
        names = prompts.data.get("class_name")
        new: dict[int, np.ndarray] = {}
        for j in range(len(boxes)):
            if j in matched_boxes:
                continue
            obj_id = self._next_id
            self._next_id += 1
            self.objects[obj_id] = _Object(
                box=boxes[j].astype(np.float32), mask=None,
                class_id=int(prompts.class_id[j]) if prompts.class_id is not None else 0,
                class_name=str(names[j]) if names is not None else "",
                score=float(prompts.confidence[j]) if prompts.confidence is not None else 1.0,
            )  # fmt: skip
            new[obj_id] = boxes[j]
        for obj_id in retired:
            del self.objects[obj_id]
        if retired or self.session is None:
            self._new_session(t, size, new)
        elif new:
            self._add_boxes(t, size, new)

    def _new_session(self, t: int, size: tuple[int, int], boxes: dict[int, np.ndarray]) -> None:
        self.session = self._processor.init_video_session(
            inference_device=self.device, dtype=self.dtype
        )
        self.session.video_height, self.session.video_width = size
        kept = {i: o.mask for i, o in self.objects.items() if i not in boxes and o.mask is not None}
        if kept:
            self._processor.add_inputs_to_inference_session(
                self.session, frame_idx=t, obj_ids=list(kept), input_masks=list(kept.values())
            )
        if boxes:
            self._add_boxes(t, size, boxes)
        # each add call replaces the session's list of objects with new inputs; all are new here
        self.session.obj_with_new_inputs = [*kept, *boxes]
        for obj_id in [i for i in self.objects if i not in kept and i not in boxes]:
            del self.objects[obj_id]  # never seen with a mask: nothing to re-seed it with

    def _add_boxes(self, t: int, size: tuple[int, int], boxes: dict[int, np.ndarray]) -> None:
        self._processor.add_inputs_to_inference_session(
            self.session, frame_idx=t, obj_ids=list(boxes),
            input_boxes=[[np.asarray(b, float).tolist() for b in boxes.values()]],
            original_size=size,
        )  # fmt: skip

    def _collect(self, output: Any, size: tuple[int, int]) -> sv.Detections:
        from composeseg.transforms import upscale_logits

        logits = upscale_logits(
            output.pred_masks, self.image_size, (self.image_size,) * 2, size, "square"
        )
        masks = (logits[:, 0] > 0).cpu().numpy()
        present = output.object_score_logits.float().reshape(-1) > self.config.min_object_score
        visible: dict[int, np.ndarray] = {}
        for k, obj_id in enumerate(output.object_ids):
            obj = self.objects.get(int(obj_id))
            if obj is None or not bool(present[k]) or not masks[k].any():
                continue
            obj.box = tight_boxes(masks[k][None])[0]
            obj.mask = masks[k]
            visible[int(obj_id)] = masks[k]
        return _detections(visible, self.objects, size)


def _processor(image_size: int) -> Any:
    """A ``Sam2VideoProcessor`` for ``image_size`` built from defaults (no hub download)."""
    from transformers import Sam2VideoProcessor
    from transformers.models.sam2.image_processing_sam2 import Sam2ImageProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor

    square = {"height": image_size, "width": image_size}
    return Sam2VideoProcessor(
        Sam2ImageProcessor(size=square),
        Sam2VideoVideoProcessor(size=square),
        target_size=image_size,
    )


def _detections(
    visible: dict[int, np.ndarray], objects: dict[int, _Object], size: tuple[int, int]
) -> sv.Detections:
    from composeseg.detections import assemble

    ids = sorted(visible)
    n = len(ids)
    # SAM 2 propagation reports no mask score: confidence is the detector's score
    return assemble(
        np.stack([visible[i] for i in ids]) if n else np.zeros((0, *size), bool),
        xyxy=np.array([objects[i].box for i in ids], np.float32).reshape(n, 4),
        detector_score=np.array([objects[i].score for i in ids], np.float32),
        class_id=np.array([objects[i].class_id for i in ids], np.int64),
        tracker_id=np.array(ids, np.int64),
        data={"class_name": np.array([objects[i].class_name for i in ids], dtype=str)},
    )


__all__ = ["PropagationConfig", "Sam2Propagation", "prune_session", "tiny_sam2_video_config"]
