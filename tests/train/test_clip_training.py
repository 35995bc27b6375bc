"""The demo text model's data (tokenizer, captions, crops) and a few-step training run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import composeseg.train.clip as clip_training
from composeseg.adapters import ClipMatcher
from composeseg.synthetic import COLORS, KINDS, SceneConfig, generate_scene
from composeseg.synthetic.scenes import SIZE_NAMES
from composeseg.train.clip import contrastive_loss, demo_clip_config, retrieval_accuracy
from composeseg.train.clip_data import (
    MAX_TEXT_TOKENS,
    SPECIAL_TOKENS,
    TRAIN_SEED_BASE,
    ClipExamples,
    build_tokenizer,
    caption,
    caption_classes,
    generate_examples,
    vocabulary,
)

# ---------------------------------------------------------------- tokenizer


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    return build_tokenizer()


def _tokens(tokenizer, text: str) -> list[str]:  # type: ignore[no-untyped-def]
    return tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"])


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("red square", ["red", "square"]),
        ("The Red SQUARE", ["the", "red", "square"]),  # lower-cased
        ("a grey circle", ["a", "grey", "circle"]),  # synonyms are words of their own
        ("red, square!", ["red", "square"]),  # punctuation dropped
        ("a purple zebra", ["a", "purple", "[UNK]"]),
        ("", []),
    ],
)
def test_tokenizer(tokenizer, text: str, tokens: list[str]) -> None:  # type: ignore[no-untyped-def]
    assert _tokens(tokenizer, text) == ["[BOS]", *tokens, "[EOS]"]


def test_tokenizer_ids_padding_and_length(tokenizer) -> None:  # type: ignore[no-untyped-def]
    assert [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert tokenizer.pad_token_id == 0 and tokenizer.unk_token_id == 1
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id) == (2, 3)
    assert len(tokenizer) == len(vocabulary()) == len(set(vocabulary()))
    batch = tokenizer(["red", "the small blue star"], padding=True, return_tensors="pt")
    assert batch["input_ids"].shape == (2, 6)
    assert batch["input_ids"][0].tolist() == [2, tokenizer.convert_tokens_to_ids("red"), 3, 0, 0, 0]
    assert batch["attention_mask"][0].tolist() == [1, 1, 1, 0, 0, 0]
    long = tokenizer(" ".join(["red"] * 40), truncation=True)["input_ids"]
    assert len(long) == MAX_TEXT_TOKENS
    assert tokenizer.decode(tokenizer("The Blue Ring")["input_ids"], skip_special_tokens=True) == (
        "the blue ring"
    )


def test_tokenizer_save_and_reload(tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    for text in ("The grey Circle", "unknown words here", "small red star"):
        assert again(text)["input_ids"] == tokenizer(text)["input_ids"]


# ---------------------------------------------------------------- captions


def test_every_caption_is_known_words_naming_its_object(tokenizer) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    seen_forms = set()
    for _ in range(300):
        color = str(rng.choice(list(COLORS)))
        kind = str(rng.choice(KINDS))
        size = str(rng.choice(SIZE_NAMES))
        text = caption(color, kind, size, rng)
        assert "[UNK]" not in _tokens(tokenizer, text), text
        want_color, want_kind = caption_classes(text.split())
        assert want_color in (None, color) and want_kind in (None, kind), text
        assert (want_color, want_kind) != (None, None), text  # names at least one attribute
        seen_forms.add((want_color is None, want_kind is None))
    assert seen_forms == {(False, False), (True, False), (False, True)}  # all three phrasings


@pytest.mark.parametrize(
    ("text", "classes"),
    [
        ("the red square", ("red", "square")),
        ("grey circle", ("gray", "ellipse")),
        ("an oval", (None, "ellipse")),
        ("small blue", ("blue", None)),
        ("a photo of a thing", (None, None)),
    ],
)
def test_caption_classes(text: str, classes: tuple[str | None, str | None]) -> None:
    assert caption_classes(text.split()) == classes


# ---------------------------------------------------------------- loss


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)


def test_contrastive_loss_prefers_matched_pairs() -> None:
    torch.manual_seed(0)
    image = _unit(torch.randn(6, 16))
    text = _unit(image + 0.1 * torch.randn(6, 16))  # text i describes image i
    match = torch.eye(6, dtype=torch.bool)
    scale = torch.tensor(10.0)
    matched = contrastive_loss(image, text, match, scale)
    shuffled = contrastive_loss(image, text[torch.tensor([1, 2, 3, 4, 5, 0])], match, scale)
    assert matched.ndim == 0 and torch.isfinite(matched)
    assert matched < shuffled - 1.0


def test_contrastive_loss_multi_positive_exact_value() -> None:
    # one text, two images it describes, equal logits: the text side is log 2 (uniform over
    # two positives is the best it can do) and the image side is 0 (one text each)
    image = _unit(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    text = _unit(torch.tensor([[1.0, 0.0]]))
    loss = contrastive_loss(image, text, torch.tensor([[True, True]]), torch.tensor(5.0))
    assert loss.item() == pytest.approx(math.log(2) / 2, abs=1e-6)


def test_contrastive_loss_counts_every_positive_and_ignores_unmatched_images() -> None:
    torch.manual_seed(1)
    blue, other, negative = (_unit(torch.randn(16)) for _ in range(3))
    text = torch.stack([blue, other])
    # "blue" describes images 0 and 1, "other" image 2; image 3 is a negative crop
    match = torch.tensor([[True, True, False, False], [False, False, True, False]])
    scale = torch.tensor(20.0)
    agree = contrastive_loss(torch.stack([blue, blue, other, negative]), text, match, scale)
    # the second positive looks like the other text: the loss sees it
    wrong = contrastive_loss(torch.stack([blue, other, other, negative]), text, match, scale)
    assert agree < wrong - 1.0
    # image order does not matter as long as the match matrix follows it
    order = torch.tensor([3, 1, 0, 2])
    image = torch.stack([blue, blue, other, negative])
    permuted = contrastive_loss(image[order], text, match[:, order], scale)
    assert permuted.item() == pytest.approx(agree.item(), abs=1e-5)
    grads = torch.autograd.grad(contrastive_loss(image.requires_grad_(), text, match, scale), image)
    assert grads[0][3].abs().sum() > 0  # a negative crop is pushed away from the texts


def test_generate_examples_centres_the_objects() -> None:
    """Blanked positives are mask_crops of the objects: the margin is fill or background."""
    seeds = range(TRAIN_SEED_BASE, TRAIN_SEED_BASE + 2)
    examples = generate_examples(seeds, 64, negatives=False, rng_seed=1)
    crops = examples.crops.astype(int)
    # expansion >= 1 keeps the whole object; the centre differs from the corner colour
    corners = crops[:, [0, 0, -1, -1], [0, -1, 0, -1]]  # (N, 4, 3)
    centre = crops[:, 24:40, 24:40].reshape(len(crops), -1, 3)
    differs = np.abs(centre[:, :, None] - corners[:, None]).sum(-1).min(-1).max(-1) > 60
    assert differs.mean() >= 0.8


# ---------------------------------------------------------------- examples


def test_generate_examples(tmp_path: Path) -> None:
    seeds = range(TRAIN_SEED_BASE, TRAIN_SEED_BASE + 3)
    examples = generate_examples(seeds, 32, rng_seed=0)
    n = len(examples.crops)
    assert examples.crops.shape == (n, 32, 32, 3) and examples.crops.dtype == np.uint8
    assert examples.color.shape == examples.kind.shape == examples.size.shape == (n,)
    positive = examples.color >= 0
    objects = sum(len(generate_scene(s, SceneConfig()).instances) for s in seeds)
    assert positive.sum() == objects
    assert (~positive).sum() >= 3  # at least the object pair of each scene
    np.testing.assert_array_equal(examples.kind >= 0, positive)
    assert set(examples.size[positive]) <= set(SIZE_NAMES)
    assert set(examples.size[~positive]) == {""}
    assert examples.color.max() < len(COLORS) and examples.kind.max() < len(KINDS)
    # the same seeds give the same examples; without negatives, only the objects
    again = generate_examples(seeds, 32, rng_seed=0)
    np.testing.assert_array_equal(again.crops, examples.crops)
    only = generate_examples(seeds, 32, negatives=False, rng_seed=0)
    assert len(only.crops) == objects and (only.color >= 0).all()
    examples.save(tmp_path / "examples.npz")
    loaded = ClipExamples.load(tmp_path / "examples.npz")
    np.testing.assert_array_equal(loaded.crops, examples.crops)
    np.testing.assert_array_equal(loaded.size, examples.size)


# ---------------------------------------------------------------- training


def test_retrieval_accuracy_is_a_share(tokenizer) -> None:  # type: ignore[no-untyped-def]
    from transformers import CLIPModel

    torch.manual_seed(0)
    model = CLIPModel(
        demo_clip_config(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id)
    ).eval()
    accuracy = retrieval_accuracy(model, tokenizer, scenes=2)
    assert 0.0 <= accuracy <= 1.0


def test_train_a_few_steps_and_load_with_the_matcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def quick_retrieval(model, tokenizer, scenes: int = 60) -> float:  # type: ignore[no-untyped-def]
        calls.append(scenes)
        return retrieval_accuracy(model, tokenizer, scenes=2)

    monkeypatch.setattr(clip_training, "retrieval_accuracy", quick_retrieval)
    out = tmp_path / "demo_clip"
    metrics = clip_training.train_clip(out, steps=3, scenes=4, batch=8, seed=0)
    assert calls == [60]  # evaluated once, at the last step
    assert metrics["step"] == 3 and math.isfinite(metrics["loss"])
    assert 0 <= metrics["retrieval"] <= 1
    history = json.loads((out / "history.json").read_text())
    assert history == [metrics]
    assert (out / "examples_4_0.npz").is_file()  # cached for the next run
    matcher = ClipMatcher(out / "model", device="cpu")
    assert type(matcher.model).__name__ == "CLIPModel" and matcher.image_size == 64
    assert matcher.fill == tuple(round(255 * m) for m in clip_training.CLIP_MEAN)
    scene = generate_scene(3, SceneConfig())
    sim = matcher(scene.image, scene.masks(), ["the red square", "blue"])
    assert sim.shape == (len(scene.instances), 2) and np.isfinite(sim).all()
    # the command line reuses the cached crops and retrains deterministically
    argv = ["-o", str(out), "--steps", "3", "--scenes", "4", "--batch", "8", "--threads", "1"]
    assert clip_training.main(argv) == 0
    assert json.loads((out / "history.json").read_text()) == [metrics]
