"""SAM's training loss: focal + dice (20 : 1) on the best of K masks, and MSE on the IoU head."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, *, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Focal loss (Lin et al.) averaged over pixels.

    Args:
        logits: ``(..., H, W)`` mask logits.
        targets: same shape, 0/1 (bool or float).

    Returns:
        ``(...)`` per-mask loss, float32.
    """
    logits = logits.float()
    targets = targets.to(logits.dtype)
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, *, smooth: float = 1.0) -> torch.Tensor:
    """``1 - (2 |P ∩ T| + s) / (|P| + |T| + s)`` on sigmoid probabilities, per mask.

    Args:
        logits: ``(..., H, W)``; targets: same shape, 0/1.

    Returns:
        ``(...)`` float32.
    """
    prob = torch.sigmoid(logits.float()).flatten(-2)
    targets = targets.to(prob.dtype).flatten(-2)
    inter = (prob * targets).sum(-1)
    return 1 - (2 * inter + smooth) / (prob.sum(-1) + targets.sum(-1) + smooth)


def mask_iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of ``logits > 0`` with ``targets`` per mask (1 when both are empty); no gradient.

    Args:
        logits: ``(..., H, W)``; targets: same shape, bool.

    Returns:
        ``(...)`` float32 in [0, 1].
    """
    with torch.no_grad():
        pred = (logits > 0).flatten(-2)
        gt = targets.bool().flatten(-2)
        inter = (pred & gt).sum(-1).float()
        union = (pred | gt).sum(-1).float()
        return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


@dataclass(frozen=True)
class SamLoss:
    """One decoder round's loss.

    Attributes:
        total: scalar to back-propagate (mean over objects).
        focal, dice, iou_mse: scalar components (unweighted means), detached.
        best: ``(N,) int64`` index of the output mask the mask loss was computed on.
        iou: ``(N,)`` IoU of that mask with the target, detached.
    """

    total: torch.Tensor
    focal: torch.Tensor
    dice: torch.Tensor
    iou_mse: torch.Tensor
    best: torch.Tensor
    iou: torch.Tensor


def sam_loss(
    logits: torch.Tensor,
    iou_pred: torch.Tensor,
    targets: torch.Tensor,
    *,
    focal_weight: float = 20.0,
    dice_weight: float = 1.0,
    iou_weight: float = 1.0,
) -> SamLoss:
    """The SAM paper's loss for ``K`` candidate masks per object.

    The mask loss ``focal_weight * focal + dice_weight * dice`` is taken on the candidate with
    the lowest loss (with K = 3 for an ambiguous one-point prompt, so that only the best of the
    three is pushed towards the target; K = 1 otherwise). The IoU head is trained on every
    candidate with MSE against that candidate's actual IoU.

    Args:
        logits: ``(N, K, H, W)`` mask logits.
        iou_pred: ``(N, K)`` predicted IoU.
        targets: ``(N, H, W)`` bool target masks.
    """
    if logits.ndim != 4 or iou_pred.shape != logits.shape[:2]:
        raise ValueError(
            f"expected logits (N, K, H, W) and iou_pred (N, K), got {tuple(logits.shape)} and "
            f"{tuple(iou_pred.shape)}"
        )
    if targets.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"targets must be {(logits.shape[0], *logits.shape[2:])}, got {tuple(targets.shape)}"
        )
    expanded = targets[:, None].expand_as(logits)
    focal = sigmoid_focal_loss(logits, expanded)
    dice = dice_loss(logits, expanded)
    per_mask = focal_weight * focal + dice_weight * dice
    best = per_mask.detach().argmin(dim=1)
    rows = torch.arange(len(best), device=best.device)
    actual = mask_iou(logits, expanded)
    iou_mse = ((iou_pred.float() - actual) ** 2).mean(dim=1)
    total = (per_mask[rows, best] + iou_weight * iou_mse).mean()
    return SamLoss(
        total=total,
        focal=focal[rows, best].detach().mean(),
        dice=dice[rows, best].detach().mean(),
        iou_mse=iou_mse.detach().mean(),
        best=best,
        iou=actual[rows, best],
    )
