"""Values passed between the encoder, the decoder and the caller."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from composeseg.prompts import Prompts

if TYPE_CHECKING:
    import supervision as sv
    import torch


@dataclass(frozen=True, eq=False)
class ImageEmbedding:
    """The image encoder's output for one image: compute once, prompt many times.

    Attributes:
        features: backend-specific tensors on the model's device; ``features[0]`` is the main
            ``(1, C, h, w)`` embedding (SAM-HQ and SAM 2 add their intermediate features).
        original_size: ``(H, W)`` of the image the user passed, in pixels.
        input_size: ``(h, w)`` of the resized image inside the model's square input frame.
        model_key: identifies the :class:`~composeseg.Sam` that made it; using the embedding
            with another model is an error.
        image: the ``(H, W, 3) uint8`` RGB it was computed from, kept (a reference, no copy)
            only by a Sam with ``upsampling="guided"``, which needs it to draw masks; else None.
    """

    features: tuple[torch.Tensor, ...]
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    model_key: str
    image: np.ndarray | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        shape = tuple(self.features[0].shape)
        return (
            f"ImageEmbedding(original_size={self.original_size}, input_size={self.input_size}, "
            f"features[0]={shape})"
        )


@dataclass(frozen=True, eq=False)
class MaskPrediction:
    """Masks for N prompted objects, K candidates each.

    Attributes:
        masks: ``(N, K, H, W) bool``, pixels of the original image; None when the masks were
            asked for as RLE (``Sam.segment(..., output="rle")``).
        scores: ``(N, K) float32`` predicted IoU of each candidate.
        logits: ``(N, K, M, M) float32`` low-resolution mask logits (M = 256 for the
            released models); pass
            ``logits[:, k]`` back as ``mask_input`` to refine.
        prompts: the validated prompts, in the same order (boxes clipped to the image), with
            class_id / confidence / tracker_id / data carried through.
        original_size: ``(H, W)``.
        rles: N lists of K COCO RLEs of the masks (:mod:`composeseg.rle`), when asked for
            instead of ``masks``; else None.
    """

    masks: np.ndarray | None
    scores: np.ndarray
    logits: np.ndarray
    prompts: Prompts
    original_size: tuple[int, int]
    rles: list[list[dict[str, Any]]] | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def dense(self) -> np.ndarray:
        """``masks``, the ``(N, K, H, W) bool`` array, for code that needs it dense.

        Raises:
            ValueError: the prediction holds RLE masks (``output="rle"``); decode them with
                :func:`composeseg.rle.decode` where that is meant.
        """
        if self.masks is None:
            raise ValueError("this prediction holds RLE masks (output='rle'), not a dense array")
        return self.masks

    @property
    def num_candidates(self) -> int:
        """K: 3 for multimask predictions, else 1."""
        return int(self.scores.shape[1])

    def best_index(self) -> np.ndarray:
        """``(N,) int64``: the candidate with the highest predicted IoU for each object."""
        if self.scores.shape[1] == 0:
            return np.zeros(len(self), np.int64)
        return np.argmax(self.scores, axis=1).astype(np.int64)

    def best(self) -> MaskPrediction:
        """The single most confident candidate per object (K becomes 1)."""
        rows = np.arange(len(self))
        index = self.best_index()
        rles = self.rles
        return MaskPrediction(
            masks=None if self.masks is None else self.masks[rows, index][:, None],
            scores=self.scores[rows, index][:, None],
            logits=self.logits[rows, index][:, None],
            prompts=self.prompts,
            original_size=self.original_size,
            rles=None if rles is None else [[c[i]] for c, i in zip(rles, index, strict=True)],
        )

    def mask_boxes(self) -> np.ndarray:
        """``(N, K, 4) float32`` xyxy tight boxes of the masks (zeros for empty masks).

        Pixel convention: ``x1, y1`` are exclusive, so a one-pixel mask at (x, y) gives
        ``(x, y, x + 1, y + 1)``.
        """
        from composeseg.geometry import tight_boxes

        n, k = self.scores.shape
        if self.masks is None:
            from composeseg.rle import boxes

            return boxes([r for candidates in self.rles or [] for r in candidates]).reshape(n, k, 4)
        h, w = self.masks.shape[2:]
        return tight_boxes(self.masks.reshape(n * k, h, w)).reshape(n, k, 4)

    def to_detections(self) -> sv.Detections:
        """Convert the best candidate per object to ``supervision.Detections``
        (:func:`composeseg.detections.assemble`).

        ``xyxy`` is the prompt box where the object had one, else the mask's tight box;
        ``confidence`` the prompt's confidence times the predicted IoU, or the predicted IoU
        alone for prompts without a confidence. ``data`` carries ``mask_score`` (predicted
        IoU), ``detector_score`` (the prompt's confidence, when given) and the prompts' data
        columns.
        """
        from composeseg.detections import assemble

        best = self.best()
        if best.masks is None:  # RLE masks: boxes from the prompts, else from the RLEs
            from composeseg.detections import DETECTOR_XYXY

            rles = [candidates[0] for candidates in best.rles or []]
            prompted = self.prompts.boxes is not None or DETECTOR_XYXY in self.prompts.data
            xyxy = None if prompted else best.mask_boxes()[:, 0]
            return assemble(
                None,
                prompts=self.prompts,
                mask_score=best.scores[:, 0],
                xyxy=xyxy,
                data={"rle": rles},
            )
        return assemble(best.masks[:, 0], prompts=self.prompts, mask_score=best.scores[:, 0])
