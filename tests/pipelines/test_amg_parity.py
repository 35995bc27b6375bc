"""Our AutomaticMaskGenerator returns Meta's masks on the same (tiny, random) weights."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds meta_reference
from meta_reference import build_tiny_meta_sam
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment
from segment_anything import SamAutomaticMaskGenerator

from composeseg import load_sam
from composeseg.pipelines.amg import AutomaticMaskGenerator


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    meta = build_tiny_meta_sam(3, img_size=128)
    with torch.no_grad():
        # Random decoders give logits near 0 everywhere, so every stability score is ~0; larger
        # logits make the stability filter (and the ±1 thresholds) decide something.
        for mlp in meta.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(10)
    path = Path(tmp_path_factory.mktemp("meta")) / "tiny.pth"
    torch.save(meta.state_dict(), path)
    return meta, load_sam(path, device="cpu")


IMAGE = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)

CASES = {
    # random masks barely depend on the prompt, so NMS at 0.7 would leave one mask; 1.0 keeps
    # the filters' decisions visible mask by mask
    "iou+stability filters": dict(
        points_per_side=8, pred_iou_thresh=0.1, stability_score_thresh=0.5, box_nms_thresh=1.0
    ),
    "crops+small regions": dict(
        points_per_side=4,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.3,
        box_nms_thresh=1.0,
        crop_n_layers=1,
        crop_nms_thresh=1.0,
        min_mask_region_area=30,
    ),
    "defaults, 2 crop layers": dict(
        points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0, crop_n_layers=2
    ),
}


@pytest.mark.parametrize("params", CASES.values(), ids=CASES.keys())
def test_same_masks_as_meta(models, params: dict) -> None:  # type: ignore[no-untyped-def]
    meta, sam = models
    reference = SamAutomaticMaskGenerator(meta, output_mode="coco_rle", **params).generate(IMAGE)
    ours = AutomaticMaskGenerator(sam, output="rle", **params)(IMAGE)
    assert len(ours) == len(reference) > 0
    ref_rles = [a["segmentation"] for a in reference]
    ious = mask_utils.iou(ref_rles, list(ours.data["rle"]), [0] * len(ours))
    ref_iou = np.array([a["predicted_iou"] for a in reference])
    ref_points = np.array([a["point_coords"][0] for a in reference])
    # one-to-one matching; duplicates (kept by NMS at 1.0) pair up by score and prompt
    cost = (1 - ious) + np.abs(ref_iou[:, None] - ours.confidence[None])
    cost += np.abs(ref_points[:, None] - ours.data["point"][None]).sum(-1) / 100
    rows, best = linear_sum_assignment(cost)
    assert ious[rows, best].min() >= 0.99
    np.testing.assert_allclose(ours.confidence[best], ref_iou, atol=1e-4)
    ref_stability = np.array([a["stability_score"] for a in reference])
    np.testing.assert_allclose(ours.data["stability_score"][best], ref_stability, atol=2e-3)
    ref_crop = np.array([a["crop_box"] for a in reference])  # xywh
    crop = ours.data["crop_box"][best]
    np.testing.assert_array_equal(np.c_[crop[:, :2], crop[:, 2:] - crop[:, :2]], ref_crop)
    np.testing.assert_allclose(ours.data["point"][best], ref_points, atol=1e-3)
