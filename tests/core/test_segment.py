from __future__ import annotations

import numpy as np
import pytest
import torch

from composeseg import MaskPrediction, Prompts, load_sam

H, W = 90, 140


@pytest.mark.parametrize(
    ("kwargs", "n", "k"),
    [
        ({"boxes": [10, 10, 60, 50]}, 1, 1),
        ({"boxes": [[10, 10, 60, 50], [0, 0, 140, 90]]}, 2, 1),
        ({"points": [[30, 40], [100, 20]], "point_labels": [1, 0]}, 1, 1),
        ({"points": [[[30, 40]], [[90, 60]]], "point_labels": [[1], [1]]}, 2, 1),
        ({"boxes": [10, 10, 60, 50], "points": [[30, 40]], "point_labels": [1]}, 1, 1),
        ({"boxes": [[10, 10, 60, 50]] * 3, "multimask": True}, 3, 3),
        ({"points": [[30, 40]], "point_labels": [1], "multimask": True}, 1, 3),
    ],
)
def test_prompt_kinds_give_documented_shapes(tiny_sam, rgb_image, kwargs, n, k) -> None:  # type: ignore[no-untyped-def]
    prediction = tiny_sam.segment(rgb_image, **kwargs)
    m = tiny_sam.backend.mask_size
    assert isinstance(prediction, MaskPrediction)
    assert prediction.masks.shape == (n, k, H, W) and prediction.masks.dtype == bool
    assert prediction.scores.shape == (n, k) and prediction.scores.dtype == np.float32
    assert prediction.logits.shape == (n, k, m, m) and prediction.logits.dtype == np.float32
    assert prediction.original_size == (H, W)


def test_embed_once_prompt_many(tiny_sam, rgb_image) -> None:  # type: ignore[no-untyped-def]
    embedding = tiny_sam.embed(rgb_image)
    assert embedding.original_size == (H, W)
    assert embedding.input_size == (82, 128)  # longest side 140 -> 128, 90 * 128/140 rounded
    direct = tiny_sam.segment(rgb_image, boxes=[10, 10, 60, 50])
    reused = tiny_sam.segment(embedding, boxes=[10, 10, 60, 50])
    np.testing.assert_allclose(direct.logits, reused.logits, atol=1e-6)
    again = tiny_sam.segment(embedding, boxes=[10, 10, 60, 50])
    np.testing.assert_array_equal(reused.masks, again.masks)


def test_masks_are_thresholded_upscaled_logits(tiny_sam, rgb_image) -> None:  # type: ignore[no-untyped-def]
    embedding = tiny_sam.embed(rgb_image)
    prediction = tiny_sam.segment(embedding, boxes=[[10, 10, 60, 50], [5, 5, 130, 80]])
    again = tiny_sam.masks_from_logits(torch.from_numpy(prediction.logits), embedding)
    np.testing.assert_array_equal(again, prediction.masks)


def test_mask_input_refines(tiny_sam, rgb_image) -> None:  # type: ignore[no-untyped-def]
    first = tiny_sam.segment(rgb_image, boxes=[10, 10, 60, 50], multimask=True)
    best = first.best()
    refined = tiny_sam.segment(rgb_image, boxes=[10, 10, 60, 50], mask_input=best.logits[:, 0])
    unrefined = tiny_sam.segment(rgb_image, boxes=[10, 10, 60, 50])
    assert refined.masks.shape == (1, 1, H, W)
    assert not np.allclose(refined.logits, unrefined.logits)  # the mask prompt is used
    with pytest.raises(ValueError, match="mask_input must be"):
        tiny_sam.segment(rgb_image, boxes=[10, 10, 60, 50], mask_input=np.zeros((1, 8, 8)))


def test_metadata_rides_along(tiny_sam, rgb_image) -> None:  # type: ignore[no-untyped-def]
    prompts = Prompts(
        boxes=[[10, 10, 60, 50], [-20, 5, 70, 200]],
        class_id=[2, 7],
        confidence=[0.9, 0.4],
        tracker_id=[11, 12],
        data={"class_name": np.array(["cat", "dog"])},
    )
    prediction = tiny_sam.segment(rgb_image, prompts)
    assert prediction.prompts.class_id is not None
    assert prediction.prompts.class_id.tolist() == [2, 7]
    assert prediction.prompts.boxes is not None
    assert prediction.prompts.boxes[1].tolist() == [0, 5, 70, 90]  # clipped to the image
    detections = prediction.to_detections()
    assert detections.tracker_id is not None and detections.tracker_id.tolist() == [11, 12]
    assert detections.data["class_name"].tolist() == ["cat", "dog"]
    # the one confidence rule (composeseg.detections): prompt confidence x predicted IoU
    np.testing.assert_allclose(detections.data["detector_score"], [0.9, 0.4])
    expected = np.array([0.9, 0.4]) * np.clip(detections.data["mask_score"], 0, 1)
    np.testing.assert_allclose(detections.confidence, expected, rtol=1e-6)
    assert detections.mask is not None and detections.mask.shape == (2, H, W)


def test_zero_prompts_give_an_empty_prediction(tiny_sam, rgb_image) -> None:  # type: ignore[no-untyped-def]
    for prediction in (
        tiny_sam.segment(rgb_image, boxes=np.zeros((0, 4))),
        tiny_sam.segment(rgb_image, Prompts()),
        tiny_sam.segment(rgb_image),
    ):
        assert prediction.masks.shape[0] == 0 and prediction.masks.shape[2:] == (H, W)
        assert len(prediction.to_detections()) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"boxes": [200, 10, 300, 50]}, r"boxes\[0\] = \[200.0, 10.0, 300.0, 50.0\] lies outside"),
        ({"boxes": [[10, 10, 60, 50], [60, 10, 10, 50]]}, r"boxes\[1\] .* inverted"),
        ({"boxes": [10, np.nan, 60, 50]}, r"boxes\[0\] .* not finite"),
        ({"points": [[10, 10]]}, "without point_labels"),
        ({"points": [[10, 10], [500, 5]], "point_labels": [1, 1]}, r"points\[0, 1\] .* outside"),
        (
            {"boxes": [[1, 1, 9, 9]], "points": [[[1, 1]], [[2, 2]]], "point_labels": [[1], [1]]},
            "disagree on the number of objects",
        ),
    ],
)
def test_bad_prompts_raise_value_error(tiny_sam, rgb_image, kwargs, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        tiny_sam.segment(rgb_image, **kwargs)


def test_embedding_from_another_model_is_refused(tiny_sam_dir, tiny_sam, rgb_image) -> None:  # type: ignore[no-untyped-def]
    other = load_sam(tiny_sam_dir, device="cpu")
    with pytest.raises(ValueError, match="another model"):
        other.segment(tiny_sam.embed(rgb_image), boxes=[1, 1, 9, 9])


def test_large_batches_are_chunked(tiny_sam_dir, rgb_image) -> None:  # type: ignore[no-untyped-def]
    boxes = np.array([[i, i, 40 + 2 * i, 30 + i] for i in range(7)], np.float32)
    one_call = load_sam(tiny_sam_dir, device="cpu", decode_batch_size=64)
    chunked = load_sam(tiny_sam_dir, device="cpu", decode_batch_size=3)
    a = one_call.segment(rgb_image, boxes=boxes)
    b = chunked.segment(rgb_image, boxes=boxes)
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-4)
    with pytest.raises(ValueError, match="decode_batch_size"):
        load_sam(tiny_sam_dir, device="cpu", decode_batch_size=0)
