"""SAM-HQ and SAM 2 exports run behind ``load_sam`` like the torch models they came from.

Tiny random models (``composeseg.tiny``), exported once each. Their decoders produce logits of
order 1e-4, so logits are compared relative to their own scale, and masks only where the torch
logits are clear of zero.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from composeseg import Sam, export_onnx, load_sam
from composeseg.onnx_checks import mean_mask_iou
from composeseg.onnx_export import ExportReport
from composeseg.tiny import build_model, tiny_sam2_config, tiny_sam_hq_config

BOXES = np.array([[10, 10, 60, 50], [30, 20, 100, 60], [70, 40, 130, 85]], np.float32)
POINTS = np.array([[[30, 30], [50, 45]], [[60, 40], [0, 0]], [[100, 60], [120, 70]]], np.float32)
LABELS = np.array([[1, 0], [1, -1], [1, 1]])  # -1: a padding slot


@dataclass(frozen=True)
class Subject:
    family: str
    torch_sam: Sam
    onnx_sam: Sam
    report: ExportReport


@pytest.fixture(scope="module", params=["sam_hq", "sam2"])
def subject(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Subject:
    family = request.param
    config = tiny_sam_hq_config() if family == "sam_hq" else tiny_sam2_config()
    folder = tmp_path_factory.mktemp(family)
    build_model(config, seed=0).save_pretrained(folder / "model")
    torch_sam = load_sam(folder / "model", device="cpu")
    report = export_onnx(folder / "model", folder / "onnx", check_scenes=1)
    return Subject(family, torch_sam, load_sam(report.directory), report)


def _image() -> np.ndarray:
    image = np.random.default_rng(0).integers(0, 80, (90, 140, 3), dtype=np.uint8)
    image[20:60, 30:100] = (220, 40, 40)
    return image


@pytest.mark.parametrize("multimask", [False, True])
@pytest.mark.parametrize("case", ["box", "points", "box+points", "box+mask"])
def test_family_export_matches_torch(subject: Subject, case: str, multimask: bool) -> None:
    image = _image()
    prompt: dict[str, np.ndarray] = {}
    if "box" in case:
        prompt["boxes"] = BOXES
    if "points" in case:
        prompt.update(points=POINTS, point_labels=LABELS)
    results = []
    for sam in (subject.onnx_sam, subject.torch_sam):
        embedding = sam.embed(image)
        if "mask" in case:
            prompt["mask_input"] = subject.torch_sam.segment(image, boxes=BOXES).logits[:, 0]
        results.append(sam.segment(embedding, **prompt, multimask=multimask))
    ours, ref = results
    assert ours.logits.shape == ref.logits.shape == (3, 3 if multimask else 1, 32, 32)
    scale = float(np.abs(ref.logits).max())
    assert scale > 0
    np.testing.assert_allclose(ours.logits, ref.logits, atol=1e-3 * scale, rtol=0)
    np.testing.assert_allclose(ours.scores, ref.scores, atol=1e-4, rtol=0)
    # logits differ by ~1e-5 of their scale: only pixels within that of zero can flip
    assert mean_mask_iou(ours.masks, ref.masks) >= 0.999


def test_family_export_records_its_frame(subject: Subject) -> None:
    manifest = json.loads(Path(subject.report.files["manifest"]).read_text())
    assert manifest["family"] == subject.family
    assert manifest["resize_mode"] == ("square" if subject.family == "sam2" else "longest")
    assert manifest["trailing_pad"] is (subject.family == "sam2")
    assert "decoder_meta" not in manifest["files"]  # Meta's signature is SAM's alone
    expected = {
        "sam_hq": ["image_embeddings", "intermediate_embeddings"],
        "sam2": ["image_embeddings", "high_res_feats_0", "high_res_feats_1"],
    }[subject.family]
    import onnxruntime

    encoder = onnxruntime.InferenceSession(str(subject.report.files["encoder"]))
    assert [o.name for o in encoder.get_outputs()] == expected
