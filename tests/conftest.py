"""Session fixtures: tiny models built once, saved and loaded back through the public API."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

# helper modules beside the tests (meta_reference, payloads) import by their plain names
sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_configure(config: pytest.Config) -> None:
    # Tests use tiny models: one thread avoids oversubscription stalls on shared 2-core machines
    # (seen: 0.02 s forward passes taking 2 s with two threads under load).
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_sam_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init tiny ``SamModel`` written by ``save_pretrained``."""
    from composeseg.tiny import build_model, tiny_sam_config

    path = tmp_path_factory.mktemp("tiny_sam")
    build_model(tiny_sam_config(), seed=0).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_sam(tiny_sam_dir: Path):  # type: ignore[no-untyped-def]
    from composeseg import load_sam

    return load_sam(tiny_sam_dir, device="cpu")


@pytest.fixture
def rgb_image() -> np.ndarray:
    """A non-square ``(90, 140, 3) uint8`` image with a bright rectangle."""
    image = np.random.default_rng(0).integers(0, 60, (90, 140, 3), dtype=np.uint8)
    image[20:60, 30:100] = (220, 40, 40)
    return image
