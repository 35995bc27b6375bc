"""Training batches, built in the training process or ahead of it by worker processes.

A step's batch is a function of the source, the config, the step and the model frame alone:
every random choice comes from ``numpy.random.default_rng([config.seed, step])``. So worker
processes can build the next steps' batches while the model trains on this one, and a run
takes the same batches, losses and weights with any number of workers. Workers pay off where
the model step is fast next to scene generation (a GPU; on a CPU, one spare core).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from composeseg.train.config import TrainConfig
from composeseg.train.data import Prepared, SampleSource, TrainSample, augment, prepare

Batch = tuple[list[Prepared], np.random.Generator]
"""A step's samples in the model frame, and the generator its prompts are drawn with next."""


def make_batch(source: SampleSource, config: TrainConfig, step: int, size: int) -> Batch:
    """Step ``step``'s ``config.batch_images`` samples, augmented and prepared for a ``size``
    px frame, and the step's generator in the state the prompt sampling continues from."""
    rng = np.random.default_rng([config.seed, step])
    samples: list[TrainSample] = [source.train_sample(rng) for _ in range(config.batch_images)]
    if config.augment and not config.freeze_image_encoder:
        samples = [augment(s, rng, config.zoom_crops) for s in samples]
    return [prepare(s, size) for s in samples], rng


class _StepBatches(torch.utils.data.Dataset[Batch]):
    """Index ``step`` -> :func:`make_batch` of that step (a map-style dataset keeps order)."""

    def __init__(self, source: SampleSource, config: TrainConfig, size: int) -> None:
        self.source, self.config, self.size = source, config, size

    def __len__(self) -> int:
        return self.config.steps

    def __getitem__(self, step: int) -> Batch:
        return make_batch(self.source, self.config, step, self.size)


def _as_is(batch: Any) -> Any:
    # the default conversion would rebuild the tuple; a batch is already what the step takes
    return batch


def iter_batches(
    source: SampleSource, config: TrainConfig, size: int, start: int, end: int
) -> Iterator[Batch]:
    """The batches of steps ``start`` to ``end - 1``, in order.

    With ``config.data_workers`` > 0 that many ``DataLoader`` worker processes (one torch
    thread each) build whole batches, two per worker ahead of the step in hand; a worker's
    error is raised here. Where the platform spawns workers instead of forking them (macOS,
    Windows), the source must pickle, as :class:`~composeseg.train.data.SyntheticSource` and
    :class:`~composeseg.train.data.CocoSource` do.
    """
    workers = config.data_workers
    loader = torch.utils.data.DataLoader(
        _StepBatches(source, config, size),
        batch_size=None,
        sampler=range(start, end),
        num_workers=workers,
        collate_fn=_as_is,
        prefetch_factor=2 if workers else None,
    )
    yield from loader
