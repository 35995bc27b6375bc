"""Box-fitted decoding: the candidate whose extent fits the prompt box wins, then is refined."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from composeseg.box_fit import decode_box_fitted
from composeseg.geometry import mask_box_iou
from composeseg.prediction import ImageEmbedding
from composeseg.prompts import Prompts

M = 16  # low-res logit grid of the stub; the model frame is 64 px, 4 px per cell


def region(y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    logits = torch.full((M, M), -5.0)
    logits[y0:y1, x0:x1] = 5.0
    return logits


UNION = region(2, 14, 2, 14)  # SAM's single mask: the box's object and its neighbours
FIT = region(4, 12, 4, 8)  # the object itself: exactly the prompt box
PIECE = region(5, 7, 5, 7)
EMPTY = torch.full((M, M), -5.0)


class StubSam:
    """The parts of :class:`~composeseg.Sam` that box fitting uses, with fixed outputs."""

    image_size = 64
    device = torch.device("cpu")
    backend = SimpleNamespace(mask_size=M)

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def decode_low_res(
        self, embedding: Any, prompts: Prompts, *, multimask: bool = False, mask_logits: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls.append({"multimask": multimask, "mask_logits": mask_logits})
        n = len(prompts)
        if mask_logits is not None:  # refinement: echo the logits, a score of its own
            return mask_logits[:, None] + 1.0, torch.full((n, 1), 0.5)
        if multimask:
            logits = torch.stack([PIECE, FIT, EMPTY])[None].repeat(n, 1, 1, 1)
            return logits, torch.tensor([[0.8, 0.6, 0.95]]).repeat(n, 1)
        return UNION[None, None].repeat(n, 1, 1, 1), torch.full((n, 1), 0.9)


EMBEDDING = ImageEmbedding((torch.zeros(1),), (64, 64), (64, 64), "stub")


def test_the_candidate_that_fits_the_box_wins_over_a_more_confident_one() -> None:
    sam = StubSam()
    box = Prompts(boxes=np.array([[16, 16, 32, 48]], np.float32))  # cells 4..8 x 4..12
    logits, scores = decode_box_fitted(sam, EMBEDDING, box, refine=False)  # type: ignore[arg-type]
    torch.testing.assert_close(logits[0, 0], FIT)
    assert scores.tolist() == [[pytest.approx(0.6)]]
    assert [c["multimask"] for c in sam.calls] == [False, True]


def test_refinement_feeds_the_chosen_logits_back() -> None:
    sam = StubSam()
    box = Prompts(boxes=np.array([[16, 16, 32, 48]], np.float32))
    logits, scores = decode_box_fitted(sam, EMBEDDING, box)  # type: ignore[arg-type]
    torch.testing.assert_close(sam.calls[-1]["mask_logits"][0], FIT)
    torch.testing.assert_close(logits[0, 0], FIT + 1.0)
    assert scores.tolist() == [[0.5]]


def test_without_a_box_the_single_mask_stays() -> None:
    sam = StubSam()
    points = Prompts(points=np.array([[[24, 30]]], np.float32), point_labels=np.array([[1]]))
    logits, _ = decode_box_fitted(sam, EMBEDDING, points, refine=False)  # type: ignore[arg-type]
    torch.testing.assert_close(logits[0, 0], UNION)
    assert [c["multimask"] for c in sam.calls] == [False]  # no candidates to weigh


def test_mask_box_iou() -> None:
    masks = torch.stack([FIT, UNION, EMPTY])[None] > 0  # (1, 3, M, M)
    iou = mask_box_iou(masks, torch.tensor([[4.0, 4.0, 8.0, 12.0]]))
    assert iou.tolist() == [[1.0, pytest.approx(32 / 144), 0.0]]


def test_box_fit_on_a_real_sam(tiny_sam, rgb_image) -> None:  # type: ignore[no-untyped-def]
    boxes = np.array([[10, 10, 60, 50], [70, 20, 130, 80]], np.float32)
    fitted = tiny_sam.segment(rgb_image, boxes=boxes, box_fit=True)
    assert fitted.masks.shape == (2, 1, 90, 140) and fitted.scores.shape == (2, 1)
    embedding = tiny_sam.embed(rgb_image)
    logits, scores = decode_box_fitted(tiny_sam, embedding, fitted.prompts)
    np.testing.assert_allclose(fitted.logits, logits.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fitted.scores, scores.numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="box_fit keeps one mask"):
        tiny_sam.segment(embedding, boxes=boxes, box_fit=True, multimask=True)
