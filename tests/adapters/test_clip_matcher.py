"""ClipMatcher on tiny random CLIP and SigLIP models saved with save_pretrained.

Both use the demo word-level tokenizer (``build_tokenizer``); SigLIP's own tokenizer needs a
sentencepiece model, which cannot be built offline without the sentencepiece package, and the
matcher only reaches the tokenizer through ``AutoTokenizer``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from composeseg.adapters import ClipMatcher
from composeseg.train.clip import CLIP_MEAN, CLIP_STD, CROP_SIZE, demo_clip_config
from composeseg.train.clip_data import build_tokenizer

TEXTS = ["red square", "the blue ellipse", "a small green star"]
SIGLIP_SIZE = 32


def _save_clip(path: Path) -> Path:
    from transformers import CLIPImageProcessor, CLIPModel

    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    config = demo_clip_config(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id)
    CLIPModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    CLIPImageProcessor(  # as train_clip writes it
        size={"shortest_edge": CROP_SIZE},
        crop_size={"height": CROP_SIZE, "width": CROP_SIZE},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    ).save_pretrained(path)
    return path


def _save_siglip(path: Path) -> Path:
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    tokenizer = build_tokenizer(max_length=64)  # the matcher pads SigLIP texts to 64
    width = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = SiglipConfig(
        text_config=dict(
            **width,
            vocab_size=len(tokenizer),
            max_position_embeddings=64,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        vision_config=dict(**width, image_size=SIGLIP_SIZE, patch_size=8),
    )
    torch.manual_seed(0)
    SiglipModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    SiglipImageProcessor(size={"height": SIGLIP_SIZE, "width": SIGLIP_SIZE}).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {
        "clip": _save_clip(tmp_path_factory.mktemp("tiny_clip")),
        "siglip": _save_siglip(tmp_path_factory.mktemp("tiny_siglip")),
    }


@pytest.fixture(scope="module")
def matchers(model_dirs: dict[str, Path]) -> dict[str, ClipMatcher]:
    return {name: ClipMatcher(path, device="cpu") for name, path in model_dirs.items()}


def _scene(seed: int = 0, background: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A noisy ``(60, 80, 3)`` image (its noise drawn from ``background``) and 4 masks."""
    image = np.random.default_rng(background).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    image[10:30, 10:30] = (220, 30, 30)
    image[30:50, 40:70] = (30, 30, 220)
    masks = np.zeros((4, 60, 80), bool)
    masks[0, 10:30, 10:30] = True
    masks[1, 30:50, 40:70] = True
    masks[2, 5:10, 60:75] = True
    masks[3, 12:28, 12:28] = True
    return image, masks


@contextmanager
def _calls(module: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """The first positional-or-keyword tensor of each forward of ``module`` in the block."""
    seen: list[torch.Tensor] = []

    def hook(_: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        seen.append(tensors[0].detach().clone())

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_similarities_shape_range_and_model(matchers: dict[str, ClipMatcher], kind: str) -> None:
    matcher = matchers[kind]
    expected_type = {"clip": "CLIPModel", "siglip": "SiglipModel"}[kind]
    assert type(matcher.model).__name__ == expected_type
    assert matcher.image_size == {"clip": CROP_SIZE, "siglip": SIGLIP_SIZE}[kind]
    image, masks = _scene()
    sim = matcher(image, masks, TEXTS)
    assert sim.shape == (4, 3) and sim.dtype == np.float32
    assert np.isfinite(sim).all() and (np.abs(sim) <= 1 + 1e-6).all()
    assert np.ptp(sim) > 0  # depends on the mask and the text
    one = matcher(image, masks, "red square")  # a single string: one column
    np.testing.assert_allclose(one[:, 0], sim[:, 0], atol=1e-6)
    text = matcher.text_embeddings(TEXTS)
    crops = matcher.image_embeddings(image, masks)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(crops, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(crops @ text.T, sim, atol=1e-6)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_no_masks_gives_an_empty_matrix(matchers: dict[str, ClipMatcher], kind: str) -> None:
    image, _ = _scene()
    sim = matchers[kind](image, np.zeros((0, 60, 80), bool), TEXTS)
    assert sim.shape == (0, 3) and sim.dtype == np.float32
    width = matchers[kind].text_embeddings(TEXTS).shape[1]
    assert matchers[kind].image_embeddings(image, np.zeros((0, 60, 80), bool)).shape == (0, width)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_text_embeddings_are_cached(model_dirs: dict[str, Path], kind: str) -> None:
    matcher = ClipMatcher(model_dirs[kind], device="cpu")
    image, masks = _scene()
    with _calls(matcher.model.text_model) as text_passes:
        first = matcher(image, masks, TEXTS)
        assert len(text_passes) == 1 and text_passes[0].shape[0] == 3  # one batch of 3 texts
        again = matcher(image, masks, list(reversed(TEXTS)))
        assert len(text_passes) == 1  # all cached
        matcher(image, masks, [TEXTS[0], "yellow", "yellow"])
        assert len(text_passes) == 2 and text_passes[1].shape[0] == 1  # only the new one, once
    np.testing.assert_array_equal(again, first[:, ::-1])


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_batch_size_does_not_change_results(
    model_dirs: dict[str, Path], matchers: dict[str, ClipMatcher], kind: str
) -> None:
    image, masks = _scene()
    small = ClipMatcher(model_dirs[kind], device="cpu", batch_size=3)
    with _calls(small.model.vision_model) as passes:
        batched = small(image, masks, TEXTS)
    assert [len(p) for p in passes] == [3, 1]
    np.testing.assert_allclose(batched, matchers[kind](image, masks, TEXTS), atol=1e-5)


def test_blanking_changes_what_the_model_sees(model_dirs: dict[str, Path]) -> None:
    blank = ClipMatcher(model_dirs["clip"], device="cpu")
    raw = ClipMatcher(model_dirs["clip"], device="cpu", blank_background=False)
    assert blank.fill == tuple(round(255 * m) for m in CLIP_MEAN)
    image, masks = _scene(background=0)
    other, _ = _scene(background=1)  # the same objects on another noise background
    with _calls(blank.model.vision_model) as seen:
        a = blank.image_embeddings(image, masks[:2])
    # the mean-colour fill is zero after normalisation: the margin around the object
    assert seen[0][:, :, :4, :4].abs().max() < 0.01
    np.testing.assert_array_equal(blank.image_embeddings(other, masks[:2]), a)
    with _calls(raw.model.vision_model) as seen_raw:
        b = raw.image_embeddings(image, masks[:2])
    assert seen_raw[0][:, :, :4, :4].abs().max() > 0.5  # the noise shows
    assert not np.allclose(raw.image_embeddings(other, masks[:2]), b, atol=1e-4)
    assert not np.allclose(a, b, atol=1e-4)


def test_image_forms_and_boxes(matchers: dict[str, ClipMatcher], tmp_path: Path) -> None:
    matcher = matchers["clip"]
    image, masks = _scene()
    Image.fromarray(image).save(tmp_path / "scene.png")
    by_array = matcher(image, masks, TEXTS)
    np.testing.assert_allclose(matcher(tmp_path / "scene.png", masks, TEXTS), by_array, atol=1e-6)
    np.testing.assert_allclose(matcher(Image.fromarray(image), masks, TEXTS), by_array, atol=1e-6)
    tight = np.array([[10, 10, 30, 30], [40, 30, 70, 50], [60, 5, 75, 10], [12, 12, 28, 28]])
    np.testing.assert_allclose(matcher(image, masks, TEXTS, boxes=tight), by_array, atol=1e-6)
    wide = tight.copy()
    wide[0] = [0, 0, 80, 60]
    moved = matcher(image, masks, TEXTS, boxes=wide)
    assert not np.allclose(moved[0], by_array[0], atol=1e-5)
    np.testing.assert_allclose(moved[1:], by_array[1:], atol=1e-6)


@pytest.mark.parametrize(
    ("texts", "message"),
    [([], "texts is empty"), ([" "], r"texts\[0\] is blank"), (["red", ""], r"texts\[1\]")],
)
def test_bad_texts(matchers: dict[str, ClipMatcher], texts: list[str], message: str) -> None:
    image, masks = _scene()
    with pytest.raises(ValueError, match=message):
        matchers["clip"](image, masks, texts)
    with pytest.raises(ValueError, match=message):
        matchers["clip"].text_embeddings(texts)


def test_bad_masks(matchers: dict[str, ClipMatcher]) -> None:
    image, masks = _scene()
    with pytest.raises(ValueError, match="masks must be"):
        matchers["clip"](image, masks[:, :30], TEXTS)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"expand": 0.9}, "expand must be >= 1"), ({"batch_size": 0}, "batch_size must be >= 1")],
)
def test_bad_arguments(model_dirs: dict[str, Path], kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClipMatcher(model_dirs["clip"], device="cpu", **kwargs)


def test_a_non_clip_model_is_refused_by_name(
    model_dirs: dict[str, Path], tiny_sam_dir: Path, tmp_path: Path
) -> None:
    # a SAM directory: no tokenizer, no CLIP processor
    with pytest.raises(ValueError, match=str(tiny_sam_dir)):
        ClipMatcher(tiny_sam_dir, device="cpu")
    # SAM weights next to a valid tokenizer and image processor: loads, but is no CLIP
    mixed = tmp_path / "sam_with_tokenizer"
    shutil.copytree(model_dirs["clip"], mixed)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_sam_dir / name, mixed / name)
    with pytest.raises(ValueError, match=f"{mixed} is a SamModel, not a CLIP-style model"):
        ClipMatcher(mixed, device="cpu")
    with pytest.raises(ValueError, match="could not load"):
        ClipMatcher(tmp_path / "missing", device="cpu")
