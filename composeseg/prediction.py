"""Values passed between the encoder, the decoder and the caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

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
    """

    features: tuple[torch.Tensor, ...]
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    model_key: str

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
        masks: ``(N, K, H, W) bool``, pixels of the original image.
        scores: ``(N, K) float32`` predicted IoU of each candidate.
        logits: ``(N, K, M, M) float32`` low-resolution mask logits (M = 256 for the
            released models); pass
            ``logits[:, k]`` back as ``mask_input`` to refine.
        prompts: the validated prompts, in the same order (boxes clipped to the image), with
            class_id / confidence / tracker_id / data carried through.
        original_size: ``(H, W)``.
    """

    masks: np.ndarray
    scores: np.ndarray
    logits: np.ndarray
    prompts: Prompts
    original_size: tuple[int, int]

    def __len__(self) -> int:
        return len(self.masks)

    @property
    def num_candidates(self) -> int:
        """K: 3 for multimask predictions, else 1."""
        return int(self.masks.shape[1])

    def best_index(self) -> np.ndarray:
        """``(N,) int64``: the candidate with the highest predicted IoU for each object."""
        if self.scores.shape[1] == 0:
            return np.zeros(len(self), np.int64)
        return np.argmax(self.scores, axis=1).astype(np.int64)

    def best(self) -> MaskPrediction:
        """The single most confident candidate per object (K becomes 1)."""
        rows = np.arange(len(self))
        index = self.best_index()
        return MaskPrediction(
            masks=self.masks[rows, index][:, None],
            scores=self.scores[rows, index][:, None],
            logits=self.logits[rows, index][:, None],
            prompts=self.prompts,
            original_size=self.original_size,
        )

    def mask_boxes(self) -> np.ndarray:
        """``(N, K, 4) float32`` xyxy tight boxes of the masks (zeros for empty masks).

        Pixel convention: ``x1, y1`` are exclusive, so a one-pixel mask at (x, y) gives
        ``(x, y, x + 1, y + 1)``.
        """
        from composeseg.geometry import tight_boxes

        n, k, h, w = self.masks.shape
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
        return assemble(best.masks[:, 0], prompts=self.prompts, mask_score=best.scores[:, 0])
