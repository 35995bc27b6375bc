"""Train or fine-tune SAM with the paper's recipe (``composeseg train`` on the command line).

Example:
    >>> from composeseg.train import SyntheticSource, TrainConfig, build_model_for_training, train
    >>> model = build_model_for_training(model_preset("tiny"), seed=0)  # doctest: +SKIP
    >>> train(model, SyntheticSource(), TrainConfig(steps=100), "runs/tiny")  # doctest: +SKIP

Names resolve lazily so that ``import composeseg.train`` does not import torch.
"""

from __future__ import annotations

from composeseg._lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "TrainConfig": "composeseg.train.config",
    "TRAIN_SEED_LIMIT": "composeseg.train.config",
    "VALIDATION_SEED_START": "composeseg.train.config",
    "EVALUATION_SEED_START": "composeseg.train.config",
    "CocoSource": "composeseg.train.data",
    "SyntheticSource": "composeseg.train.data",
    "TrainSample": "composeseg.train.data",
    "augment": "composeseg.train.data",
    "prepare": "composeseg.train.data",
    "init_for_training": "composeseg.train.model",
    "freeze_fourier_matrix": "composeseg.train.model",
    "build_model_for_training": "composeseg.train.model",
    "model_preset": "composeseg.train.model",
    "sam_loss": "composeseg.train.losses",
    "train": "composeseg.train.loop",
    "export_model": "composeseg.train.loop",
    "TrainResult": "composeseg.train.loop",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
