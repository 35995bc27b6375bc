"""The one frozen configuration object of a training run, validated up front."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

TRAIN_SEED_LIMIT = 900_000_000
"""Synthetic training scenes use seeds in ``[0, TRAIN_SEED_LIMIT)``."""

VALIDATION_SEED_START = 900_000_000
"""Synthetic validation scenes (model selection during training) start here."""

EVALUATION_SEED_START = 1_000_000_000
"""Seeds from here on are never drawn by the trainer: quality tests use them."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one run (SAM paper recipe, scaled down). Bad values raise ValueError.

    Attributes:
        steps: optimiser steps in total (a resumed run continues to this count).
        batch_images: images per step.
        prompts_per_image: objects sampled per image (fewer when an image has fewer).
        interactive_rounds: corrective rounds after the first prompt; each adds one point
            sampled from the error region and feeds the previous low-res logits back.
        box_probability: chance that an object's first prompt is a box (else one point).
        box_noise_std: std of the box-corner noise, as a fraction of the box side.
        box_noise_max: cap of that noise, as a fraction of the model input side (20 px at 1024).
        lr, weight_decay, warmup_steps, min_lr_ratio: AdamW with linear warm-up then cosine
            decay to ``lr * min_lr_ratio`` at ``steps``.
        grad_clip: max global gradient norm (0 disables clipping).
        focal_weight, dice_weight, iou_weight: loss mix (the paper: 20 : 1, plus MSE on IoU).
        freeze_image_encoder: train prompt encoder + decoder only, on cached embeddings.
        augment: random scale / aspect / crop of each training image (ignored when frozen,
            since cached embeddings need fixed images).
        zoom_crops: with ``augment``, the share of training images replaced by a window
            around one object, enlarged to the input as :mod:`composeseg.zoom` does
            (:func:`composeseg.train.data.augment`).
        val_every: steps between validations (0: only at the end).
        val_images: images used for validation.
        checkpoint_every: steps between checkpoints (0: only at the end).
        seed: seeds data order, prompt sampling and (from scratch) the initial weights.
        num_threads: torch intra-op threads (0 leaves torch's default).
        data_workers: processes that build the next steps' batches while this one trains
            (0: the training process builds each; any count gives the same run,
            :mod:`composeseg.train.batches`).
        save_dtype: ``"float32"`` or ``"float16"`` for the exported ``save_pretrained`` weights.
    """

    steps: int = 1000
    batch_images: int = 4
    prompts_per_image: int = 8
    interactive_rounds: int = 2
    box_probability: float = 0.5
    box_noise_std: float = 0.1
    box_noise_max: float = 20 / 1024
    lr: float = 4e-4
    weight_decay: float = 0.05
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    focal_weight: float = 20.0
    dice_weight: float = 1.0
    iou_weight: float = 1.0
    freeze_image_encoder: bool = False
    augment: bool = True
    zoom_crops: float = 0.0
    val_every: int = 200
    val_images: int = 16
    checkpoint_every: int = 100
    seed: int = 0
    num_threads: int = 0
    data_workers: int = 0
    save_dtype: str = "float32"

    def __post_init__(self) -> None:
        positive = ("steps", "batch_images", "prompts_per_image", "val_images")
        non_negative = (
            "interactive_rounds",
            "warmup_steps",
            "val_every",
            "checkpoint_every",
            "seed",
            "num_threads",
            "data_workers",
        )
        for name in positive + non_negative:
            value = getattr(self, name)
            low = 1 if name in positive else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        fractions = (
            "box_probability",
            "box_noise_std",
            "box_noise_max",
            "min_lr_ratio",
            "zoom_crops",
        )
        for name in fractions:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        weights = ("lr", "weight_decay", "grad_clip", "focal_weight", "dice_weight", "iou_weight")
        for name in weights:
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.save_dtype not in ("float32", "float16"):
            raise ValueError(f"save_dtype must be 'float32' or 'float16', got {self.save_dtype!r}")

    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
