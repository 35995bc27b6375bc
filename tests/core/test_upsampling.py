"""Guided upsampling: coarse logits refitted to the image's edges (composeseg.upsampling)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from composeseg.upsampling import guided_radius, guided_refine

SIZE, CELLS = 96, 12  # a 96 px image seen through 12 x 12 logits: 8 px per logit cell


def disc_scene() -> tuple[np.ndarray, np.ndarray]:
    """An orange disc of radius 19 px off the logit grid, on a grey background."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    truth = (yy - 45.5) ** 2 + (xx - 50.3) ** 2 <= 13.0**2
    image = np.full((SIZE, SIZE, 3), 90, np.uint8)
    image[truth] = (230, 140, 30)
    return image, truth


def coarse_logits(truth: np.ndarray) -> np.ndarray:
    """What a low-res decoder gives at best: the mask averaged into cells, then bilinear."""
    low = F.avg_pool2d(torch.from_numpy(truth.astype(np.float32))[None, None], SIZE // CELLS)
    full = F.interpolate(30 * (low - 0.5), (SIZE, SIZE), mode="bilinear", align_corners=False)
    return full[0].numpy()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_the_mask_moves_onto_the_image_edge() -> None:
    image, truth = disc_scene()
    logits = coarse_logits(truth)
    refined = guided_refine(logits, image, guided_radius((SIZE, SIZE), CELLS))
    assert refined.shape == logits.shape and refined.dtype == np.float32
    before, after = iou(logits[0] > 0, truth), iou(refined[0] > 0, truth)
    assert before < 0.95 and after > 0.99, (before, after)


def test_without_an_edge_the_mask_stays() -> None:
    # a flat image gives the filter nothing to follow: a straight boundary stays where it was
    image = np.full((SIZE, SIZE, 3), 120, np.uint8)
    logits = np.broadcast_to(np.linspace(-6, 6, SIZE, dtype=np.float32), (1, SIZE, SIZE))
    refined = guided_refine(logits, image, 12)
    np.testing.assert_array_equal(refined > 0, logits > 0)


def test_far_from_the_mask_nothing_changes() -> None:
    image, truth = disc_scene()
    logits = np.concatenate([coarse_logits(truth), np.full((1, SIZE, SIZE), -20, np.float32)])
    refined = guided_refine(logits, image, 3)
    np.testing.assert_array_equal(refined[1], logits[1])  # no pixel reaches p = 0.018
    assert refined[0, 0, 0] == logits[0, 0, 0]  # a corner beyond two radii of the disc


def test_a_faint_far_response_does_not_widen_the_filtered_area() -> None:
    # SAM's probabilities often stay a little above zero far from the object (p ~ 0.005); the
    # filter's area must not stretch over the image to reach them
    image, truth = disc_scene()
    wide = np.concatenate([image, np.full_like(image, 90)], axis=1)  # 96 x 192, disc on the left
    logits = np.concatenate([coarse_logits(truth), np.full((1, SIZE, SIZE), -15, np.float32)], 2)
    logits[0, 40:50, 180:190] = -5.0  # p = 0.0067, 130 px from the disc
    refined = guided_refine(logits, wide, 3)
    assert not np.array_equal(refined[0, :, :96], logits[0, :, :96])  # the disc is refitted
    np.testing.assert_array_equal(refined[0, :, 96:], logits[0, :, 96:])


def test_the_radius_counts_logit_cells() -> None:
    assert guided_radius((480, 640), 128) == 15  # 3 cells of 5 px
    assert guided_radius((100, 50), 256) == 1


@pytest.mark.parametrize(
    ("logits", "image", "radius", "message"),
    [
        (np.zeros((1, 8, 8), np.float32), np.zeros((8, 9, 3), np.uint8), 2, r"\(H, W, 3\) image"),
        (np.zeros((8, 8), np.float32), np.zeros((8, 8, 3), np.uint8), 2, r"\(N, H, W\) logits"),
        (np.zeros((1, 8, 8), np.float32), np.zeros((8, 8, 3), np.uint8), 0, "radius"),
    ],
)
def test_bad_input_is_refused(logits: Any, image: Any, radius: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        guided_refine(logits, image, radius)


def test_sam_draws_guided_masks_from_its_embedding(tiny_sam_dir: Any) -> None:
    from composeseg import load_sam, rle

    with pytest.raises(ValueError, match="upsampling must be one of"):
        load_sam(tiny_sam_dir, device="cpu", upsampling="bicubic")  # type: ignore[arg-type]
    sam = load_sam(tiny_sam_dir, device="cpu", upsampling="guided")
    image, _ = disc_scene()
    embedding = sam.embed(image)
    assert embedding.image is not None and np.array_equal(embedding.image, image)
    box = np.array([[30, 25, 71, 66]], np.float32)
    dense = sam.segment(embedding, boxes=box, multimask=True)
    rles = sam.segment(embedding, boxes=box, multimask=True, output="rle")
    assert dense.masks is not None and dense.masks.shape == (1, 3, SIZE, SIZE)
    np.testing.assert_array_equal(rle.decode(rles.rles[0][2]), dense.masks[0, 2])
    sam.upsampling = "bilinear"  # a bilinear Sam's embeddings carry no image
    bare = sam.embed(image)
    assert bare.image is None
    sam.upsampling = "guided"
    with pytest.raises(ValueError, match="needs the embedding's image"):
        sam.segment(bare, boxes=box)
