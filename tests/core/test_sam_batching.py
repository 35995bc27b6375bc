"""SAM v1 decoding: objects batched and chunked stay independent; bfloat16 on CPU.

The tiny random model's logits are of order 1e-5, so logit comparisons are made relative to
their scale as well as in absolute terms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from composeseg import Prompts, Sam, load_sam

H, W = 90, 140
BOXES = np.array(
    [[10, 10, 60, 50], [30, 20, 100, 60], [0, 0, 140, 90], [70, 40, 130, 85], [5, 50, 45, 88]],
    np.float32,
)
POINTS = np.array(
    [
        [[30, 30], [50, 45]],
        [[60, 40], [0, 0]],
        [[100, 60], [120, 70]],
        [[90, 60], [0, 0]],
        [[20, 70], [40, 80]],
    ],
    np.float32,
)
LABELS = np.array([[1, 0], [1, -1], [1, 1], [1, -1], [0, 1]])  # -1: padding slot


@pytest.fixture(scope="module")
def chunked_sam(tiny_sam_dir: Path) -> Sam:
    """The session's tiny SAM, decoding 2 objects per call: 5 objects take 3 calls."""
    return load_sam(tiny_sam_dir, device="cpu", decode_batch_size=2)


@pytest.mark.parametrize(
    ("kind", "multimask"),
    [("boxes", False), ("points", True), ("boxes+points", False), ("boxes+mask", True)],
)
def test_objects_decode_independently(
    chunked_sam: Sam, rgb_image: np.ndarray, kind: str, multimask: bool
) -> None:
    sam = chunked_sam
    embedding = sam.embed(rgb_image)
    first = sam.segment(embedding, boxes=BOXES).logits[:, 0]
    fields = {
        "boxes": {"boxes": BOXES},
        "points": {"points": POINTS, "point_labels": LABELS},
        "boxes+points": {"boxes": BOXES, "points": POINTS, "point_labels": LABELS},
        "boxes+mask": {"boxes": BOXES, "mask_input": first},
    }[kind]
    prompts = Prompts(**fields)  # type: ignore[arg-type]
    batch = sam.segment(embedding, prompts, multimask=multimask)
    k = 3 if multimask else 1
    m = sam.backend.mask_size
    assert batch.logits.shape == (5, k, m, m) and batch.masks.shape == (5, k, H, W)
    alone = np.concatenate(
        [sam.segment(embedding, prompts[i], multimask=multimask).logits for i in range(5)]
    )
    scale = np.abs(alone).max()
    assert np.abs(batch.logits - alone).max() < min(1e-4, 1e-3 * scale)
    # objects really differ: mixing them up would exceed the tolerance by orders of magnitude
    assert np.abs(alone[1:] - alone[:-1]).max() > 0.1 * scale
    again = sam.masks_from_logits(torch.from_numpy(batch.logits), embedding)
    np.testing.assert_array_equal(again, batch.masks)


def test_chunk_size_does_not_change_results(
    tiny_sam: Sam, chunked_sam: Sam, rgb_image: np.ndarray
) -> None:
    prompts = Prompts(boxes=BOXES, points=POINTS, point_labels=LABELS)
    one_call = tiny_sam.segment(rgb_image, prompts, multimask=True)  # 5 objects <= 16 per call
    three_calls = chunked_sam.segment(rgb_image, prompts, multimask=True)
    scale = np.abs(one_call.logits).max()
    assert np.abs(one_call.logits - three_calls.logits).max() < min(1e-4, 1e-3 * scale)
    np.testing.assert_allclose(one_call.scores, three_calls.scores, atol=1e-6)


def test_bfloat16_on_cpu_agrees_with_float32(
    tiny_sam_dir: Path, tiny_sam: Sam, rgb_image: np.ndarray
) -> None:
    """bf16 model, float32 outputs, masks close to float32's.

    Measured with these prompts: bf16 masks overlap float32's at IoU 0.988 with 2.2% relative
    logit error (model seeds 0-4: IoU >= 0.98, error <= 2.9%); the bounds leave a wide margin.
    """
    sam = load_sam(tiny_sam_dir, device="cpu", dtype=torch.bfloat16)
    embedding = sam.embed(rgb_image)
    assert embedding.features[0].dtype == torch.bfloat16
    reduced = sam.segment(embedding, boxes=BOXES, multimask=True)
    full = tiny_sam.segment(rgb_image, boxes=BOXES, multimask=True)
    assert reduced.logits.dtype == np.float32 and reduced.scores.dtype == np.float32
    assert reduced.masks.shape == full.masks.shape == (5, 3, H, W)
    union = (reduced.masks | full.masks).sum()
    assert (reduced.masks & full.masks).sum() / union > 0.9
    relative = np.linalg.norm(reduced.logits - full.logits) / np.linalg.norm(full.logits)
    assert relative < 0.1
    refined = sam.segment(embedding, boxes=BOXES, mask_input=reduced.logits[:, 0])
    assert refined.logits.dtype == np.float32 and np.isfinite(refined.logits).all()
