"""The training loop: AdamW + warm-up/cosine, validation, atomic checkpoints, exact resume.

Every random choice of step ``s`` (images, crops, objects, prompts) is drawn from
``numpy.random.default_rng([config.seed, s])``, so a resumed run replays exactly the steps an
uninterrupted run would have taken.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import SamModel

from composeseg.errors import first_line
from composeseg.io import atomic_write, write_json
from composeseg.refiner import MaskRefiner, save_refiner
from composeseg.train.batches import iter_batches
from composeseg.train.config import TrainConfig
from composeseg.train.data import Prepared, SampleSource
from composeseg.train.model import check_trainable, encode, frame_size, freeze_fourier_matrix
from composeseg.train.step import training_loss

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_DIR_NAME = "model"
BEST_DIR_NAME = "best"
HISTORY_NAME = "history.json"
_LOG_EVERY = 25  # steps between log lines when the progress bar is off
_CACHE_BYTES = 1 << 30  # frozen-encoder embedding cache cap
# fields that may change when a run is resumed (they do not change what a step computes)
_RESUMABLE_CHANGES = frozenset(
    {"steps", "val_every", "checkpoint_every", "num_threads", "data_workers"}
)


@dataclass
class TrainResult:
    """What a run produced.

    Attributes:
        step: steps completed.
        model_dir: ``save_pretrained`` directory of the last weights (loads with ``load_sam``).
        best_dir: that of the weights with the best validation box mIoU (None if never
            validated).
        history: one dict per validation: step, seconds, train loss, and the metrics.
        losses: the loss of each step run by this call (not those before a resume).
    """

    step: int
    model_dir: Path
    best_dir: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)


def learning_rate_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of ``config.lr`` at ``step``: linear warm-up, then cosine to ``min_lr_ratio``."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine


def make_optimizer(model: SamModel, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on biases, norms and embeddings."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        plain = param.ndim < 2 or "embed" in name or "token" in name or "rel_pos" in name
        (no_decay if plain else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.999))


def export_model(
    model: SamModel,
    directory: Path,
    dtype: str = "float32",
    *,
    refiner: MaskRefiner | None = None,
) -> Path:
    """Write ``model`` with ``save_pretrained`` into ``directory``, replacing it atomically.

    ``dtype="float16"`` halves the file; :func:`composeseg.load_sam` loads it back in float32.
    A ``refiner`` (:mod:`composeseg.refiner`) is written beside the weights and the exported
    config names ``"learned"`` upsampling, so ``load_sam(directory)`` draws with it; weights
    and refiner replace ``directory`` together.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.tmp")
    old = directory.with_name(f".{directory.name}.old")
    for stale in (tmp, old):
        shutil.rmtree(stale, ignore_errors=True)
    from composeseg.device import quiet_loading

    exported = copy.deepcopy(model).eval()
    if dtype == "float16":
        exported = exported.half()
    if refiner is not None:
        from composeseg.loading import UPSAMPLING_KEY

        setattr(exported.config, UPSAMPLING_KEY, "learned")
    with quiet_loading():
        exported.save_pretrained(tmp)
    if refiner is not None:
        save_refiner(refiner, tmp)
    for file in tmp.iterdir():  # safetensors writes 0600 files; a shipped model must be readable
        file.chmod(0o644)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory


def validate(
    model: SamModel, samples: list[tuple[np.ndarray, np.ndarray]], interactive_points: int = 3
) -> dict[str, float]:
    """Point-prompt metrics of the model being trained (see :mod:`composeseg.evaluation.points`)."""
    from composeseg.backends.sam import SamBackend
    from composeseg.evaluation.points import point_prompt_miou
    from composeseg.sam import Sam

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        sam = Sam(SamBackend(model), device=device, name="training")
        metrics = point_prompt_miou(sam, samples, interactive_points=interactive_points)
    finally:
        model.train(was_training)
    return {k: v for k, v in metrics.as_dict().items() if isinstance(v, float)}


class _EmbeddingCache:
    """Frozen-encoder embeddings by sample key, up to ``_CACHE_BYTES``."""

    def __init__(self) -> None:
        self._items: dict[str, torch.Tensor] = {}
        self._bytes = 0

    def get(self, model: SamModel, batch: list[Prepared]) -> torch.Tensor:
        missing = [p for p in batch if p.key not in self._items]
        if missing:
            with torch.no_grad():
                fresh = encode(model, _pixels(model, missing))
            for prepared, embedding in zip(missing, fresh, strict=True):
                if self._bytes < _CACHE_BYTES:
                    self._items[prepared.key] = embedding
                    self._bytes += embedding.numel() * embedding.element_size()
            if any(p.key not in self._items for p in batch):  # cache full: use fresh ones
                by_key = {p.key: e for p, e in zip(missing, fresh, strict=True)}
                return torch.stack([self._items.get(p.key, by_key[p.key]) for p in batch])
        return torch.stack([self._items[p.key] for p in batch])


def _pixels(model: SamModel, batch: list[Prepared]) -> torch.Tensor:
    parameter = next(model.parameters())
    return torch.stack([p.pixels for p in batch]).to(parameter.device, parameter.dtype)


def train(
    model: SamModel,
    source: SampleSource,
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train ``model`` in place on ``source``; write checkpoints and model directories.

    Writes into ``out_dir``: ``checkpoint.pt`` (weights, optimiser, schedule, step, RNG state,
    history; written atomically every ``config.checkpoint_every`` steps), ``model/`` (the last
    weights, ``save_pretrained``), ``best/`` (best validation box mIoU) and ``history.json``.

    Args:
        model: a transformers ``SamModel`` (from :func:`composeseg.train.build_model_for_training`
            or ``load_sam(...).model``).
        resume: continue from ``out_dir/checkpoint.pt`` (fresh start if there is none).
        stop_after: stop once this many steps are done, as if the run were cut there: the
            learning-rate schedule still spans ``config.steps``, the step is validated and
            checkpointed, and ``model/`` holds its weights. A later ``resume`` continues it.
            Keeps a checkpoint of a long run, or fits a run into a time slot.

    Raises:
        ValueError: ``out_dir`` already holds a checkpoint and ``resume`` is False, or the
            checkpoint was written with a config that differs in a field that changes what a
            step computes; ``stop_after`` is below 1.
    """
    if stop_after is not None and stop_after < 1:
        raise ValueError(f"stop_after must be >= 1, got {stop_after}")
    end = config.steps if stop_after is None else min(stop_after, config.steps)
    check_trainable(model)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out / CHECKPOINT_NAME
    freeze_fourier_matrix(model)
    if config.freeze_image_encoder:
        model.vision_encoder.requires_grad_(False)
    model.train()
    optimizer = make_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: learning_rate_factor(s, config)
    )
    start, best = 0, -1.0
    history: list[dict[str, Any]] = []
    if checkpoint_path.exists():
        if not resume:
            raise ValueError(
                f"{checkpoint_path} exists: pass resume=True (--resume) to continue that run, "
                "or choose another output directory"
            )
        start, history, best = _load_checkpoint(
            checkpoint_path, model, optimizer, scheduler, config
        )
        log(f"resumed from {checkpoint_path} at step {start}")
    size = frame_size(model)
    val_samples = [(s.image, s.masks) for s in source.validation_samples(config.val_images)]
    cache = _EmbeddingCache() if config.freeze_image_encoder else None
    bar = _progress(start, config.steps, progress)
    began, loss_ema, iou_ema = time.time(), float("nan"), float("nan")
    losses: list[float] = []
    for step, (batch, rng) in enumerate(iter_batches(source, config, size, start, end), start):
        if cache is not None:
            embeddings = cache.get(model, batch)
        else:
            embeddings = encode(model, _pixels(model, batch))
        result = training_loss(model, embeddings, batch, config, rng)
        optimizer.zero_grad(set_to_none=True)
        if result.objects:
            result.loss.backward()
            if config.grad_clip:
                params = [p for p in model.parameters() if p.grad is not None]
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
        scheduler.step()
        value = float(result.loss.detach())
        losses.append(value)
        loss_ema = value if math.isnan(loss_ema) else 0.95 * loss_ema + 0.05 * value
        if result.objects:
            iou = result.first_iou
            iou_ema = iou if math.isnan(iou_ema) else 0.95 * iou_ema + 0.05 * iou
        done = step + 1
        lr = scheduler.get_last_lr()[0]
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_ema:.4f}", iou=f"{iou_ema:.3f}", lr=f"{lr:.2e}")
        elif done % _LOG_EVERY == 0:
            rate = (done - start) / max(time.time() - began, 1e-9)
            log(
                f"step {done}/{config.steps} loss {loss_ema:.4f} iou {iou_ema:.3f} "
                f"lr {lr:.2e} {rate:.2f} steps/s"
            )
        last = done == end
        if (config.val_every and done % config.val_every == 0) or last:
            metrics = validate(model, val_samples) if val_samples else {}
            entry = {"step": done, "seconds": round(time.time() - began, 1), "loss": loss_ema}
            history.append({**entry, **metrics})
            log(json.dumps(history[-1]))
            if metrics and metrics["box"] > best:
                best = metrics["box"]
                export_model(model, out / BEST_DIR_NAME, config.save_dtype)
            write_json(out / HISTORY_NAME, history)
        if (config.checkpoint_every and done % config.checkpoint_every == 0) or last:
            _save_checkpoint(
                checkpoint_path, model, optimizer, scheduler, config, done, history, best
            )
            export_model(model, out / MODEL_DIR_NAME, config.save_dtype)
    if bar is not None:
        bar.close()
    model_dir = out / MODEL_DIR_NAME
    if not (model_dir / "config.json").exists():  # nothing left to do on a finished run
        export_model(model, model_dir, config.save_dtype)
    best_dir = out / BEST_DIR_NAME
    return TrainResult(
        step=start + len(losses),
        model_dir=model_dir,
        best_dir=best_dir if best_dir.exists() else None,
        history=history,
        losses=losses,
    )


def _progress(start: int, total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from composeseg.progress import progress

    bar = progress(total=total, desc="train", unit="step")
    bar.update(start)  # a resumed run starts where it stopped
    return bar


def _save_checkpoint(
    path: Path,
    model: SamModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    config: TrainConfig,
    step: int,
    history: list[dict[str, Any]],
    best: float,
) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": step,
        "config": config.to_dict(),
        "model_config": model.config.to_dict(),
        "torch_rng": torch.get_rng_state(),
        "history": history,
        "best": best,
    }
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _load_checkpoint(
    path: Path,
    model: SamModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    config: TrainConfig,
) -> tuple[int, list[dict[str, Any]], float]:
    import pickle

    device = next(model.parameters()).device
    try:
        # weights_only: a checkpoint is data (tensors, numbers, strings, lists, dicts); a
        # pickle that names any other callable is refused instead of run
        state = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        reason = first_line(error) or type(error).__name__
        raise ValueError(
            f"{path}: not a checkpoint this trainer wrote, refused ({reason}); "
            "delete it, or train into another folder"
        ) from None
    saved = state["config"]
    changed = sorted(k for k, v in config.to_dict().items() if k in saved and saved[k] != v)
    forbidden = [k for k in changed if k not in _RESUMABLE_CHANGES]
    if forbidden:
        detail = ", ".join(f"{k}: {saved[k]!r} -> {getattr(config, k)!r}" for k in forbidden)
        raise ValueError(f"cannot resume {path} with a different config ({detail})")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"].cpu())
    return int(state["step"]), list(state["history"]), float(state["best"])
