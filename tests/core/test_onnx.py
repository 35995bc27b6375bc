"""ONNX export: onnxruntime behind the Sam API matches torch, Meta's decoder signature matches
Meta's ``SamOnnxModel`` on the same weights, int8 keeps a mask-IoU floor, and a bad export
directory fails naming the file.

Two subjects, each exported once: the embedded demo model, and a tiny random Meta SAM loaded
from its ``.pth`` (so Meta's own modules hold the same weights).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds meta_reference

from meta_reference import build_tiny_meta_sam
from segment_anything import SamPredictor
from segment_anything.utils.onnx import SamOnnxModel

from composeseg import Sam, export_onnx, load_sam
from composeseg.backends.onnx import OnnxVersionWarning
from composeseg.extras import MissingExtraError
from composeseg.onnx_checks import mean_mask_iou
from composeseg.onnx_export import ExportReport
from composeseg.onnx_graphs import MetaSignatureDecoder
from composeseg.pipelines import AutomaticMaskGenerator, InstanceSegmentation
from composeseg.prompts import Prompts
from composeseg.synthetic.scenes import SceneConfig, generate_scene

ROOT = Path(__file__).resolve().parents[2]
TINY = 128  # the tiny Meta SAM's input side


@dataclass(frozen=True)
class Subject:
    torch_sam: Sam
    onnx_sam: Sam
    report: ExportReport
    image: np.ndarray
    boxes: np.ndarray  # (N, 4) xyxy pixels
    meta: Any = None  # Meta's Sam with the same weights (tiny subject only)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Subject:
    # the demo model draws learned masks; its export draws guided ones (the refiner stays in
    # torch), so the export is compared with the same model drawing guided masks
    report = export_onnx(
        load_sam(None, device="cpu"), tmp_path_factory.mktemp("demo"), check_scenes=1
    )
    torch_sam = load_sam(None, device="cpu", upsampling="guided")
    scene = generate_scene(7, SceneConfig(height=200, width=300, min_objects=3))
    return Subject(torch_sam, load_sam(report.directory), report, scene.image, scene.boxes())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Subject:
    meta = build_tiny_meta_sam(seed=3, img_size=TINY)
    folder = tmp_path_factory.mktemp("tiny")
    torch.save(meta.state_dict(), folder / "sam_tiny.pth")
    torch_sam = load_sam(folder / "sam_tiny.pth", device="cpu")
    report = export_onnx(torch_sam, folder / "onnx", check_scenes=1)
    image = np.random.default_rng(1).integers(0, 255, (100, 150, 3), dtype=np.uint8)
    image[20:70, 30:110] = (250, 200, 20)
    boxes = np.array([[25, 15, 115, 75], [0, 0, 60, 50], [70, 30, 149, 99]], np.float32)
    return Subject(torch_sam, load_sam(report.directory), report, image, boxes, meta)


def _prompts(case: str, boxes: np.ndarray) -> dict[str, np.ndarray]:
    centres = ((boxes[:, :2] + boxes[:, 2:]) / 2)[:, None]
    corners = boxes[:, None, :2] + 1
    points = np.concatenate([centres, corners], axis=1)  # on the object, then its corner
    labels = np.tile(np.array([[1, 0]]), (len(boxes), 1))
    return {
        "box": {"boxes": boxes},
        "points": {"points": points, "point_labels": labels},
        "box+points": {"boxes": boxes, "points": centres, "point_labels": labels[:, :1]},
        "one point": {"points": centres, "point_labels": labels[:, :1]},
    }[case]


@pytest.mark.parametrize("refine", [False, True])
@pytest.mark.parametrize("multimask", [False, True])
@pytest.mark.parametrize("case", ["box", "points", "box+points", "one point"])
@pytest.mark.parametrize("name", ["demo", "tiny"])
def test_onnxruntime_matches_torch(
    name: str, case: str, multimask: bool, refine: bool, request: pytest.FixtureRequest
) -> None:
    subject: Subject = request.getfixturevalue(name)
    prompt = _prompts(case, subject.boxes)
    results = []
    for sam in (subject.onnx_sam, subject.torch_sam):
        embedding = sam.embed(subject.image)
        mask_input = None
        if refine:  # each runtime refines its own first pass, as an interactive tool would
            mask_input = sam.segment(embedding, **prompt).logits[:, 0]
        results.append(sam.segment(embedding, **prompt, mask_input=mask_input, multimask=multimask))
    ours, ref = results
    assert (
        ours.masks.shape
        == ref.masks.shape
        == (len(subject.boxes), 3 if multimask else 1, *subject.image.shape[:2])
    )
    np.testing.assert_allclose(ours.logits, ref.logits, atol=1e-3, rtol=0)
    np.testing.assert_allclose(ours.scores, ref.scores, atol=1e-4, rtol=0)
    assert mean_mask_iou(ours.masks, ref.masks) >= 0.999
    assert ref.masks.any()  # the comparison is about real masks


def test_export_records_its_checks_and_frame(demo: Subject) -> None:
    manifest = json.loads(demo.report.files["manifest"].read_text())
    assert manifest["family"] == "sam" and manifest["precision"] == "fp32"
    assert manifest["image_size"] == 512 and manifest["resize_mode"] == "longest"
    # the demo model's learned upsampling travels as guided: the refiner is not in the graphs
    assert manifest["upsampling"] == demo.onnx_sam.upsampling == "guided"
    assert manifest["versions"]["onnxruntime"] and manifest["versions"]["torch"]
    assert set(manifest["files"]) == {"encoder", "decoder", "decoder_meta"}
    checks = demo.report.checks
    assert checks["max_logit_diff"] < 1e-3 and checks["mask_iou"] >= 0.999
    assert "encoder.onnx" in str(demo.report)


def test_embed_batch_runs_the_dynamic_batch(demo: Subject) -> None:
    small = demo.image[:120, :90]
    batch = demo.onnx_sam.embed_batch([demo.image, small])
    for image, embedding in zip([demo.image, small], batch, strict=True):
        alone = demo.onnx_sam.embed(image)
        np.testing.assert_allclose(embedding.features[0], alone.features[0], atol=1e-4)
        assert embedding.input_size == alone.input_size


def test_pipelines_run_unchanged_on_an_export(demo: Subject) -> None:
    def detector(image: Any) -> Prompts:
        return Prompts(boxes=demo.boxes)

    found = [
        InstanceSegmentation(sam, detector)(demo.image) for sam in (demo.onnx_sam, demo.torch_sam)
    ]
    assert len(found[0]) == len(found[1]) == len(demo.boxes)
    assert mean_mask_iou(found[0].mask[:, None], found[1].mask[:, None]) >= 0.999
    everything = [
        AutomaticMaskGenerator(
            sam, points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0
        )(demo.image)
        for sam in (demo.onnx_sam, demo.torch_sam)
    ]
    assert len(everything[0]) == len(everything[1]) > 0


def test_readme_plain_onnxruntime_snippet_matches_sam(demo: Subject) -> None:
    """The README's Deploy snippet runs the export with onnxruntime and numpy alone."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    snippet = next(b for b in blocks if "import onnxruntime" in b)
    assert not re.search(r"^(import|from) (composeseg|torch)", snippet, re.M)
    scope: dict[str, Any] = {}
    exec(snippet.replace('"sam-onnx"', repr(str(demo.report.directory))), scope)
    boxes, image = scope["boxes"], np.asarray(scope["image"])
    # the snippet upsamples bilinearly, as Meta's post-processing does
    expected = load_sam(demo.report.directory, upsampling="bilinear").segment(image, boxes=boxes)
    assert scope["masks"].shape == expected.masks.shape
    assert mean_mask_iou(scope["masks"], expected.masks) >= 0.999
    np.testing.assert_allclose(scope["scores"], expected.scores, atol=1e-4)


def _meta_inputs(subject: Subject, case: str, mask_input: np.ndarray | None) -> dict[str, Any]:
    """Meta's ONNX decoder inputs, built as Meta's notebook builds them."""
    predictor = SamPredictor(subject.meta)
    predictor.set_image(subject.image)
    box = subject.boxes[0]
    point = ((box[:2] + box[2:]) / 2)[None]
    coords, labels = np.zeros((0, 2), np.float32), np.zeros(0, np.float32)
    if "points" in case:
        coords, labels = np.concatenate([point, box[None, :2] + 1]), np.array([1, 0], np.float32)
    if "box" in case:
        coords = np.concatenate([coords, box.reshape(2, 2)])
        labels = np.concatenate([labels, [2, 3]]).astype(np.float32)
    else:
        coords, labels = np.concatenate([coords, [[0.0, 0.0]]]), np.append(labels, -1)
    shape = subject.image.shape[:2]
    return {
        "image_embeddings": predictor.features.numpy(),
        "point_coords": predictor.transform.apply_coords(coords, shape)[None].astype(np.float32),
        "point_labels": labels[None].astype(np.float32),
        "mask_input": np.zeros((1, 1, TINY // 4, TINY // 4), np.float32)
        if mask_input is None
        else mask_input,
        "has_mask_input": np.array([0.0 if mask_input is None else 1.0], np.float32),
        "orig_im_size": np.array(shape, np.float32),
    }


def _compare_meta(ours: list[Any], ref: tuple[Any, ...]) -> None:
    masks, scores, low_res = (np.asarray(v) for v in ours)
    ref_masks, ref_scores, ref_low_res = (v.numpy() for v in ref)
    assert masks.shape == ref_masks.shape and low_res.shape == ref_low_res.shape
    np.testing.assert_allclose(low_res, ref_low_res, atol=1e-3, rtol=0)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-4, rtol=0)
    assert mean_mask_iou(masks > 0, ref_masks > 0) >= 0.999


@pytest.mark.parametrize("refine", [False, True])
@pytest.mark.parametrize("case", ["box", "points", "box+points"])
def test_meta_signature_decoder_matches_meta_samonnxmodel(
    tiny: Subject, case: str, refine: bool
) -> None:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tiny.report.files["decoder_meta"]))
    assert [i.name for i in session.get_inputs()] == [
        "image_embeddings",
        "point_coords",
        "point_labels",
        "mask_input",
        "has_mask_input",
        "orig_im_size",
    ]
    assert [o.name for o in session.get_outputs()] == ["masks", "iou_predictions", "low_res_masks"]
    reference = SamOnnxModel(tiny.meta, return_single_mask=False)
    feeds = _meta_inputs(tiny, case, None)
    if refine:
        with torch.no_grad():
            first = reference(**{k: torch.from_numpy(v) for k, v in feeds.items()})[2]
        feeds = _meta_inputs(tiny, case, first[:, :1].numpy())
    with torch.no_grad():
        expected = reference(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    _compare_meta(session.run(None, feeds), expected)


@pytest.mark.parametrize("single, stability", [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("case", ["box", "points"])
def test_meta_signature_options_match_meta(
    tiny: Subject, case: str, single: bool, stability: bool
) -> None:
    """``return_single_mask`` and ``use_stability_score``, compared in torch (the ONNX
    conversion of the same module is checked above)."""
    ours = MetaSignatureDecoder(
        tiny.torch_sam.model, TINY, return_single_mask=single, use_stability_score=stability
    )
    reference = SamOnnxModel(tiny.meta, single, use_stability_score=stability)
    feeds = {k: torch.from_numpy(v) for k, v in _meta_inputs(tiny, case, None).items()}
    with torch.no_grad():
        _compare_meta(list(ours(*feeds.values())), reference(**feeds))


def test_int8_keeps_its_mask_iou_floor(demo: Subject, tmp_path: Path) -> None:
    report = export_onnx(demo.report.directory, tmp_path / "int8", quantize="int8")
    assert report.checks["int8_mask_iou"] >= 0.95, report.checks
    assert report.sizes["encoder"] < demo.report.sizes["encoder"] / 2
    int8 = load_sam(report.directory)
    assert "int8" in int8.name
    assert int8.segment(demo.image, boxes=demo.boxes).masks.any()


def test_cli_exports_fp16_and_reports(demo: Subject, tmp_path: Path, capsys: Any) -> None:
    from composeseg.pipelines.cli import main

    out = tmp_path / "fp16"
    args = ["export", "onnx", "--sam", str(demo.report.directory), "-o", str(out)]
    assert main([*args, "--fp16", "--check-scenes", "1"]) == 0
    assert "fp16_mask_iou" in capsys.readouterr().out
    fp16 = load_sam(out)
    ours = fp16.segment(demo.image, boxes=demo.boxes)
    assert (
        mean_mask_iou(ours.masks, demo.onnx_sam.segment(demo.image, boxes=demo.boxes).masks) > 0.98
    )
    assert main([*args, "--fp16", "--quantize", "int8"]) == 2
    assert "choose one" in capsys.readouterr().err


def _copy(subject: Subject, tmp_path: Path) -> Path:
    return Path(shutil.copytree(subject.report.directory, tmp_path / "copy"))


def test_missing_or_corrupt_files_are_named(demo: Subject, tmp_path: Path) -> None:
    folder = _copy(demo, tmp_path)
    (folder / "decoder.onnx").unlink()
    with pytest.raises(ValueError, match=r"decoder\.onnx is missing"):
        load_sam(folder)
    shutil.copy(demo.report.files["decoder"], folder / "decoder.onnx")
    (folder / "encoder.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ValueError, match=r"encoder\.onnx is not a valid ONNX model"):
        load_sam(folder)
    (folder / "composeseg.json").write_text("{")
    with pytest.raises(ValueError, match=r"composeseg\.json: not a readable"):
        load_sam(folder)
    (folder / "composeseg.json").unlink()
    with pytest.raises(ValueError, match=r"no composeseg\.json"):
        load_sam(folder)


def test_version_mismatch_warns(demo: Subject, tmp_path: Path) -> None:
    folder = _copy(demo, tmp_path)
    manifest = json.loads((folder / "composeseg.json").read_text())
    manifest["versions"].update(composeseg="0.0.1", onnxruntime="99.0.0")
    (folder / "composeseg.json").write_text(json.dumps(manifest))
    with pytest.warns(OnnxVersionWarning, match=r"composeseg 0\.0\.1.*onnxruntime 99\.0\.0"):
        load_sam(folder)


def test_unsupported_families_and_options_are_refused(demo: Subject, tmp_path: Path) -> None:
    from tiny_sam3 import save_tiny_sam3

    sam3 = save_tiny_sam3(tmp_path / "sam3")
    with pytest.raises(ValueError, match=r"does not support model_type 'sam3.*supported: sam:"):
        export_onnx(sam3, tmp_path / "out")
    with pytest.raises(ValueError, match=r"does not support object objects yet .*sam_hq"):
        export_onnx(object(), tmp_path / "out")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already an ONNX export"):
        export_onnx(demo.report.directory, tmp_path / "out")
    with pytest.raises(ValueError, match="quantize must be one of"):
        export_onnx(demo.torch_sam, tmp_path / "out", quantize="int4")
    with pytest.raises(ValueError, match="dtype"):
        load_sam(demo.report.directory, dtype=torch.bfloat16)


def test_missing_extra_is_named(demo: Subject, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingExtraError, match=r"composeseg\[onnx\]"):
        load_sam(demo.report.directory)
    with pytest.raises(MissingExtraError, match=r"composeseg\[onnx\]"):
        export_onnx(demo.torch_sam, demo.report.directory.parent / "never")


def test_a_learned_sam_exports_with_guided_masks(tiny: Subject, tmp_path: Path) -> None:
    from composeseg.refiner import MaskRefiner

    learned = Sam(
        tiny.torch_sam.backend,
        device=torch.device("cpu"),
        upsampling="learned",
        refiner=MaskRefiner(),
    )
    report = export_onnx(learned, tmp_path / "onnx", check_scenes=1)
    manifest = json.loads(report.files["manifest"].read_text())
    # the refiner is a torch module outside the graphs: the export says what it can draw
    assert manifest["upsampling"] == load_sam(report.directory).upsampling == "guided"
