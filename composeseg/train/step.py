"""One training step's forward: sample objects and prompts, run the interactive rounds, sum
the losses. The optimiser, schedule and bookkeeping live in :mod:`composeseg.train.loop`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from transformers import SamModel

from composeseg.train.config import TrainConfig
from composeseg.train.data import Prepared
from composeseg.train.losses import sam_loss
from composeseg.train.model import decode, frame_size
from composeseg.train.prompts import error_points, noisy_boxes, random_points

MIN_TARGET_PIXELS = 4
"""Objects smaller than this in the model frame are not used as targets."""


@dataclass(frozen=True)
class StepResult:
    """The loss of one step and what it saw.

    Attributes:
        loss: scalar to back-propagate (mean over objects and rounds).
        objects: objects decoded.
        first_iou: mean IoU of the first-round masks (best candidate), detached.
        last_iou: mean IoU after the last interactive round, detached.
    """

    loss: torch.Tensor
    objects: int
    first_iou: float
    last_iou: float


def sample_objects(
    batch: list[Prepared], per_image: int, rng: np.random.Generator
) -> tuple[np.ndarray, torch.Tensor]:
    """Pick up to ``per_image`` objects of each image.

    Returns:
        ``(N,) int64`` image index of each object and its ``(N, S, S) bool`` target mask.
    """
    image_index: list[int] = []
    targets: list[torch.Tensor] = []
    for b, prepared in enumerate(batch):
        areas = prepared.masks.flatten(1).sum(1).numpy()
        usable = np.flatnonzero(areas >= MIN_TARGET_PIXELS)
        if len(usable) > per_image:
            usable = np.sort(rng.choice(usable, per_image, replace=False))
        image_index.extend([b] * len(usable))
        targets.extend(prepared.masks[int(i)] for i in usable)
    if not targets:
        size = batch[0].masks.shape[-1] if batch else 0
        return np.zeros(0, np.int64), torch.zeros((0, size, size), dtype=torch.bool)
    return np.asarray(image_index, np.int64), torch.stack(targets)


def valid_region(batch: list[Prepared], image_index: np.ndarray, size: int) -> np.ndarray:
    """``(N, S, S) bool``: the image part (not the padding) of each object's frame."""
    region = np.zeros((len(image_index), size, size), bool)
    for row, b in enumerate(image_index):
        h, w = batch[int(b)].input_size
        region[row, :h, :w] = True
    return region


def training_loss(
    model: SamModel,
    embeddings: torch.Tensor,
    batch: list[Prepared],
    config: TrainConfig,
    rng: np.random.Generator,
) -> StepResult:
    """The SAM paper's simulated interactive session on one batch.

    Each object starts from a noisy box (probability ``config.box_probability``) or one
    uniform point in its mask; then ``config.interactive_rounds`` times a point is sampled
    uniformly from the error region of the previous prediction (positive on a false negative,
    negative on a false positive) and added to the prompt, with the previous round's low-res
    logits fed back as the mask prompt. A lone point is decoded with 3 outputs (loss on the best
    one); every other prompt with the single output.

    Args:
        embeddings: ``(B, C, h, w)`` image embeddings of ``batch`` (with grad when training the
            image encoder).
        batch: the prepared samples, in the same order.
    """
    size = frame_size(model)
    device = embeddings.device
    image_index, targets = sample_objects(batch, config.prompts_per_image, rng)
    count = len(image_index)
    if count == 0:
        zero = embeddings.sum() * 0.0
        return StepResult(zero, 0, float("nan"), float("nan"))
    region = valid_region(batch, image_index, size)
    targets_np = targets.numpy()
    use_box = rng.random(count) < config.box_probability
    total = embeddings.new_zeros(())
    first, last = np.zeros(count), np.zeros(count)
    for group in (np.flatnonzero(use_box), np.flatnonzero(~use_box)):
        if not len(group):
            continue
        is_box = bool(use_box[group[0]])
        rows = torch.from_numpy(image_index[group]).to(device)
        object_embeddings = embeddings[rows]
        group_targets = targets[torch.from_numpy(group)].to(device)
        boxes = None
        if is_box:
            boxes = torch.from_numpy(
                noisy_boxes(
                    targets_np[group],
                    rng,
                    noise_std=config.box_noise_std,
                    noise_max=config.box_noise_max * size,
                )
            ).to(device)
            points = np.zeros((len(group), 0, 2), np.float32)
            labels = np.zeros((len(group), 0), np.int64)
        else:
            points = random_points(targets_np[group], rng)[:, None]
            labels = np.ones((len(group), 1), np.int64)
        mask_input = None
        for round_index in range(config.interactive_rounds + 1):
            logits, iou_pred = decode(
                model,
                object_embeddings,
                boxes=boxes,
                points=torch.from_numpy(points).to(device) if points.shape[1] else None,
                labels=torch.from_numpy(labels).to(device) if points.shape[1] else None,
                mask_input=mask_input,
                multimask=not is_box and round_index == 0,
            )
            full = F.interpolate(logits, (size, size), mode="bilinear", align_corners=False)
            loss = sam_loss(
                full,
                iou_pred,
                group_targets,
                focal_weight=config.focal_weight,
                dice_weight=config.dice_weight,
                iou_weight=config.iou_weight,
            )
            total = total + loss.total * len(group)
            iou = loss.iou.cpu().numpy()
            if round_index == 0:
                first[group] = iou
            last[group] = iou
            if round_index == config.interactive_rounds:
                break
            picked = torch.arange(len(group), device=device)
            chosen = full[picked, loss.best].detach()
            predicted = (chosen > 0).cpu().numpy() & region[group]
            new_points, new_labels = error_points(predicted, targets_np[group], rng)
            points = np.concatenate([points, new_points[:, None]], axis=1)
            labels = np.concatenate([labels, new_labels[:, None]], axis=1)
            mask_input = logits[picked, loss.best].detach()[:, None]
    loss_value = total / (count * (config.interactive_rounds + 1))
    return StepResult(loss_value, count, float(first.mean()), float(last.mean()))
