"""SAM-HQ and SAM 2 behind ``load_sam``: same interface as SAM, checked against transformers.

Each family is a tiny random model written with ``save_pretrained`` and loaded back. The tiny
decoders produce logits of order 1e-5, so every logit comparison below is also made relative
to the logits' own scale, and checked to be able to fail (different objects differ by far more
than the tolerance).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from composeseg import Prompts, Sam, load_sam
from composeseg.backends.sam2 import Sam2Backend
from composeseg.backends.sam_hq import SamHQBackend
from composeseg.tiny import build_model, tiny_sam2_config, tiny_sam_hq_config
from composeseg.transforms import preprocess

H, W = 90, 140
S = 128  # tiny model input side
M = 32  # low-res mask side = S / 4

BOXES = [[10, 10, 60, 50], [30, 20, 100, 60], [0, 0, 140, 90], [70, 40, 130, 85], [5, 50, 45, 88]]
POINTS = [
    [[30, 30], [50, 45]],
    [[60, 40], [0, 0]],
    [[100, 60], [120, 70]],
    [[90, 60], [0, 0]],
    [[20, 70], [40, 80]],
]
LABELS = [[1, 0], [1, -1], [1, 1], [1, -1], [0, 1]]  # -1: padding slot


@dataclass(frozen=True)
class Subject:
    family: str
    path: Path
    model: Any  # the transformers model as built, before save/load: the reference
    sam: Sam  # loaded with decode_batch_size=2, so 5 objects take 3 decoder calls
    input_size: tuple[int, int]  # (h, w) of the 90 x 140 image in the model frame


@pytest.fixture(scope="module", params=["sam_hq", "sam2"])
def subject(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Subject:
    family = request.param
    config = tiny_sam_hq_config() if family == "sam_hq" else tiny_sam2_config()
    model: Any = build_model(config, seed=0)
    path = tmp_path_factory.mktemp(family)
    model.save_pretrained(path)
    sam = load_sam(path, device="cpu", decode_batch_size=2)
    # SAM-HQ pads the longest side (140 -> 128, 90 -> 82); SAM 2 stretches to 128 x 128
    input_size = (82, 128) if family == "sam_hq" else (128, 128)
    return Subject(family, path, model, sam, input_size)


def _prompts(kind: str, first: np.ndarray | None = None) -> Prompts:
    fields = {
        "boxes": {"boxes": BOXES},
        "points": {"points": POINTS, "point_labels": LABELS},
        "boxes+points": {"boxes": BOXES, "points": POINTS, "point_labels": LABELS},
        "boxes+mask": {"boxes": BOXES, "mask_input": first},
    }[kind]
    return Prompts(**fields)  # type: ignore[arg-type]


def _to_frame(xy: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """Original-image pixels -> model-frame pixels, written out independently of transforms."""
    return (xy * np.array([input_size[1] / W, input_size[0] / H])).astype(np.float32)


def test_loads_as_its_family(subject: Subject) -> None:
    sam = subject.sam
    expected = {"sam_hq": (SamHQBackend, "longest"), "sam2": (Sam2Backend, "square")}
    backend_class, resize_mode = expected[subject.family]
    assert sam.family == subject.family and isinstance(sam.backend, backend_class)
    assert sam.backend.resize_mode == resize_mode
    assert (sam.image_size, sam.backend.mask_size) == (S, M)
    assert subject.family in repr(sam)


def test_embedding_keeps_what_the_decoder_needs(subject: Subject, rgb_image: np.ndarray) -> None:
    embedding = subject.sam.embed(rgb_image)
    shapes = [tuple(f.shape) for f in embedding.features]
    expected = {
        # image embedding, then the first global ViT block (channels last), for the HQ token
        "sam_hq": [(1, 32, 8, 8), (1, 8, 8, 32)],
        # image embedding, then the two finer FPN levels (projected by conv_s0 / conv_s1)
        "sam2": [(1, 32, 8, 8), (1, 4, 32, 32), (1, 8, 16, 16)],
    }[subject.family]
    assert shapes == expected
    assert embedding.input_size == subject.input_size
    assert embedding.original_size == (H, W)


@pytest.mark.parametrize(
    ("kwargs", "n", "k"),
    [
        ({"boxes": [10, 10, 60, 50]}, 1, 1),
        ({"points": [[30, 40], [100, 20]], "point_labels": [1, 0]}, 1, 1),
        ({"boxes": [10, 10, 60, 50], "points": [[30, 40], [50, 20]], "point_labels": [1, 0]}, 1, 1),
        ({"boxes": [10, 10, 60, 50], "multimask": True}, 1, 3),
        ({"points": [[30, 40]], "point_labels": [1], "multimask": True}, 1, 3),
        ({"boxes": BOXES[:3], "multimask": True}, 3, 3),
    ],
)
def test_prompt_kinds_give_documented_outputs(
    subject: Subject, rgb_image: np.ndarray, kwargs: dict, n: int, k: int
) -> None:
    sam = subject.sam
    embedding = sam.embed(rgb_image)
    prediction = sam.segment(embedding, **kwargs)
    assert prediction.masks.shape == (n, k, H, W) and prediction.masks.dtype == bool
    assert prediction.scores.shape == (n, k) and prediction.scores.dtype == np.float32
    assert prediction.logits.shape == (n, k, M, M) and prediction.logits.dtype == np.float32
    assert np.isfinite(prediction.logits).all() and np.isfinite(prediction.scores).all()
    again = sam.masks_from_logits(torch.from_numpy(prediction.logits), embedding)
    np.testing.assert_array_equal(again, prediction.masks)


def test_mask_input_refines(subject: Subject, rgb_image: np.ndarray) -> None:
    sam = subject.sam
    embedding = sam.embed(rgb_image)
    first = sam.segment(embedding, boxes=BOXES[0], multimask=True)
    refined = sam.segment(embedding, boxes=BOXES[0], mask_input=first.logits[:, 0])
    unrefined = sam.segment(embedding, boxes=BOXES[0])
    assert refined.logits.shape == (1, 1, M, M) and refined.masks.shape == (1, 1, H, W)
    scale = np.abs(unrefined.logits).max()
    assert np.abs(refined.logits - unrefined.logits).max() > 1e-2 * scale  # the mask is used


@pytest.mark.parametrize(
    ("kind", "multimask"),
    [("boxes", False), ("points", True), ("boxes+points", False), ("boxes+mask", True)],
)
def test_objects_decode_independently(
    subject: Subject, rgb_image: np.ndarray, kind: str, multimask: bool
) -> None:
    """Five objects in chunks of 2 give each object exactly what it gets alone."""
    sam = subject.sam
    embedding = sam.embed(rgb_image)
    first = sam.segment(embedding, boxes=BOXES).logits[:, 0]
    prompts = _prompts(kind, first)
    batch = sam.segment(embedding, prompts, multimask=multimask)
    k = 3 if multimask else 1
    assert batch.logits.shape == (5, k, M, M) and batch.masks.shape == (5, k, H, W)
    alone = np.concatenate(
        [sam.segment(embedding, prompts[i], multimask=multimask).logits for i in range(5)]
    )
    scale = np.abs(alone).max()
    difference = np.abs(batch.logits - alone).max()
    assert difference < min(1e-4, 1e-3 * scale)
    # objects really differ: mixing them up would exceed the tolerance by orders of magnitude
    assert np.abs(alone[1:] - alone[:-1]).max() > 0.1 * scale
    again = sam.masks_from_logits(torch.from_numpy(batch.logits), embedding)
    np.testing.assert_array_equal(again, batch.masks)


def _reference(subject: Subject, pixels: torch.Tensor, **prompts: torch.Tensor) -> tuple:
    extra = {"hq_token_only": False} if subject.family == "sam_hq" else {}
    with torch.no_grad():
        output = subject.model(pixel_values=pixels, multimask_output=False, **prompts, **extra)
    return output.pred_masks[0].numpy(), output.iou_scores[0].numpy()


@pytest.mark.parametrize("kind", ["box", "points"])
def test_matches_transformers_called_directly(
    subject: Subject, rgb_image: np.ndarray, kind: str
) -> None:
    mode = subject.sam.backend.resize_mode
    pixels, input_size = preprocess(rgb_image, S, mode)
    assert input_size == subject.input_size
    if kind == "box":
        box = np.array([[30, 20, 100, 60]], np.float32)
        corners = _to_frame(box.reshape(2, 2), input_size).reshape(1, 1, 4)
        logits, scores = _reference(subject, pixels, input_boxes=torch.from_numpy(corners))
        prediction = subject.sam.segment(rgb_image, boxes=box)
    else:
        points = np.array([[30, 40], [100, 20]], np.float32)
        labels = np.array([1, 0])
        logits, scores = _reference(
            subject,
            pixels,
            input_points=torch.from_numpy(_to_frame(points, input_size))[None, None],
            input_labels=torch.from_numpy(labels)[None, None],
        )
        prediction = subject.sam.segment(rgb_image, points=points, point_labels=labels)
    scale = np.abs(logits).max()
    assert np.abs(prediction.logits - logits).max() < min(1e-4, 1e-3 * scale)
    np.testing.assert_allclose(prediction.scores, scores, atol=1e-5)


@pytest.mark.parametrize("subject", ["sam_hq"], indirect=True)
def test_hq_token_only_switches_single_mask_output(subject: Subject, rgb_image: np.ndarray) -> None:
    default = subject.sam
    hq_only = Sam(SamHQBackend(default.model, hq_token_only=True), device=torch.device("cpu"))
    pixels, input_size = preprocess(rgb_image, S, "longest")
    box = np.array([[30, 20, 100, 60]], np.float32)
    corners = _to_frame(box.reshape(2, 2), input_size).reshape(1, 1, 4)
    with torch.no_grad():
        reference = subject.model(
            pixel_values=pixels,
            input_boxes=torch.from_numpy(corners),
            multimask_output=False,
            hq_token_only=True,
        ).pred_masks[0]
    single = hq_only.segment(rgb_image, boxes=box)
    scale = np.abs(reference.numpy()).max()
    assert np.abs(single.logits - reference.numpy()).max() < min(1e-4, 1e-3 * scale)
    fused = default.segment(rgb_image, boxes=box)
    assert np.abs(single.logits - fused.logits).max() > 0.1 * scale
    # the HQ token makes one mask: multimask output is the same fused candidates either way
    multi_hq = hq_only.segment(rgb_image, boxes=box, multimask=True)
    multi_default = default.segment(rgb_image, boxes=box, multimask=True)
    assert multi_hq.logits.shape == (1, 3, M, M)
    np.testing.assert_array_equal(multi_hq.logits, multi_default.logits)


@pytest.mark.parametrize("shape", [(90, 140, 3), (300, 200, 3)])
def test_sam2_pixels_match_transformers_processor(shape: tuple[int, int, int]) -> None:
    """Same stretch, filter and normalisation as ``Sam2ImageProcessor``, to one grey level.

    The processor resizes uint8 tensors with torchvision's antialiased bilinear, we use PIL's:
    the same filter, rounded differently (up to a fifth of the pixels one level apart when
    downscaling). Nearest-neighbour resizing would be ~20x further off on average, a wrong
    mean/std or padding far more.
    """
    from transformers import Sam2ImageProcessor

    yy, xx = np.mgrid[: shape[0], : shape[1]]
    wave = np.sin(xx / 7.0) * np.cos(yy / 11.0)
    noise = np.random.default_rng(1).normal(0, 8, shape)
    image = np.clip(127 + 100 * wave[..., None] * [1, 0.5, -0.8] + noise, 0, 255).astype(np.uint8)
    processor = Sam2ImageProcessor(size={"height": S, "width": S})
    expected = processor(images=image, return_tensors="pt")["pixel_values"]
    pixels, input_size = preprocess(image, S, "square")
    assert input_size == (S, S) and pixels.shape == expected.shape
    difference = (pixels - expected).abs()
    one_level = 1 / (255 * 0.224)  # one grey level after the smallest ImageNet std
    assert difference.max() < one_level + 1e-4
    assert difference.mean() < 0.3 * one_level


def test_bfloat16_returns_float32(subject: Subject, rgb_image: np.ndarray) -> None:
    """bf16 smoke test: shapes and dtypes only (tiny random logits are ~1e-5, so bf16 flips
    many near-zero pixels of SAM 2's masks; the agreement check runs on SAM in
    test_sam_batching.py)."""
    sam = load_sam(subject.path, device="cpu", dtype=torch.bfloat16)
    embedding = sam.embed(rgb_image)
    assert embedding.features[0].dtype == torch.bfloat16
    first = sam.segment(embedding, boxes=BOXES, multimask=True)
    prediction = sam.segment(
        embedding, _prompts("boxes+points").replace(mask_input=first.logits[:, 0])
    )
    assert prediction.logits.dtype == np.float32 and prediction.scores.dtype == np.float32
    assert prediction.masks.shape == (5, 1, H, W) and first.logits.shape == (5, 3, M, M)
    assert np.isfinite(prediction.logits).all()


def test_sam2_video_checkpoint_loads_as_image_model(tmp_path: Path, rgb_image: np.ndarray) -> None:
    """Released SAM 2.1 checkpoints are ``sam2_video``: they load into ``Sam2Model`` whole."""
    from transformers import Sam2VideoConfig, Sam2VideoModel

    parts = tiny_sam2_config().to_dict()
    config = Sam2VideoConfig(
        **{k: parts[k] for k in ("vision_config", "prompt_encoder_config", "mask_decoder_config")}
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        video_model = Sam2VideoModel(config).eval()
    video_model.save_pretrained(tmp_path)
    sam = load_sam(tmp_path, device="cpu")
    assert sam.family == "sam2" and type(sam.model).__name__ == "Sam2Model"
    saved, loaded = video_model.state_dict(), sam.model.state_dict()
    assert set(loaded) <= set(saved)
    assert all(torch.equal(loaded[k], saved[k]) for k in loaded)  # nothing left random
    assert sam.segment(rgb_image, boxes=BOXES[0]).logits.shape == (1, 1, M, M)
