"""Focal / dice / IoU values on hand-made tensors, and SAM's min-over-multimask rule."""

from __future__ import annotations

import math

import pytest
import torch

from composeseg.train.losses import dice_loss, mask_iou, sam_loss, sigmoid_focal_loss


def test_focal_known_values() -> None:
    target = torch.tensor([[[1.0, 0.0]]])
    # logit 0: p = 0.5, ce = ln 2, (1 - p_t)^2 = 0.25, alpha 0.25 on positives, 0.75 on negatives
    expected = (0.25 * 0.25 * math.log(2) + 0.75 * 0.25 * math.log(2)) / 2
    assert sigmoid_focal_loss(torch.zeros(1, 1, 2), target).item() == pytest.approx(expected)
    confident = torch.tensor([[[20.0, -20.0]]])
    assert sigmoid_focal_loss(confident, target).item() < 1e-12


@pytest.mark.parametrize(
    ("logits", "target", "expected"),
    [
        ([[20.0, 20.0], [-20.0, -20.0]], [[1, 1], [0, 0]], 0.0),  # perfect
        ([[-20.0, -20.0], [-20.0, -20.0]], [[1, 1], [0, 0]], 1 - 1 / 3),  # empty: 1 - s/(2 + s)
        ([[0.0, 0.0], [0.0, 0.0]], [[1, 1], [0, 0]], 1 - 3 / 5),  # p = .5: 1 - (2 + 1)/(2 + 2 + 1)
    ],
)
def test_dice_known_values(logits: list, target: list, expected: float) -> None:
    value = dice_loss(torch.tensor([logits]), torch.tensor([target], dtype=torch.bool))
    assert value.item() == pytest.approx(expected, abs=1e-6)


def test_mask_iou() -> None:
    logits = torch.tensor([[[1.0, 1.0, -1.0, -1.0]], [[-1.0, -1.0, -1.0, -1.0]]])
    target = torch.tensor([[[True, False, True, False]], [[False, False, False, False]]])
    assert mask_iou(logits, target).tolist() == pytest.approx([1 / 3, 1.0])


def test_sam_loss_takes_the_best_of_three_and_trains_iou_on_all() -> None:
    target = torch.zeros(1, 4, 4, dtype=torch.bool)
    target[0, :2] = True
    perfect = torch.where(target[0], 20.0, -20.0)
    logits = torch.stack([-perfect, perfect, torch.zeros(4, 4)])[None]  # (1, 3, 4, 4)
    iou_pred = torch.tensor([[0.0, 1.0, 0.5]])
    loss = sam_loss(logits, iou_pred, target)
    assert loss.best.tolist() == [1]
    assert loss.iou.tolist() == pytest.approx([1.0])
    # actual IoUs: 0 (inverted), 1 (perfect), 0 (logit 0 is not > 0: an empty mask)
    expected_mse = ((0.0 - 0.0) ** 2 + (1.0 - 1.0) ** 2 + (0.5 - 0.0) ** 2) / 3
    assert loss.iou_mse.item() == pytest.approx(expected_mse)
    assert loss.total.item() == pytest.approx(expected_mse, abs=1e-6)  # mask loss ~0 on best


def test_sam_loss_gradient_reaches_only_the_best_mask() -> None:
    target = torch.ones(2, 3, 3, dtype=torch.bool)
    logits = torch.tensor([-5.0, 5.0, 0.0]).view(1, 3, 1, 1).repeat(2, 1, 3, 3).requires_grad_()
    sam_loss(logits, torch.zeros(2, 3), target, iou_weight=0.0).total.backward()
    grad = logits.grad.abs().sum((2, 3))
    assert (grad[:, 1] > 0).all() and (grad[:, 0] == 0).all() and (grad[:, 2] == 0).all()


@pytest.mark.parametrize(
    ("logits", "iou_pred", "target"),
    [
        ((2, 3, 4, 4), (2, 2), (2, 4, 4)),
        ((2, 1, 4, 4), (2, 1), (2, 5, 4)),
        ((3, 4, 4), (3,), (4, 4)),
    ],
)
def test_sam_loss_rejects_bad_shapes(logits: tuple, iou_pred: tuple, target: tuple) -> None:
    with pytest.raises(ValueError, match="expected|targets must"):
        sam_loss(torch.zeros(logits), torch.zeros(iou_pred), torch.zeros(target, dtype=torch.bool))
