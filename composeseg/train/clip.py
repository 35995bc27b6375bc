"""Train the demo text model: a tiny transformers ``CLIPModel`` on generated object crops.

    python -m composeseg.train.clip -o OUTDIR [--steps 3000]

The output directory holds the model, its word-level tokenizer and a ``CLIPImageProcessor``,
so :class:`composeseg.adapters.ClipMatcher` (or ``transformers.AutoModel``) loads it like any
CLIP. The loss is CLIP's symmetric contrastive loss, with two changes a small, repetitive
vocabulary needs: every text counts all crops it truly describes as positives ("blue" describes
every blue object in the batch), and negative crops (background, object parts, object pairs)
are extra wrong answers on the text side. Everything random comes from ``--seed``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from composeseg.train.clip_data import (
    MAX_TEXT_TOKENS,
    TRAIN_SEED_BASE,
    VAL_SEED_BASE,
    ClipExamples,
    build_tokenizer,
    caption,
    describes,
    generate_examples,
)
from composeseg.train.script import script_main

CROP_SIZE = 64
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def demo_clip_config(vocab_size: int, eos_token_id: int, pad_token_id: int) -> Any:
    """The demo text model: a 4-layer ViT on 64 px crops and a 2-layer text transformer."""
    from transformers import CLIPConfig

    return CLIPConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": MAX_TEXT_TOKENS,
            "eos_token_id": eos_token_id,
            "bos_token_id": eos_token_id - 1,
            "pad_token_id": pad_token_id,
        },
        vision_config={
            "image_size": CROP_SIZE,
            "patch_size": 8,
            "hidden_size": 96,
            "intermediate_size": 192,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
        },
        projection_dim=64,
    )


def _pixels(crops: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _augment(crops: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Shapes keep their names under flips and right-angle turns.
    out = crops.copy()
    for i in range(len(out)):
        out[i] = np.rot90(out[i], int(rng.integers(4)))
        if rng.random() < 0.5:
            out[i] = out[i][:, ::-1]
    return out


def contrastive_loss(
    image_emb: torch.Tensor, text_emb: torch.Tensor, match: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Multi-positive symmetric InfoNCE.

    Args:
        image_emb: ``(N, D)`` normalised; text_emb: ``(T, D)`` normalised.
        match: ``(T, N) bool``; every text has at least one positive.
        scale: the learned logit scale (already exponentiated).
    """
    logits = scale * text_emb @ image_emb.T  # (T, N)
    target = match.float() / match.sum(1, keepdim=True)
    text_side = -(target * logits.log_softmax(1)).sum(1).mean()
    has_text = match.any(0)
    image_logits = logits.T[has_text]  # (N_pos, T)
    image_target = match.T[has_text].float()
    image_target = image_target / image_target.sum(1, keepdim=True)
    image_side = -(image_target * image_logits.log_softmax(1)).sum(1).mean()
    return (text_side + image_side) / 2


@torch.no_grad()
def retrieval_accuracy(model: Any, tokenizer: Any, scenes: int = 60) -> float:
    """Share of objects that "the {color} {kind}" picks among all crops of its scene.

    Scenes with ``distinct_attributes`` (so the text names one object), seeds ``VAL_SEED_BASE+``.
    """
    from composeseg.crops import mask_crops
    from composeseg.synthetic import SceneConfig, generate_scene

    hits = total = 0
    config = SceneConfig(distinct_attributes=True)
    for seed in range(VAL_SEED_BASE, VAL_SEED_BASE + scenes):
        scene = generate_scene(seed, config)
        if len(scene.instances) < 2:
            continue
        crops = mask_crops(scene.image, scene.masks(), size=CROP_SIZE)
        texts = [f"the {inst.color} {inst.kind}" for inst in scene.instances]
        image = F.normalize(
            _features(model.get_image_features(pixel_values=_pixels(crops))), dim=-1
        )
        tokens = tokenizer(texts, padding=True, return_tensors="pt")
        text = F.normalize(_features(model.get_text_features(**tokens)), dim=-1)
        picked = (text @ image.T).argmax(1)
        hits += int((picked == torch.arange(len(texts))).sum())
        total += len(texts)
    return hits / max(total, 1)


def _features(output: object) -> torch.Tensor:
    # transformers 5 returns a ModelOutput whose pooler_output holds the projection.
    return output if isinstance(output, torch.Tensor) else output.pooler_output  # type: ignore[attr-defined]


def train_clip(
    output: Path,
    *,
    steps: int = 3000,
    scenes: int = 3000,
    batch: int = 160,
    lr: float = 1e-3,
    seed: int = 0,
) -> dict[str, float]:
    """Train and save the demo text model to ``output``; returns the final metrics."""
    from transformers import CLIPImageProcessor, CLIPModel

    output.mkdir(parents=True, exist_ok=True)
    cache = output / f"examples_{scenes}_{seed}.npz"
    if cache.exists():
        examples = ClipExamples.load(cache)
    else:
        examples = generate_examples(
            range(TRAIN_SEED_BASE, TRAIN_SEED_BASE + scenes), CROP_SIZE, rng_seed=seed
        )
        examples.save(cache)
    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    model = CLIPModel(
        demo_clip_config(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id)
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    rng = np.random.default_rng(seed)
    positives = np.flatnonzero(examples.color >= 0)
    negatives = np.flatnonzero(examples.color < 0)
    start = time.time()
    history = []
    for step in range(1, steps + 1):
        warm = min(1.0, step / 100)
        for group in optimizer.param_groups:
            group["lr"] = lr * warm * 0.5 * (1 + math.cos(math.pi * step / steps))
        pick = np.concatenate(
            [rng.choice(positives, batch, replace=False), rng.choice(negatives, batch // 3)]
        )
        color, kind = examples.color[pick], examples.kind[pick]
        texts = [
            caption(
                _name(color[i], "color"), _name(kind[i], "kind"), str(examples.size[pick][i]), rng
            )
            for i in range(batch)
        ]
        match = torch.from_numpy(describes(texts, color, kind))
        tokens = tokenizer(texts, padding=True, return_tensors="pt")
        pixels = _pixels(_augment(examples.crops[pick], rng))
        image = F.normalize(_features(model.get_image_features(pixel_values=pixels)), dim=-1)
        text = F.normalize(_features(model.get_text_features(**tokens)), dim=-1)
        loss = contrastive_loss(image, text, match, model.logit_scale.exp().clamp(max=100))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 250 == 0 or step == steps:
            model.eval()
            accuracy = retrieval_accuracy(model, tokenizer)
            model.train()
            history.append({"step": step, "loss": loss.item(), "retrieval": accuracy})
            print(
                f"step {step}/{steps} loss {loss.item():.3f} retrieval {accuracy:.3f} "
                f"{step / (time.time() - start):.2f} steps/s",
                flush=True,
            )
    model.eval()
    model.save_pretrained(output / "model")
    tokenizer.save_pretrained(output / "model")
    CLIPImageProcessor(
        size={"shortest_edge": CROP_SIZE},
        crop_size={"height": CROP_SIZE, "width": CROP_SIZE},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    ).save_pretrained(output / "model")
    (output / "history.json").write_text(json.dumps(history, indent=1))
    return history[-1]


def _name(index: np.int64, field: str) -> str:
    from composeseg.synthetic import COLORS, KINDS

    return list(COLORS)[int(index)] if field == "color" else KINDS[int(index)]


def main(argv: list[str] | None = None) -> int:
    return script_main(
        argv,
        __doc__.split("\n\n")[0],
        train_clip,
        steps=3000,
        scenes=3000,
        batch=160,
        lr=1e-3,
        seed=0,
    )


if __name__ == "__main__":
    raise SystemExit(main())
