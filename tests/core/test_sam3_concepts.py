from __future__ import annotations

import json
import shutil
import sys
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds tiny_sam3
from tiny_sam3 import NUM_QUERIES, save_tiny_sam3

import composeseg
from composeseg.concepts import ConceptPrediction, ConceptSam, load_sam3

CONCEPTS = ("cat", "red car", "dog", "tree", "sky")


@pytest.fixture(scope="module")
def sam3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_sam3(tmp_path_factory.mktemp("tiny_sam3"))


@pytest.fixture(scope="module")
def sam3(sam3_dir: Path) -> ConceptSam:
    return load_sam3(sam3_dir, device="cpu")


def test_loads_model_and_processor_from_a_save_pretrained_directory(
    sam3: ConceptSam, sam3_dir: Path
) -> None:
    assert type(sam3.model).__name__ == "Sam3Model" and not sam3.model.training
    assert type(sam3.processor).__name__ == "Sam3Processor"
    assert sam3.device.type == "cpu" and sam3.dtype == torch.float32
    assert sam3.name == str(sam3_dir) and sam3.max_concept_tokens == 32


def test_public_names_resolve_lazily() -> None:
    assert composeseg.load_sam3 is load_sam3
    assert composeseg.ConceptSam is ConceptSam
    assert composeseg.ConceptPrediction is ConceptPrediction


@pytest.mark.parametrize("form", ["array", "pil", "path"])
def test_outputs_are_in_the_original_image_frame(
    sam3: ConceptSam, rgb_image: np.ndarray, tmp_path: Path, form: str
) -> None:
    image: object = rgb_image
    if form != "array":
        image = Image.fromarray(rgb_image)
    if form == "path":
        image.save(tmp_path / "image.png")  # type: ignore[attr-defined]
        image = tmp_path / "image.png"
    result = sam3.segment_concepts(image, CONCEPTS[:2], threshold=0.0)  # type: ignore[arg-type]
    n = len(result)
    assert n > 0 and result.concepts == CONCEPTS[:2] and result.original_size == (90, 140)
    assert result.masks.shape == (n, 90, 140) and result.masks.dtype == np.bool_
    assert result.boxes.shape == (n, 4) and result.boxes.dtype == np.float32
    assert result.scores.shape == (n,) and result.scores.dtype == np.float32
    assert result.class_id.shape == (n,) and result.class_id.dtype == np.int64
    x0, y0, x1, y1 = result.boxes.T
    assert np.all((x0 >= 0) & (x0 <= x1) & (x1 <= 140) & (y0 >= 0) & (y0 <= y1) & (y1 <= 90))
    assert np.all((result.scores >= 0) & (result.scores <= 1))
    for concept in range(2):  # grouped by concept, best first
        scores = result.scores[result.class_id == concept]
        assert np.all(np.diff(scores) <= 0)
    assert np.all(np.diff(result.class_id) >= 0)


def test_matches_the_transformers_reference_pipeline(
    sam3: ConceptSam, rgb_image: np.ndarray
) -> None:
    # Reference: processor + full forward (image re-encoded) + the processor's post-processing,
    # one concept at a time, as in the transformers SAM 3 documentation.
    threshold, mask_threshold = 0.22, 0.5
    ours = sam3.segment_concepts(
        rgb_image, CONCEPTS, threshold=threshold, mask_threshold=mask_threshold
    )
    for concept, text in enumerate(CONCEPTS):
        inputs = sam3.processor(images=rgb_image, text=text, return_tensors="pt")
        with torch.inference_mode():
            outputs = sam3.model(**inputs)
        (reference,) = sam3.processor.post_process_instance_segmentation(
            outputs, threshold=threshold, mask_threshold=mask_threshold, target_sizes=[(90, 140)]
        )
        order = torch.argsort(reference["scores"], descending=True, stable=True)
        mine = ours.class_id == concept
        assert mine.sum() == len(order)
        np.testing.assert_allclose(ours.scores[mine], reference["scores"][order], atol=1e-5)
        boxes = reference["boxes"][order].numpy()
        boxes = np.clip(boxes, 0, [140, 90, 140, 90])
        np.testing.assert_allclose(ours.boxes[mine], boxes, atol=1e-3)
        masks = reference["masks"][order].numpy().astype(bool)
        assert np.mean(ours.masks[mine] != masks) < 1e-3
    assert 0 < len(ours) < len(CONCEPTS) * NUM_QUERIES  # the threshold kept some, not all


@pytest.mark.parametrize("concepts_per_batch", [1, 2, 8])
def test_the_image_is_encoded_once_and_batching_does_not_change_results(
    sam3: ConceptSam, rgb_image: np.ndarray, concepts_per_batch: int
) -> None:
    reference = sam3.segment_concepts(rgb_image, CONCEPTS, threshold=0.0)
    batched = ConceptSam(
        sam3.model, sam3.processor, device=sam3.device, concepts_per_batch=concepts_per_batch
    )
    calls = {"vision": 0, "decoder": 0}
    hooks = [
        sam3.model.vision_encoder.register_forward_hook(
            lambda *_: calls.__setitem__("vision", calls["vision"] + 1)
        ),
        sam3.model.detr_decoder.register_forward_hook(
            lambda *_: calls.__setitem__("decoder", calls["decoder"] + 1)
        ),
    ]
    try:
        result = batched.segment_concepts(rgb_image, CONCEPTS, threshold=0.0)
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == {"vision": 1, "decoder": -(-len(CONCEPTS) // concepts_per_batch)}
    assert set(result.class_id.tolist()) == set(range(len(CONCEPTS)))
    np.testing.assert_allclose(result.scores, reference.scores, atol=1e-5)
    np.testing.assert_allclose(result.boxes, reference.boxes, atol=1e-3)
    assert np.mean(result.masks != reference.masks) < 1e-3


def test_no_match_gives_an_empty_prediction_with_shapes(
    sam3: ConceptSam, rgb_image: np.ndarray
) -> None:
    result = sam3.segment_concepts(rgb_image, ["cat", "dog"], threshold=1.0)
    assert len(result) == 0 and result.masks.shape == (0, 90, 140)
    assert result.boxes.shape == (0, 4) and result.boxes.dtype == np.float32
    assert result.scores.dtype == np.float32 and result.class_id.dtype == np.int64
    detections = result.to_detections()
    assert len(detections) == 0 and np.shape(detections.data["class_name"]) == (0,)


def test_to_detections_carries_class_ids_and_names(sam3: ConceptSam, rgb_image: np.ndarray) -> None:
    result = sam3.segment_concepts(rgb_image, ["cat", "red car"], threshold=0.0)
    detections = result.to_detections()
    assert len(detections) == len(result)
    np.testing.assert_array_equal(detections.class_id, result.class_id)
    np.testing.assert_array_equal(detections.confidence, result.scores)
    np.testing.assert_array_equal(detections.mask, result.masks)
    expected = np.array(["cat", "red car"])[result.class_id]
    np.testing.assert_array_equal(detections.data["class_name"], expected)


def test_bfloat16_model_returns_float32_outputs(sam3_dir: Path, rgb_image: np.ndarray) -> None:
    sam3 = load_sam3(sam3_dir, device="cpu", dtype=torch.bfloat16)
    result = sam3.segment_concepts(rgb_image, ["cat"], threshold=0.0)
    assert len(result) > 0 and result.scores.dtype == np.float32
    with pytest.raises(ValueError, match="float16 is not supported on CPU"):
        load_sam3(sam3_dir, device="cpu", dtype=torch.float16)


@pytest.mark.parametrize(
    ("concepts", "options", "message"),
    [
        ([], {}, "concepts is empty"),
        (["cat", 3], {}, r"concepts\[1\] is blank or not a string: 3"),
        (["cat", " "], {}, r"concepts\[1\] is blank"),
        (["cat", "dog", "cat"], {}, r"concepts\[2\] 'cat' repeats concepts\[0\]"),
        (["a" * 40], {}, "42 tokens; SAM 3 takes at most 32"),
        (["cat"], {"threshold": 1.5}, r"threshold must be in \[0, 1\], got 1.5"),
        (["cat"], {"mask_threshold": -0.1}, r"mask_threshold must be in \[0, 1\], got -0.1"),
    ],
)
def test_bad_arguments_are_rejected_by_name(
    sam3: ConceptSam, rgb_image: np.ndarray, concepts: object, options: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        sam3.segment_concepts(rgb_image, concepts, **options)  # type: ignore[arg-type]


def test_prediction_rejects_inconsistent_columns() -> None:
    masks = np.zeros((2, 4, 5), bool)
    good = {"boxes": np.zeros((2, 4), np.float32), "scores": np.zeros(2, np.float32)}
    with pytest.raises(ValueError, match=r"class_id must index the 1 concepts"):
        ConceptPrediction(masks, **good, class_id=np.array([0, 1]), concepts=("cat",))
    with pytest.raises(ValueError, match=r"scores must have shape \(2,\)"):
        ConceptPrediction(
            masks, good["boxes"], np.zeros(3, np.float32), np.zeros(2, np.int64), ("cat",)
        )


def test_missing_directory_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "sam3"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_sam3(missing, device="cpu")


def _empty(sam3_dir: Path, target: Path) -> Path:
    return target


def _config_of(text: str) -> Callable[[Path, Path], Path]:
    def setup(sam3_dir: Path, target: Path) -> Path:
        (target / "config.json").write_text(text)
        return target

    return setup


def _model_only(sam3_dir: Path, target: Path) -> Path:
    for name in ("config.json", "model.safetensors"):
        shutil.copy(sam3_dir / name, target / name)
    return target


def _corrupt_weights(sam3_dir: Path, target: Path) -> Path:
    shutil.copytree(sam3_dir, target, dirs_exist_ok=True)
    (target / "model.safetensors").write_bytes(b"not safetensors")
    return target


def _a_file(sam3_dir: Path, target: Path) -> Path:
    (target / "weights.bin").write_bytes(b"")
    return target / "weights.bin"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (_empty, "has no config.json"),
        (_config_of(json.dumps({"model_type": "sam"})), "'sam' is not SAM 3.*load_sam"),
        (_config_of("{not json"), "not a valid transformers config"),
        (_model_only, "loading Sam3Processor failed; save the processor"),
        (_corrupt_weights, "loading Sam3Model failed"),
        (_a_file, "pass the save_pretrained directory, not a file"),
    ],
)
def test_unusable_sources_are_named(
    sam3_dir: Path, tmp_path: Path, setup: Callable[[Path, Path], Path], message: str
) -> None:
    source = setup(sam3_dir, tmp_path)
    with pytest.raises(ValueError, match=message) as error:
        load_sam3(source, device="cpu")
    assert str(source) in str(error.value)


def test_transformers_without_sam3_names_the_version_and_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = types.SimpleNamespace(__version__="4.57.1", SamModel=object)
    monkeypatch.setitem(sys.modules, "transformers", old)
    with pytest.raises(ImportError, match=r"transformers>=5.0 \(installed: 4.57.1\).*\[sam3\]"):
        load_sam3("facebook/sam3", device="cpu")


def test_load_sam_points_a_sam3_directory_to_load_sam3(sam3_dir: Path) -> None:
    from composeseg import load_sam

    with pytest.raises(ValueError, match="load_sam3"):
        load_sam(sam3_dir, device="cpu")
