"""AutomaticMaskGenerator, ObjectProposals, EdgeDetection on a tiny model, and AMG helpers
checked against Meta's reference functions."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv
import torch
from segment_anything.utils import amg as meta_amg

import composeseg.pipelines.amg as amg
from composeseg import rle as rle_codec
from composeseg.pipelines import amg_utils
from composeseg.pipelines.amg import AutomaticMaskGenerator
from composeseg.pipelines.amg_data import MaskSet
from composeseg.pipelines.edges import EdgeDetection, canny_edges, postprocess_edges, sobel_edges
from composeseg.pipelines.proposals import ObjectProposals
from composeseg.rle import decode as rle_to_mask

FAST = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)


@pytest.mark.parametrize(
    ("size", "layers", "ratio"),
    [((90, 120), 1, 512 / 1500), ((300, 200), 2, 0.25), ((64, 64), 0, 0.3)],
)
def test_crop_boxes_match_meta(size: tuple[int, int], layers: int, ratio: float) -> None:
    assert amg_utils.generate_crop_boxes(size, layers, ratio) == meta_amg.generate_crop_boxes(
        size, layers, ratio
    )


def test_point_grids_match_meta() -> None:
    for ours, ref in zip(
        amg_utils.build_all_layer_point_grids(8, 2, 2),
        meta_amg.build_all_layer_point_grids(8, 2, 2),
        strict=True,
    ):
        np.testing.assert_array_equal(ours, ref)


def test_stability_boxes_rle_and_cleanup_match_meta() -> None:
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(0, 2, (5, 40, 30)).astype(np.float32))
    logits[4] = -5  # empty mask: NaN stability, [0, 0, 0, 0] box
    ref = meta_amg.calculate_stability_score(logits, 0.0, 1.0).numpy()
    ours = amg_utils.stability_score_np(logits.numpy(), 0.0, 1.0)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    np.testing.assert_array_equal(ours[:4], ref[:4])
    masks = logits > 0
    rles = rle_codec.encode_transposed(masks.transpose(1, 2).numpy())
    for one, mask in zip(rles, masks.numpy(), strict=True):
        np.testing.assert_array_equal(rle_codec.decode(one), mask)
    np.testing.assert_array_equal(
        rle_codec.boxes_inclusive(rles), meta_amg.batched_mask_to_box(masks).numpy()
    )
    for mode in ("holes", "islands"):
        got, changed = amg_utils.remove_small_regions(masks[0].numpy(), 10, mode)
        want, want_changed = meta_amg.remove_small_regions(masks[0].numpy(), 10, mode)
        np.testing.assert_array_equal(got, want)
        assert changed == want_changed


def test_crop_edge_test_matches_meta() -> None:
    boxes = np.array([[0, 0, 50, 50], [10, 10, 59, 40], [65, 5, 90, 30]], np.float32)
    crop, full = [0, 0, 60, 60], [0, 0, 120, 90]
    ref = meta_amg.is_box_near_crop_edge(torch.from_numpy(boxes), crop, full).numpy()
    np.testing.assert_array_equal(amg_utils.is_box_near_crop_edge(boxes, crop, full), ref)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(points_per_side=None), "exactly one of points_per_side"),
        (dict(point_grids=[np.zeros((4, 2))]), "exactly one of points_per_side"),
        (dict(points_per_side=None, point_grids=[np.zeros((4, 3))]), r"point_grids\[0\]"),
        (dict(points_per_batch=0), "points_per_batch"),
        (dict(box_nms_thresh=1.5), "box_nms_thresh"),
        (dict(crop_n_layers=-1), "crop_n_layers"),
        (dict(output="png"), "output"),
        (dict(crop_n_layers=1, points_per_side=None, point_grids=[np.zeros((4, 2))]), "one grid"),
    ],
)
def test_bad_settings_raise(tiny_sam, kwargs: dict, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        AutomaticMaskGenerator(tiny_sam, **kwargs)


def test_detections_fields_and_rle_mode_agree(tiny_sam, rgb_image: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    dense = AutomaticMaskGenerator(tiny_sam, **FAST, crop_n_layers=1)(rgb_image)
    rle = AutomaticMaskGenerator(tiny_sam, **FAST, crop_n_layers=1, output="rle")(rgb_image)
    assert isinstance(dense, sv.Detections) and len(dense) == len(rle) > 0
    assert dense.mask is not None and dense.mask.shape == (len(dense), 90, 140)
    assert rle.mask is None
    for i in range(len(dense)):
        np.testing.assert_array_equal(rle_to_mask(rle.data["rle"][i]), dense.mask[i])
    np.testing.assert_array_equal(sv.mask_to_xyxy(dense.mask), dense.xyxy)
    assert dense.data["point"].shape == (len(dense), 2)
    assert dense.data["crop_box"].shape == (len(dense), 4)
    assert dense.data["stability_score"].shape == (len(dense),)


def test_rejected_candidates_are_never_upsampled(
    tiny_sam, rgb_image: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    calls = []
    upscale = amg.upscale_logits

    def counting(logits, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(logits))
        return upscale(logits, *args, **kwargs)

    monkeypatch.setattr(amg, "upscale_logits", counting)
    none = AutomaticMaskGenerator(tiny_sam, points_per_side=4, pred_iou_thresh=1.0)(rgb_image)
    assert len(none) == 0 and calls == []
    AutomaticMaskGenerator(tiny_sam, **FAST)(rgb_image)
    assert sum(calls) == 4 * 4 * 3


def test_proposals_ranked_capped_nonempty(tiny_sam, rgb_image: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    proposals = ObjectProposals(tiny_sam, points_per_side=4, box_nms_thresh=1.0, max_masks=5)
    detections = proposals(rgb_image)
    assert 0 < len(detections) <= 5
    assert np.all(np.diff(detections.confidence) <= 0)
    assert detections.mask is not None and detections.mask.reshape(len(detections), -1).any(1).all()
    stability = np.nan_to_num(detections.data["stability_score"])
    expected = (detections.data["predicted_iou"] + stability) / 2
    np.testing.assert_allclose(detections.confidence, expected, rtol=1e-6)


def test_edge_detection_map(tiny_sam, rgb_image: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    edges = EdgeDetection(tiny_sam, points_per_side=4)(rgb_image)
    assert edges.shape == (90, 140) and edges.dtype == np.float32
    assert edges.min() >= 0.0 and edges.max() <= 1.0


def test_edge_weights_follow_the_predicted_iou(tiny_sam, rgb_image: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    options = {"points_per_side": 4, "box_nms_thresh": 1.0, "nms": False, "thin": False}
    plain = EdgeDetection(tiny_sam, **options)
    weighted = EdgeDetection(tiny_sam, weight_by_iou=True, **options)
    masks = plain.generator.generate(rgb_image, keep_logits=True)
    assert len(masks) >= 2
    size = rgb_image.shape[:2]
    # equal predicted IoUs scale every mask alike: the normalised map is the paper's
    masks.iou = np.full(len(masks), 0.7, np.float32)
    expected = plain.mask_edges(masks, size)
    np.testing.assert_allclose(weighted.mask_edges(masks, size), expected, atol=1e-6)
    # a mask predicted at IoU 0 (or below) adds nothing: only the first one is left
    masks.iou = np.r_[0.9, -0.2, np.zeros(len(masks) - 2)].astype(np.float32)
    first = plain.mask_edges(masks.select(np.array([0])), size)
    assert first.any()
    np.testing.assert_allclose(weighted.mask_edges(masks, size), first, atol=1e-6)
    assert not np.allclose(expected, first)


def offset_disc(sam) -> tuple[np.ndarray, np.ndarray, MaskSet]:  # type: ignore[no-untyped-def]
    """A disc on a square image of the model's frame, and a mask of it whose low-res logits
    sit one logit cell (4 px) to the right: what a coarse decoder gets wrong."""
    import torch.nn.functional as F

    size = sam.image_size
    yy, xx = np.mgrid[:size, :size]
    truth = (yy - 0.47 * size) ** 2 + (xx - 0.52 * size) ** 2 <= (0.2 * size) ** 2
    image = np.full((size, size, 3), 90, np.uint8)
    image[truth] = (230, 140, 30)
    cell = size // sam.backend.mask_size
    low = F.avg_pool2d(torch.from_numpy(truth.astype(np.float32))[None, None], cell)[0]
    one = np.zeros((1, 4), np.float32)
    masks = MaskSet(
        rles=[{}],
        frames=one.astype(np.int64),
        boxes=one,
        iou=np.ones(1, np.float32),
        stability=np.ones(1, np.float32),
        points=np.zeros((1, 2), np.float32),
        crop_boxes=one.astype(np.int64),
        logits=torch.roll(30 * (low - 0.5), 1, dims=2),
        input_sizes=np.array([[size, size]]),
    )
    return image, truth, masks


def test_guided_edges_land_on_the_object_edge(tiny_sam) -> None:  # type: ignore[no-untyped-def]
    import cv2

    image, truth, masks = offset_disc(tiny_sam)
    kernel = np.ones((3, 3), np.uint8)
    band = cv2.dilate(truth.astype(np.uint8), kernel) != cv2.erode(truth.astype(np.uint8), kernel)
    on_edge = {}
    for upsampling in ("bilinear", "guided"):
        pipe = EdgeDetection(tiny_sam, upsampling=upsampling, nms=False, thin=False)
        assert pipe.guided == (upsampling == "guided")
        edges = pipe.mask_edges(masks, truth.shape, image=image)
        on_edge[upsampling] = edges[band].sum() / edges.sum()
    # the paper's bilinear map keeps the decoder's offset; the refit moves onto the disc
    assert on_edge["bilinear"] < 0.5 and on_edge["guided"] > 0.95, on_edge


def test_guided_edges_follow_the_model_and_need_the_image(tiny_sam) -> None:  # type: ignore[no-untyped-def]
    from composeseg.sam import Sam

    guided_sam = Sam(tiny_sam.backend, device=tiny_sam.device, upsampling="guided")
    assert EdgeDetection(guided_sam, nms=False, thin=False).guided
    assert not EdgeDetection(guided_sam, upsampling="bilinear", nms=False, thin=False).guided
    assert not EdgeDetection(tiny_sam, nms=False, thin=False).guided
    _, truth, masks = offset_disc(tiny_sam)
    with pytest.raises(ValueError, match=r"guided edges need the \(128, 128, 3\) image"):
        EdgeDetection(guided_sam, nms=False, thin=False).mask_edges(masks, truth.shape)
    with pytest.raises(ValueError, match="upsampling must be one of"):
        EdgeDetection(tiny_sam, upsampling="bicubic")


def test_edge_postprocessing_thins_a_step_to_one_line() -> None:
    ramp = np.zeros((40, 40), np.float32)
    ramp[:, 18:23] = [0.3, 0.7, 1.0, 0.7, 0.3]  # a 5-pixel-wide vertical ridge
    out = postprocess_edges(ramp)
    rows = out[8:32]  # away from the 5-pixel border suppression
    assert (np.count_nonzero(rows, axis=1) == 1).all()
    assert (rows.argmax(axis=1) == 20).all()


@pytest.mark.parametrize("detector", [sobel_edges, canny_edges])
def test_baselines_find_the_rectangle(detector, rgb_image: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    edges = detector(rgb_image)
    assert edges.shape == (90, 140) and edges.dtype == np.float32
    assert edges[20:60, 28:33].max() > 0.3  # left side of the rectangle
    assert edges[35:45, 50:80].max() < 0.1  # flat inside


def test_rle_area_counts_more_than_255_masks() -> None:
    # pycocotools 2.0.11 overflows on area() of more than 255 RLEs in one call
    from composeseg.rle import area as rle_area
    from composeseg.rle import encode_mask

    rng = np.random.default_rng(0)
    masks = rng.random((300, 12, 10)) < 0.3
    areas = rle_area([encode_mask(m) for m in masks])
    np.testing.assert_array_equal(areas, masks.reshape(300, -1).sum(1))


def test_guided_generation_refines_what_nms_kept(tiny_sam, rgb_image: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    # candidates are scored, filtered and deduplicated as bilinear masks; only the survivors
    # are refitted to the image, and their boxes follow the refitted masks
    from composeseg.geometry import tight_boxes
    from composeseg.sam import Sam
    from composeseg.upsampling import guided_masks

    guided = Sam(tiny_sam.backend, device=tiny_sam.device, upsampling="guided")
    plain = AutomaticMaskGenerator(tiny_sam, **FAST).generate(rgb_image)
    found = AutomaticMaskGenerator(guided, **FAST).generate(rgb_image)
    assert len(found) == len(plain) > 0
    np.testing.assert_array_equal(found.iou, plain.iou)
    bilinear = np.stack([rle_to_mask(r) for r in plain.rles])
    want = guided_masks(bilinear, guided.embed(rgb_image), guided.backend.mask_size)
    got = np.stack([rle_to_mask(r) for r in found.rles])
    assert (want != bilinear).any()  # the refinement changed something to check
    np.testing.assert_array_equal(got, want)
    boxes = tight_boxes(got).astype(np.float32) - np.array([0, 0, 1, 1], np.float32)
    np.testing.assert_array_equal(found.boxes[got.any(axis=(1, 2))], boxes[got.any(axis=(1, 2))])
