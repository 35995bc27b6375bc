"""Same weights, same image, same prompts: composeseg agrees with Meta's ``SamPredictor``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds meta_reference

from meta_reference import build_tiny_meta_sam, perturb_
from segment_anything import SamPredictor

from composeseg import load_sam

IMG = 128


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    meta = build_tiny_meta_sam(seed=3, img_size=IMG)
    perturb_(meta, seed=3)
    meta.eval()
    path = tmp_path_factory.mktemp("meta") / "sam_tiny.pth"
    torch.save(meta.state_dict(), path)
    image = np.random.default_rng(1).integers(0, 255, (100, 150, 3), dtype=np.uint8)
    image[20:70, 30:110] = (250, 200, 20)
    predictor = SamPredictor(meta)
    predictor.set_image(image)
    return predictor, load_sam(path, device="cpu"), image


CASES = {
    "box": {"box": np.array([25, 15, 115, 75], np.float32)},
    "points": {"points": np.array([[60, 40], [10, 90]], np.float32), "labels": np.array([1, 0])},
    "box+points": {
        "box": np.array([25, 15, 115, 75], np.float32),
        "points": np.array([[60, 40]], np.float32),
        "labels": np.array([1]),
    },
    "one point": {"points": np.array([[80, 50]], np.float32), "labels": np.array([1])},
}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


@pytest.mark.parametrize("multimask", [False, True])
@pytest.mark.parametrize("refine", [False, True])
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_meta_predictor(pair, case: str, multimask: bool, refine: bool) -> None:  # type: ignore[no-untyped-def]
    predictor, sam, image = pair
    prompt = CASES[case]
    mask_input = None
    if refine:  # feed back the logits of a first single-mask pass, as interactive tools do
        _, _, first = predictor.predict(
            point_coords=prompt.get("points"),
            point_labels=prompt.get("labels"),
            box=prompt.get("box"),
            multimask_output=False,
        )
        mask_input = first
    masks, scores, logits = predictor.predict(
        point_coords=prompt.get("points"),
        point_labels=prompt.get("labels"),
        box=prompt.get("box"),
        mask_input=mask_input,
        multimask_output=multimask,
    )
    ours = sam.segment(
        image,
        boxes=prompt.get("box"),
        points=prompt.get("points"),
        point_labels=prompt.get("labels"),
        mask_input=None if mask_input is None else mask_input[0],
        multimask=multimask,
    )
    assert ours.masks.shape == (1, *masks.shape)
    np.testing.assert_allclose(ours.logits[0], logits, atol=1e-3, rtol=0)
    np.testing.assert_allclose(ours.scores[0], scores, atol=1e-4, rtol=0)
    ious = [_iou(a, b) for a, b in zip(ours.masks[0], masks, strict=True)]
    assert np.mean(ious) >= 0.999, ious


def test_batched_boxes_match_meta_batch(pair) -> None:  # type: ignore[no-untyped-def]
    predictor, sam, image = pair
    boxes = np.array([[25, 15, 115, 75], [0, 0, 60, 50], [70, 30, 149, 99]], np.float32)
    transformed = predictor.transform.apply_boxes_torch(torch.from_numpy(boxes), image.shape[:2])
    masks, scores, logits = predictor.predict_torch(
        None, None, boxes=transformed, multimask_output=False
    )
    ours = sam.segment(image, boxes=boxes)
    np.testing.assert_allclose(ours.logits, logits.numpy(), atol=1e-3, rtol=0)
    np.testing.assert_allclose(ours.scores, scores.numpy(), atol=1e-4, rtol=0)
    ious = [_iou(a, b) for a, b in zip(ours.masks[:, 0], masks[:, 0].numpy(), strict=True)]
    assert np.mean(ious) >= 0.999, ious
