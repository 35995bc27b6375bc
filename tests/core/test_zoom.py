"""Zoomed prompting: each object encoded in its own window (composeseg.zoom)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from composeseg.zoom import MIN_WINDOW, ZOOM_CONTEXT, segment_zoomed, zoom_windows


def test_windows_are_squares_about_the_box_kept_inside_the_image() -> None:
    boxes = np.array([[100, 50, 110, 70], [0, 0, 10, 10], [195, 95, 200, 100], [0, 0, 200, 100]])
    windows = zoom_windows(boxes, (100, 200), context=3)
    assert windows.dtype == np.int64
    # 3 x the longer side (20) about the centre (105, 60)
    assert windows[0].tolist() == [75, 30, 135, 90]
    # at a corner the window keeps its size by growing into the image (minimum side 32)
    assert windows[1].tolist() == [0, 0, MIN_WINDOW, MIN_WINDOW]
    assert windows[2].tolist() == [200 - MIN_WINDOW, 100 - MIN_WINDOW, 200, 100]
    # larger than the image: the whole image, not a square
    assert windows[3].tolist() == [0, 0, 200, 100]


@pytest.mark.parametrize("context", [0.5, float("nan"), float("inf")])
def test_a_context_below_one_is_refused(context: float) -> None:
    with pytest.raises(ValueError, match="context must be a finite number >= 1"):
        zoom_windows(np.array([[0, 0, 10, 10]]), (50, 50), context=context)


def test_masks_stay_inside_their_windows(tiny_sam: Any, rgb_image: np.ndarray) -> None:
    boxes = np.array([[30, 20, 60, 40], [100, 50, 110, 60]], np.float32)
    prediction = segment_zoomed(tiny_sam, rgb_image, boxes=boxes, context=2, multimask=True)
    m = tiny_sam.backend.mask_size
    assert prediction.dense().shape == (2, 3, 90, 140)
    assert prediction.scores.shape == (2, 3) and prediction.logits.shape == (2, 3, m, m)
    windows = zoom_windows(boxes, (90, 140), context=2)
    for masks, (x0, y0, x1, y1) in zip(prediction.dense(), windows, strict=True):
        outside = masks.copy()
        outside[:, y0:y1, x0:x1] = False
        assert not outside.any()
    # the prompts are the caller's, in the whole image's pixels
    np.testing.assert_array_equal(prediction.prompts.boxes, boxes)


def test_a_window_over_the_whole_image_is_plain_segment(
    tiny_sam: Any, rgb_image: np.ndarray
) -> None:
    boxes = np.array([[30, 20, 100, 60]], np.float32)
    zoomed = segment_zoomed(tiny_sam, rgb_image, boxes=boxes, context=10, refine=False)
    plain = tiny_sam.segment(rgb_image, boxes=boxes)
    np.testing.assert_array_equal(zoomed.dense(), plain.dense())
    np.testing.assert_allclose(zoomed.scores, plain.scores, rtol=1e-5)


def test_prompts_are_moved_into_the_window(tiny_sam: Any, rgb_image: np.ndarray) -> None:
    # the same object placed at two spots of a larger canvas: the window moves with it, so the
    # mask moves with it pixel for pixel
    canvas = np.zeros((200, 300, 3), np.uint8)
    first, second = canvas.copy(), canvas.copy()
    first[10:100, 20:160] = rgb_image
    second[100:190, 150:290] = rgb_image
    box = np.array([[60, 40, 100, 60]], np.float32)
    a = segment_zoomed(tiny_sam, first, boxes=box + np.float32([20, 10, 20, 10]), context=2)
    b = segment_zoomed(tiny_sam, second, boxes=box + np.float32([150, 100, 150, 100]), context=2)
    np.testing.assert_array_equal(
        a.dense()[0, 0, 10:100, 20:160], b.dense()[0, 0, 100:190, 150:290]
    )
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)


def test_point_windows_hold_the_points(tiny_sam: Any, rgb_image: np.ndarray) -> None:
    # the first pass decides the window; a far background point must still fit in it
    points = np.array([[[65, 40], [135, 85]]], np.float32)
    labels = np.array([[1, 0]])
    prediction = segment_zoomed(tiny_sam, rgb_image, points=points, point_labels=labels)
    assert prediction.dense().shape == (1, 1, 90, 140)


def test_a_guided_model_refits_each_window_with_a_wider_reach(
    tiny_sam: Any, rgb_image: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    import composeseg.zoom as zoom
    from composeseg.sam import Sam
    from composeseg.upsampling import guided_radius

    guided = Sam(tiny_sam.backend, device=tiny_sam.device, upsampling="guided")
    seen: list[tuple[tuple[int, ...], int]] = []
    refine = zoom.guided_refine

    def recording(logits: np.ndarray, image: np.ndarray, radius: int, **kwargs: Any) -> Any:
        seen.append((image.shape, radius))
        return refine(logits, image, radius, **kwargs)

    monkeypatch.setattr(zoom, "guided_refine", recording)
    box = np.array([[30, 20, 60, 40]], np.float32)
    guided_masks = segment_zoomed(guided, rgb_image, boxes=box, context=2).dense()
    x0, y0, x1, y1 = zoom_windows(box, (90, 140), 2)[0]
    window = (int(y1 - y0), int(x1 - x0))
    # the window's own pixels guide the refit, reaching ZOOM_GUIDED_CELLS logit cells
    radius = guided_radius(window, tiny_sam.backend.mask_size, zoom.ZOOM_GUIDED_CELLS)
    assert seen == [((*window, 3), radius)]
    assert radius > guided_radius(window, tiny_sam.backend.mask_size)
    bilinear_masks = segment_zoomed(tiny_sam, rgb_image, boxes=box, context=2).dense()
    assert len(seen) == 1 and not np.array_equal(guided_masks, bilinear_masks)


def test_logits_go_back_into_the_whole_image(tiny_sam: Any, rgb_image: np.ndarray) -> None:
    box = np.array([[30, 20, 100, 60]], np.float32)
    zoomed = segment_zoomed(tiny_sam, rgb_image, boxes=box, context=1.5)
    again = tiny_sam.segment(rgb_image, boxes=box, mask_input=zoomed.logits[:, 0])
    assert again.dense().shape == (1, 1, 90, 140)
    # right of the window the resampled logits say background: the 140 px wide image spans
    # all M logit columns, and area resampling blends one more column
    m = tiny_sam.backend.mask_size
    x1 = zoom_windows(box, (90, 140), 1.5)[0, 2]
    col = int(np.ceil(x1 * m / 140)) + 1
    assert col < m and (zoomed.logits[0, 0, :, col:] < -10).all()
    assert (zoomed.logits[0, 0] > -10).any()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mask_input": np.zeros((1, 8, 8), np.float32)}, "no mask_input"),
        ({"extents": np.zeros((2, 4))}, r"extents must be \(1, 4\)"),
        ({"extents": np.full((1, 4), np.nan)}, r"extents must be \(1, 4\) finite"),
    ],
)
def test_bad_input_is_named(
    tiny_sam: Any, rgb_image: np.ndarray, kwargs: dict[str, Any], match: str
) -> None:
    from composeseg import Prompts

    mask_input = kwargs.pop("mask_input", None)
    prompts = Prompts(boxes=np.array([[30, 20, 100, 60]]), mask_input=mask_input)
    with pytest.raises(ValueError, match=match):
        segment_zoomed(tiny_sam, rgb_image, prompts, **kwargs)


def test_an_embedding_of_another_image_is_refused(tiny_sam: Any, rgb_image: np.ndarray) -> None:
    other = tiny_sam.embed(rgb_image[:50])
    with pytest.raises(ValueError, match=r"embedding is of a \(50, 140\) image"):
        segment_zoomed(tiny_sam, rgb_image, boxes=[30, 20, 100, 60], embedding=other)


def test_zoom_helps_the_demo_model_on_unseen_scenes() -> None:
    # the independent family's validation split (the test split is the floors'): small,
    # blurred objects that one encoder pass for the whole image draws coarsely. Zoomed windows
    # draw guided masks, so the whole image does too: the learned refiner (the demo model's
    # default) lifts the whole-image pass by itself (README, The demo model)
    from composeseg import load_sam
    from composeseg.evaluation.points import point_prompt_miou, scene_instances
    from composeseg.synthetic.independent import independent_seeds

    sam = load_sam(device="cpu", upsampling="guided")

    def metrics(zoom: float | None) -> Any:
        samples = scene_instances(independent_seeds("validation", 6), family="independent")
        return point_prompt_miou(sam, samples, zoom=zoom)

    plain, zoomed = metrics(None), metrics(ZOOM_CONTEXT)
    assert zoomed.zoom == ZOOM_CONTEXT and plain.zoom is None
    assert zoomed.box > plain.box + 0.05, (plain, zoomed)
    assert zoomed.interactive > plain.interactive + 0.03, (plain, zoomed)
