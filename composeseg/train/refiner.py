"""Train the learned mask refiner (:mod:`composeseg.refiner`) of the demo SAM on generated scenes.

    python -m composeseg.train.refiner -o OUTDIR [--sam DIR] [--scenes 1200] [--steps 3000]
                                       [--seed 0] [--width 16]

The demo SAM (or the SAM in ``--sam DIR``, kept frozen) segments training-range scenes (the
randomised generator in default and crowded layouts and the original generator, in turn) with
the evaluation's prompt protocols: the tight box, the point farthest from the boundary (the best
of its 3 masks) and two corrective clicks with the logits fed back. Per object and prompt a crop
keeps the image, the bilinear and the guided logits and the ground truth. The refiner then
learns on random 64 × 64 patches of the crops to correct the guided logits, with binary
cross-entropy plus one minus the soft IoU of each patch (cross-entropy alone lowered the loss
and the masks' IoU with it). OUTDIR gets a copy of that model with the refiner and
``composeseg_upsampling: "learned"``, so ``load_sam(OUTDIR)`` uses it. The shipped refiner was
trained with the defaults and ``--threads 1``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from composeseg.refiner import MaskRefiner

if TYPE_CHECKING:
    from composeseg.prediction import ImageEmbedding
    from composeseg.sam import Sam

SEED_START = 700_000_000
"""Scenes of the refiner's data: seeds from here, inside the training range."""
_CROP_MARGIN = 12  # pixels kept around a mask's reach; patches need some context
_PATCH = 64
_BATCH = 32


@dataclass(frozen=True, eq=False)
class Crop:
    """One object under one prompt, cut around what its mask may cover.

    Attributes:
        image: ``(h, w, 3) uint8`` RGB.
        bilinear, guided: ``(h, w) float16`` logits of the mask, bilinear and guided.
        target: ``(h, w) bool`` the ground truth.
        cell: pixels per low-resolution logit cell in the whole image.
    """

    image: np.ndarray
    bilinear: np.ndarray
    guided: np.ndarray
    target: np.ndarray
    cell: float


def training_scenes(count: int, start: int = SEED_START) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(image, masks)`` of ``count`` training-range scenes: randomised, randomised in crowded
    layouts and the original generator, in turn."""
    from composeseg.synthetic import SceneConfig
    from composeseg.synthetic.randomized import DENSE_LAYOUT
    from composeseg.train.data import randomized_sample, scene_sample

    for i in range(count):
        seed = start + i
        kind = i % 3
        sample = (
            randomized_sample(seed)
            if kind == 0
            else randomized_sample(seed, DENSE_LAYOUT)
            if kind == 1
            else scene_sample(seed, SceneConfig())
        )
        yield sample.image, sample.masks


def collect_crops(sam: Sam, scenes: Iterable[tuple[np.ndarray, np.ndarray]]) -> list[Crop]:
    """Crops of every object of ``scenes`` under the four prompts (see the module docstring).

    Args:
        sam: the model whose masks the refiner will correct (any upsampling; its low-res
            logits are upsampled and guided here as ``upsampling="guided"`` would).
        scenes: ``(image (H, W, 3) uint8, masks (N, H, W) bool)`` pairs; masks under 16
            pixels are skipped.
    """
    from composeseg.evaluation.points import add_clicks, farthest_point
    from composeseg.geometry import tight_boxes

    crops: list[Crop] = []
    for image, all_masks in scenes:
        masks = all_masks[all_masks.reshape(len(all_masks), -1).sum(1) >= 16]
        if not len(masks):
            continue
        embedding = sam.embed(image)
        rows = np.arange(len(masks))
        cell = max(image.shape[:2]) / sam.backend.mask_size
        bilinear, guided, _, _ = _decode(sam, embedding, image, boxes=tight_boxes(masks))
        crops += [_crop(image, bilinear[i, 0], guided[i, 0], masks[i], cell) for i in rows]
        points = np.array([farthest_point(m) for m in masks], np.float32).reshape(-1, 1, 2)
        labels = np.ones((len(masks), 1), np.int64)
        bilinear, guided, logits, scores = _decode(
            sam, embedding, image, points=points, point_labels=labels, multimask=True
        )
        for i in rows:
            k = _best(guided[i], masks[i])
            crops.append(_crop(image, bilinear[i, k], guided[i, k], masks[i], cell))
        confident = scores.argmax(1)
        current, logits = guided[rows, confident] > 0, logits[rows, confident]
        for _ in range(2):
            points, labels = add_clicks(points, labels, current, masks)
            bilinear, guided, new_logits, _ = _decode(
                sam, embedding, image, points=points, point_labels=labels, mask_input=logits
            )
            crops += [_crop(image, bilinear[i, 0], guided[i, 0], masks[i], cell) for i in rows]
            current, logits = guided[:, 0] > 0, new_logits[:, 0]
    return crops


def train_refiner(
    crops: list[Crop],
    steps: int,
    *,
    seed: int = 0,
    width: int = 16,
    refiner: MaskRefiner | None = None,
    progress: bool = False,
) -> tuple[MaskRefiner, list[dict[str, float]]]:
    """Fit ``refiner`` (default: a new :class:`MaskRefiner` of ``width`` channels) to ``crops``;
    ``progress`` shows a bar over the steps.

    Returns:
        The refiner in eval mode and its learning curve: per 200 steps (and the last), the mean
        training loss and that of the guided logits left as they are, on the same patches.
    """
    if steps < 1 or not crops:
        raise ValueError(f"need steps >= 1 and crops, got {steps} steps and {len(crops)} crops")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    refiner = refiner or MaskRefiner(width)
    refiner.train()
    optimizer = torch.optim.AdamW(refiner.parameters(), lr=1e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=2e-3, total_steps=steps, pct_start=0.05
    )
    curve: list[dict[str, float]] = []
    losses: list[tuple[float, float]] = []
    from composeseg.progress import progress as bar

    for step in bar(range(steps), desc="refiner", unit="step", enabled=progress):
        image, bilinear, guided, target, valid, cell = _batch(crops, rng)
        loss = _loss(refiner(image, bilinear, guided, cell), target, valid)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            losses.append((loss.item(), _loss(guided.clamp(-10, 10), target, valid).item()))
        if (step + 1) % 200 == 0 or step + 1 == steps:
            mean = np.mean(losses, axis=0)
            curve.append({"step": step + 1, "loss": float(mean[0]), "guided_loss": float(mean[1])})
            losses.clear()
    return refiner.eval(), curve


def train(
    out: Path,
    *,
    sam: str = "",
    scenes: int = 1200,
    steps: int = 3000,
    seed: int = 0,
    width: int = 16,
) -> dict[str, Any]:
    """Collect crops of the SAM in directory ``sam`` (empty: the demo SAM) on ``scenes``
    scenes, train a refiner of ``width`` channels for ``steps`` steps and write the model with
    it to ``out``.

    The model folder, with the refiner, replaces ``out`` atomically
    (:func:`~composeseg.train.loop.export_model`).
    """
    from composeseg.io import check_output_folder
    from composeseg.loading import load_sam
    from composeseg.progress import progress
    from composeseg.train.loop import export_model
    from composeseg.train.model import check_trainable

    check_output_folder(Path(out).parent)
    if scenes < 1:
        raise ValueError(f"scenes must be >= 1, got {scenes}")
    model_sam = load_sam(sam or None, device="cpu", upsampling="bilinear")
    scene_iter = progress(training_scenes(scenes), total=scenes, desc="crops", unit="scene")
    crops = collect_crops(model_sam, scene_iter)
    refiner, curve = train_refiner(crops, steps, seed=seed, width=width, progress=True)
    export_model(check_trainable(model_sam.model), Path(out), "float16", refiner=refiner)
    return {"crops": len(crops), "steps": steps, "curve": curve, "output": str(out)}


def _decode(
    sam: Sam, embedding: ImageEmbedding, image: np.ndarray, **prompts: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(N, K, H, W)`` bilinear and guided logits of a prompt batch, as ``upsampling="guided"``
    draws them, with the ``(N, K, M, M)`` low-res logits and ``(N, K)`` scores. The decoder
    runs once and the logits are upsampled once (``Sam.segment`` would upsample them too)."""
    from composeseg.prompts import as_prompts
    from composeseg.sam import fit_to_image
    from composeseg.transforms import upscale_logits
    from composeseg.upsampling import guided_radius, guided_refine

    multimask = bool(prompts.pop("multimask", False))
    batch = fit_to_image(as_prompts(**prompts), embedding.original_size)
    low, scores = sam.decode_low_res(embedding, batch, multimask=multimask)
    bilinear = (
        upscale_logits(
            low,
            sam.image_size,
            embedding.input_size,
            embedding.original_size,
            sam.backend.resize_mode,
        )
        .cpu()
        .numpy()
    )
    planes = bilinear.reshape(-1, *bilinear.shape[2:])
    radius = guided_radius(embedding.original_size, sam.backend.mask_size)
    guided = guided_refine(planes, image, radius).reshape(bilinear.shape)
    return bilinear, guided, low.cpu().numpy(), scores.cpu().numpy()


def _best(guided: np.ndarray, mask: np.ndarray) -> int:
    """Index of the ``(K, H, W)`` guided logits whose mask best matches ``mask``."""
    from composeseg.geometry import paired_mask_iou

    return int(np.argmax(paired_mask_iou(guided > 0, np.broadcast_to(mask, guided.shape))))


def _crop(
    image: np.ndarray, bilinear: np.ndarray, guided: np.ndarray, mask: np.ndarray, cell: float
) -> Crop:
    """The object's crop: the window the refiner would see (:func:`mask_windows`), grown to
    hold the ground truth where the model missed it."""
    from composeseg.refiner import mask_windows

    reach = np.where(mask, np.float32(1), guided)  # > 0 inside the mask or the ground truth
    window = mask_windows(bilinear[None], reach[None], _CROP_MARGIN)[0]
    if window is None:  # pragma: no cover - the ground truth is never empty here
        raise ValueError("empty ground-truth mask")
    top, bottom, left, right = window
    cut = (slice(top, bottom), slice(left, right))
    return Crop(
        image=image[cut].copy(),
        bilinear=bilinear[cut].astype(np.float16),
        guided=guided[cut].astype(np.float16),
        target=mask[cut].copy(),
        cell=cell,
    )


def _batch(crops: list[Crop], rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    """Random ``_PATCH``-sided patches, padded where a crop is smaller (``valid`` marks them)."""
    image = np.zeros((_BATCH, 3, _PATCH, _PATCH), np.float32)
    bilinear = np.full((_BATCH, 1, _PATCH, _PATCH), -10, np.float32)
    guided = np.full((_BATCH, 1, _PATCH, _PATCH), -10, np.float32)
    target = np.zeros((_BATCH, 1, _PATCH, _PATCH), np.float32)
    valid = np.zeros((_BATCH, 1, _PATCH, _PATCH), np.float32)
    cell = np.zeros(_BATCH, np.float32)
    for b in range(_BATCH):
        crop = crops[rng.integers(len(crops))]
        height, width = crop.target.shape
        top = rng.integers(0, max(1, height - _PATCH + 1))
        left = rng.integers(0, max(1, width - _PATCH + 1))
        h, w = min(_PATCH, height), min(_PATCH, width)
        cut = (slice(top, top + h), slice(left, left + w))
        image[b, :, :h, :w] = crop.image[cut].transpose(2, 0, 1)
        bilinear[b, 0, :h, :w] = crop.bilinear[cut]
        guided[b, 0, :h, :w] = crop.guided[cut]
        target[b, 0, :h, :w] = crop.target[cut]
        valid[b, 0, :h, :w] = 1
        cell[b] = crop.cell
    return tuple(torch.from_numpy(a) for a in (image, bilinear, guided, target, valid, cell))


def _loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy over the valid pixels plus the mean of one minus each patch's soft
    IoU: the IoU term moves boundaries; cross-entropy alone mostly tempers confidence."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    bce = (bce * valid).sum() / valid.sum()
    prob = torch.sigmoid(logits) * valid
    inter = (prob * target).sum((1, 2, 3))
    union = (prob + target - prob * target).sum((1, 2, 3))
    return bce + (1 - (inter + 1) / (union + 1)).mean()


def main(argv: list[str] | None = None) -> int:
    """``python -m composeseg.train.refiner -o OUTDIR [--sam DIR] [--scenes N] [--steps N]
    [--seed N] [--width N]``."""
    from composeseg.train.script import script_main

    return script_main(
        argv, __doc__.splitlines()[0], train, sam="", scenes=1200, steps=3000, seed=0, width=16
    )


if __name__ == "__main__":
    raise SystemExit(main())
