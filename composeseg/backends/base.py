"""The contract between :class:`composeseg.Sam` and one family of transformers SAM models.

A backend knows its model's input frame and how to run the encoder and the prompt decoder. It
receives prompts already validated and mapped into the model frame, as tensors on the model's
device, one row per object; it never sees user input or original-image pixels.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch

from composeseg.transforms import IMAGENET_MEAN, IMAGENET_STD, ResizeMode


@dataclass(frozen=True)
class DecoderPrompts:
    """C objects' prompts in the model frame, on the model's device.

    Attributes:
        boxes: ``(C, 4)`` xyxy or None.
        points: ``(C, P, 2)`` xy or None.
        labels: ``(C, P) int64`` 1 / 0 / -1 (padding) or None.
        masks: ``(C, 1, M, M)`` logits or None (M = :attr:`Backend.mask_size`).
    """

    boxes: torch.Tensor | None
    points: torch.Tensor | None
    labels: torch.Tensor | None
    masks: torch.Tensor | None

    def __len__(self) -> int:
        for value in (self.boxes, self.points, self.masks):
            if value is not None:
                return int(value.shape[0])
        return 0


class Backend(ABC):
    """Runs one model family. Subclasses set ``family`` and ``resize_mode``."""

    family: str
    resize_mode: ResizeMode = "longest"
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN
    pixel_std: tuple[float, float, float] = IMAGENET_STD

    def __init__(self, model: Any) -> None:
        # Any: a transformers PreTrainedModel whose config attributes differ per family.
        self.model: Any = model

    @property
    @abstractmethod
    def image_size(self) -> int:
        """S: side of the square model input, in pixels."""

    @property
    def mask_size(self) -> int:
        """M: side of the low-res mask logits (4x the image embedding; 256 at S = 1024)."""
        return self.image_size // 4

    @abstractmethod
    def encode(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(B, 3, S, S)`` normalised pixels -> features, batch first; ``features[0]`` is
        ``(B, C, h, w)``."""

    @abstractmethod
    def decode(
        self, features: tuple[torch.Tensor, ...], prompts: DecoderPrompts, multimask: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode C objects in one call.

        Returns:
            ``(C, K, M, M)`` low-res logits and ``(C, K)`` predicted IoU, K = 3 with
            ``multimask`` else 1.
        """


def expand_batch(features: tuple[torch.Tensor, ...], count: int) -> list[torch.Tensor]:
    """View each ``(1, ...)`` feature as ``(count, ...)`` without copying.

    The decoders broadcast the image embedding over objects by treating each object as its own
    batch element; this makes the per-object prompts (masks included) line up with it.
    """
    return [f.expand(count, *f.shape[1:]) for f in features]
