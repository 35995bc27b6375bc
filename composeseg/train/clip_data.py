"""Data for the demo text model: a word-level tokenizer and object crops paired with captions.

Positives are the crops :class:`composeseg.adapters.ClipMatcher` will see at inference
(:func:`composeseg.crops.mask_crops`: expanded square box, background blanked or not), cut
around generated objects with slightly wrong masks, as SAM's masks are. Each is captioned by
one of several phrasings ("the green square", "a small red star", "blue", "ring", ...).
Negatives are crops that no caption should pick: background patches, a part of an object, and
two objects together; they only ever appear as wrong answers to a text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from composeseg.crops import mask_crops
from composeseg.synthetic import COLORS, KINDS, SceneConfig, generate_scene
from composeseg.synthetic.scenes import SIZE_NAMES

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")
FILLER_WORDS = ("a", "an", "the", "one", "of", "object", "shape", "photo", "thing")
SYNONYMS = {"grey": "gray", "circle": "ellipse", "oval": "ellipse", "rectangular": "rectangle"}
MAX_TEXT_TOKENS = 16

TRAIN_SEED_BASE = 500_000_000
"""Scenes ``TRAIN_SEED_BASE + i`` train the demo text model; like the SAM trainer's, they lie
below ``EVALUATION_SEED_START`` (1e9), so every evaluation scene is unseen by both models."""
VAL_SEED_BASE = 950_000_000


def vocabulary() -> list[str]:
    """Every word the demo tokenizer knows, special tokens first (their ids are 0..3)."""
    words = [*FILLER_WORDS, *SIZE_NAMES, *COLORS, *KINDS, *SYNONYMS]
    return [*SPECIAL_TOKENS, *dict.fromkeys(words)]


def build_tokenizer(max_length: int = MAX_TEXT_TOKENS) -> Any:
    """A lower-casing word-level ``PreTrainedTokenizerFast`` (``tokenizers`` library).

    Texts become ``[BOS] words... [EOS]``, unknown words ``[UNK]``, punctuation is dropped.
    """
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {word: index for index, word in enumerate(vocabulary())}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation(behavior="removed")]
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]",
        special_tokens=[("[BOS]", vocab["[BOS]"]), ("[EOS]", vocab["[EOS]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="[BOS]",
        eos_token="[EOS]",
        unk_token="[UNK]",
        pad_token="[PAD]",
        model_max_length=max_length,
    )


def caption(color: str, kind: str, size: str, rng: np.random.Generator) -> str:
    """One random phrasing naming an object; mostly colour + kind, sometimes one attribute."""
    shown_kind = kind
    if kind == "ellipse" and rng.random() < 0.2:
        shown_kind = "circle"
    shown_color = "grey" if color == "gray" and rng.random() < 0.3 else color
    choice = rng.random()
    if choice < 0.1:
        words = [shown_color]
    elif choice < 0.2:
        words = [shown_kind]
    elif choice < 0.35:
        words = [size, shown_color, shown_kind]
    else:
        words = [shown_color, shown_kind]
    article = rng.choice(["", "the", "a", "one"], p=[0.4, 0.3, 0.2, 0.1])
    return " ".join([str(article), *words]).strip()


def caption_classes(text_words: list[str]) -> tuple[str | None, str | None]:
    """The ``(color, kind)`` a caption constrains (None where it leaves one open)."""
    words = [SYNONYMS.get(w, w) for w in text_words]
    color = next((w for w in words if w in COLORS), None)
    kind = next((w for w in words if w in KINDS), None)
    return color, kind


def describes(texts: list[str], color: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """``(T, N) bool``: text ``t`` truly describes object ``n``.

    Args:
        texts: captions such as "the green square" or "blue" (see :func:`caption`).
        color, kind: ``(N,) int64`` indices into ``COLORS`` / ``KINDS``; -1 marks a negative
            (background, part, pair) that no text describes.
    """
    rows = []
    for text in texts:
        want_color, want_kind = caption_classes(text.split())
        ok = color >= 0
        if want_color is not None:
            ok &= color == list(COLORS).index(want_color)
        if want_kind is not None:
            ok &= kind == KINDS.index(want_kind)
        rows.append(ok)
    return np.stack(rows) if rows else np.zeros((0, len(color)), bool)


@dataclass
class ClipExamples:
    """Crops and their labels.

    Attributes:
        crops: ``(N, S, S, 3) uint8``.
        color: ``(N,) int64`` index into ``COLORS``; -1 for negatives.
        kind: ``(N,) int64`` index into ``KINDS``; -1 for negatives.
        size: ``(N,)`` size words ("" for negatives).
    """

    crops: np.ndarray
    color: np.ndarray
    kind: np.ndarray
    size: np.ndarray

    def save(self, path: Path) -> None:
        np.savez(path, crops=self.crops, color=self.color, kind=self.kind, size=self.size)

    @classmethod
    def load(cls, path: Path) -> ClipExamples:
        data = np.load(path)
        return cls(data["crops"], data["color"], data["kind"], data["size"])


def _jitter(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # SAM's masks are a few pixels off at the boundary; train on the same imperfection.
    radius = int(rng.integers(0, 3))
    if radius == 0:
        return mask
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    op = cv2.dilate if rng.random() < 0.5 else cv2.erode
    out = op(mask.astype(np.uint8), kernel).astype(bool)
    return out if out.any() else mask


def _negative_masks(masks: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    h, w = masks.shape[1:]
    union = masks.any(0)
    out = []
    # a background patch: a random box minus every object
    x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
    x1, y1 = x0 + rng.integers(w // 8, w // 2), y0 + rng.integers(h // 8, h // 2)
    patch = np.zeros((h, w), bool)
    patch[y0:y1, x0:x1] = True
    patch &= ~union
    if patch.sum() > 0.3 * (x1 - x0) * (y1 - y0):
        out.append(patch)
    # half an object, cut through its centre at a random angle
    i = int(rng.integers(len(masks)))
    ys, xs = np.nonzero(masks[i])
    angle = rng.uniform(0, np.pi)
    side = (xs - xs.mean()) * np.cos(angle) + (ys - ys.mean()) * np.sin(angle) > 0
    if 0.25 < side.mean() < 0.75:
        part = np.zeros((h, w), bool)
        part[ys[side], xs[side]] = True
        out.append(part)
    # two objects as one
    if len(masks) >= 2:
        a, b = rng.choice(len(masks), 2, replace=False)
        out.append(masks[a] | masks[b])
    return out


def generate_examples(
    seeds: range, crop_size: int, *, negatives: bool = True, rng_seed: int = 0
) -> ClipExamples:
    """Crops of every object of the scenes ``seeds`` (default ``SceneConfig``), plus negatives.

    Expansion is drawn from [1, 2], the background blanked in 3 of 4 crops, masks jittered.
    """
    rng = np.random.default_rng(rng_seed)
    crops, colors, kinds, sizes = [], [], [], []
    for seed in seeds:
        scene = generate_scene(seed, SceneConfig())
        if not scene.instances:
            continue
        masks = scene.masks()
        jittered = np.stack([_jitter(m, rng) for m in masks])
        extra = _negative_masks(masks, rng) if negatives else []
        all_masks = np.concatenate([jittered, np.array(extra, bool).reshape(-1, *masks.shape[1:])])
        blank = rng.random() < 0.75
        expand = rng.uniform(1.0, 2.0, len(all_masks))
        crops.append(
            mask_crops(
                scene.image, all_masks, size=crop_size, expand=expand, blank_background=blank
            )
        )
        for inst in scene.instances:
            colors.append(list(COLORS).index(inst.color))
            kinds.append(KINDS.index(inst.kind))
            sizes.append(inst.size)
        colors += [-1] * len(extra)
        kinds += [-1] * len(extra)
        sizes += [""] * len(extra)
    return ClipExamples(
        crops=np.concatenate(crops),
        color=np.asarray(colors, np.int64),
        kind=np.asarray(kinds, np.int64),
        size=np.asarray(sizes),
    )
