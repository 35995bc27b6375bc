"""InstanceSegmentation on the tiny SAM: batching, refinement, scores, run() and resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from composeseg.adapters import from_boxes
from composeseg.pipelines import InstanceSegmentation
from composeseg.prompts import Prompts

BOXES = [[10, 10, 60, 50], [70, 20, 130, 80], [0, 0, 30, 30]]


def detector(image: np.ndarray) -> Prompts:
    return from_boxes(
        BOXES,
        format="xyxy",
        scores=[0.9, 0.5, 0.7],
        class_ids=[0, 1, 0],
        names=["apple", "pear"],
        image_size=image.shape[:2],
    )


def counting(sam, monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:  # type: ignore[no-untyped-def]
    calls: dict[str, list] = {"embed": [], "decode": []}
    embed, decode = sam.embed, sam.decode_low_res

    def count_embed(image):  # type: ignore[no-untyped-def]
        calls["embed"].append(1)
        return embed(image)

    def count_decode(embedding, prompts, **kwargs):  # type: ignore[no-untyped-def]
        # logits fed back: as a mask prompt, or (refinement) as the model's own device tensor
        fed = prompts.mask_input is not None or kwargs.get("mask_logits") is not None
        calls["decode"].append((len(prompts), fed, kwargs))
        return decode(embedding, prompts, **kwargs)

    monkeypatch.setattr(sam, "embed", count_embed)
    monkeypatch.setattr(sam, "decode_low_res", count_decode)
    return calls


def test_one_encoder_pass_and_one_refinement(tiny_sam, rgb_image, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calls = counting(tiny_sam, monkeypatch)
    detections = InstanceSegmentation(tiny_sam, detector)(rgb_image)
    assert len(calls["embed"]) == 1
    # all objects in one batched call, then the refinement with the logits fed back
    assert [c[:2] for c in calls["decode"]] == [(3, False), (3, True)]
    assert detections.mask.shape == (3, 90, 140)
    np.testing.assert_allclose(detections.xyxy[0], BOXES[0])
    np.testing.assert_allclose(detections.data["detector_score"], [0.9, 0.7, 0.5])
    expected = detections.data["detector_score"] * np.clip(detections.data["mask_score"], 0, 1)
    np.testing.assert_allclose(detections.confidence, expected, rtol=1e-6)
    assert detections.data["class_name"].tolist() == ["apple", "apple", "pear"]


def test_refinement_changes_the_masks(tiny_sam, rgb_image) -> None:  # type: ignore[no-untyped-def]
    plain = InstanceSegmentation(tiny_sam, detector, refine=False)(rgb_image)
    sam_masks = tiny_sam.segment(rgb_image, boxes=plain.xyxy).masks[:, 0]
    np.testing.assert_array_equal(plain.mask, sam_masks)  # same as Sam.segment, no refine
    refined = InstanceSegmentation(tiny_sam, detector)(rgb_image)
    assert not np.array_equal(plain.data["mask_score"], refined.data["mask_score"])


def test_box_fit_is_sams_box_fitted_segment(tiny_sam, rgb_image, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calls = counting(tiny_sam, monkeypatch)
    detections = InstanceSegmentation(tiny_sam, detector, mask_selection="box_fit")(rgb_image)
    # SAM's single mask and its 3 candidates, then the chosen logits fed back
    assert [(n, fed, k.get("multimask", False)) for n, fed, k in calls["decode"]] == [
        (3, False, False),
        (3, False, True),
        (3, True, False),
    ]
    fitted = tiny_sam.segment(rgb_image, boxes=detections.xyxy, box_fit=True)
    np.testing.assert_array_equal(detections.mask, fitted.masks[:, 0])
    np.testing.assert_allclose(detections.data["mask_score"], fitted.scores[:, 0], rtol=1e-6)
    with pytest.raises(ValueError, match="already weighs SAM's 3 candidates"):
        InstanceSegmentation(tiny_sam, detector, multimask=True, mask_selection="box_fit")


def test_zoomed_box_fit_decodes_all_four_in_each_window(tiny_sam, rgb_image, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calls = counting(tiny_sam, monkeypatch)
    InstanceSegmentation(tiny_sam, detector, zoom=1.5, mask_selection="box_fit")(rgb_image)
    multimask = [k.get("multimask", False) for _, _, k in calls["decode"]]
    assert [c[:2] for c in calls["decode"]] == [(1, False), (1, False), (1, True)] * 3
    assert multimask == [False, True, False] * 3


@pytest.mark.parametrize("selection", ["score", "box_iou", "largest"])
def test_multimask_selection(tiny_sam, rgb_image, selection) -> None:  # type: ignore[no-untyped-def]
    pipe = InstanceSegmentation(
        tiny_sam, detector, multimask=True, mask_selection=selection, refine=False
    )
    detections = pipe(rgb_image)
    candidates = tiny_sam.segment(rgb_image, boxes=detections.xyxy, multimask=True)
    for i in range(3):  # each output is one of SAM's three candidates
        assert any(np.array_equal(detections.mask[i], c) for c in candidates.masks[i])
    if selection == "largest":
        areas = candidates.masks.sum(axis=(2, 3)).max(axis=1)
        # low-res "largest" may tie-break differently at full resolution by a few pixels
        assert (detections.mask.sum(axis=(1, 2)) >= 0.9 * areas).all()


def test_zero_detections_and_points_only(tiny_sam, rgb_image) -> None:  # type: ignore[no-untyped-def]
    empty = InstanceSegmentation(tiny_sam, lambda image: Prompts())(rgb_image)
    assert len(empty) == 0 and empty.mask.shape == (0, 90, 140)
    points = InstanceSegmentation(
        tiny_sam,
        lambda image: from_boxes(BOXES, format="xyxy", points="center", keep_boxes=False),
    )(rgb_image)
    np.testing.assert_allclose(points.xyxy, BOXES)  # the detector's boxes, not the masks'
    assert "detector_xyxy" not in points.data


def test_bad_detector_and_options(tiny_sam, rgb_image) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match="must return composeseg.Prompts"):
        InstanceSegmentation(tiny_sam, lambda image: [[0, 0, 5, 5]])(rgb_image)
    with pytest.raises(ValueError, match="mask_selection"):
        InstanceSegmentation(tiny_sam, detector, mask_selection="best")  # type: ignore[arg-type]
    outside = InstanceSegmentation(tiny_sam, lambda image: Prompts(boxes=[[500, 500, 600, 600]]))
    with pytest.raises(ValueError, match="outside"):
        outside(rgb_image)


def test_without_a_detector_only_segment_works(tiny_sam, rgb_image) -> None:  # type: ignore[no-untyped-def]
    pipe = InstanceSegmentation(tiny_sam)
    found = pipe.segment(rgb_image, detector(rgb_image))
    assert sorted(found.data["class_name"]) == ["apple", "apple", "pear"]
    with pytest.raises(ValueError, match=r"no detector: give one, or call segment\(rgb, prompts\)"):
        pipe(rgb_image)


def test_run_writes_and_resumes(tiny_sam, rgb_image, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.jpg"):
        Image.fromarray(rgb_image).save(images / name)
    (images / "notes.txt").write_text("not an image")
    pipe = InstanceSegmentation(tiny_sam, detector)
    summary = pipe.run(images, write_to=tmp_path / "out", progress=False)
    first = list(summary.results())
    assert [r.name for r in first] == ["a.png", "b.jpg"]
    records = sorted(p.name for p in (tmp_path / "out" / "records").iterdir())
    assert records == ["a.png.json", "b.jpg.json"]
    calls = counting(tiny_sam, monkeypatch)
    again = pipe.run(images, write_to=tmp_path / "out", progress=False)
    assert calls["decode"] == [] and (again.done, again.skipped) == (0, 2)  # nothing recomputed
    for a, b in zip(first, again.results(), strict=True):
        np.testing.assert_array_equal(a.detections.mask, b.detections.mask)
        np.testing.assert_allclose(a.detections.confidence, b.detections.confidence)
        assert a.detections.data["class_name"].tolist() == b.detections.data["class_name"].tolist()
    arrays = list(pipe.stream([rgb_image, rgb_image[:50]]))
    assert [r.image_size for r in arrays] == [(90, 140), (50, 140)]


def test_zoom_segments_each_object_in_its_window(tiny_sam, rgb_image, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from composeseg.zoom import zoom_windows

    calls = counting(tiny_sam, monkeypatch)
    detections = InstanceSegmentation(tiny_sam, detector, zoom=1.5)(rgb_image)
    assert calls["embed"] == []  # the windows go through embed_batch, not a whole-image pass
    # per object: the decode in its window, then the refinement there
    assert [c[:2] for c in calls["decode"]] == [(1, False), (1, True)] * 3
    windows = zoom_windows(np.array(BOXES, np.float32), (90, 140), 1.5)
    for mask, (x0, y0, x1, y1) in zip(detections.mask, windows[[0, 2, 1]], strict=True):
        assert mask.any() and mask[y0:y1, x0:x1].sum() == mask.sum()
    # the same Detections as without zoom: boxes, classes and both scores
    np.testing.assert_allclose(detections.xyxy[0], BOXES[0])
    expected = detections.data["detector_score"] * np.clip(detections.data["mask_score"], 0, 1)
    np.testing.assert_allclose(detections.confidence, expected, rtol=1e-6)
    assert detections.data["class_name"].tolist() == ["apple", "apple", "pear"]


def test_a_zoomed_run_encodes_only_windows(tiny_sam, rgb_image, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pipe = InstanceSegmentation(tiny_sam, detector, zoom=1.5)
    assert pipe.job().sam is None  # the runner must not batch whole images for it
    shapes: list[tuple[int, ...]] = []
    embed_batch = tiny_sam.embed_batch

    def recording(images):  # type: ignore[no-untyped-def]
        shapes.extend(np.asarray(image).shape for image in images)
        return embed_batch(images)

    monkeypatch.setattr(tiny_sam, "embed_batch", recording)
    [result] = list(pipe.stream([rgb_image]))
    assert len(shapes) == 3 and rgb_image.shape not in shapes
    np.testing.assert_array_equal(result.detections.mask, pipe(rgb_image).mask)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"zoom": 0.5}, "zoom must be a finite number >= 1"),
        ({"zoom": 6.0, "multimask": True, "mask_selection": "box_iou"}, "zoom picks"),
    ],
)
def test_bad_zoom_options(tiny_sam, options, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        InstanceSegmentation(tiny_sam, detector, **options)
