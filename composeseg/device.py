"""The device policy every model loader follows, and quiet model loading.

:func:`pick_device` is the one rule: an explicit choice wins, else CUDA, then Apple's MPS, then
the CPU. SAM, SAM 3, the CLIP matcher, the grounders, the detectors and the trainer all ask it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device``; None picks CUDA, then MPS, then CPU."""
    import torch

    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Load transformers models without their per-file progress bars (noise for a model
    load); the caller's setting is restored afterwards."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()
