"""Fixtures of the app tests: the demo SAM, a folder of generated scenes with ground truth."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest


@dataclass(frozen=True)
class SceneFolder:
    """Generated scenes written as PNG files; ``masks[name]`` is ``(N, H, W) bool`` ground
    truth and ``kinds[name]`` the objects' shape names."""

    path: Path
    masks: dict[str, np.ndarray]
    kinds: dict[str, list[str]]


def inner_point(mask: np.ndarray) -> tuple[float, float]:
    """The ``(x, y)`` pixel centre deepest inside ``mask``: where a user clicks an object."""
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return float(x) + 0.5, float(y) + 0.5


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.fixture(scope="session")
def demo_sam() -> Any:
    from composeseg import load_sam

    return load_sam(None, device="cpu")


@pytest.fixture(scope="session")
def write_scenes(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., SceneFolder]:
    """``write_scenes(seeds, folder=None, **SceneConfig fields)`` -> :class:`SceneFolder`."""
    from PIL import Image

    from composeseg.synthetic.scenes import SceneConfig, generate_scene

    def write(seeds: list[int], folder: Path | None = None, **config: Any) -> SceneFolder:
        folder = folder or tmp_path_factory.mktemp("scenes")
        masks, kinds = {}, {}
        for seed in seeds:
            scene = generate_scene(seed, SceneConfig(**config))
            name = f"scene{seed}.png"
            Image.fromarray(scene.image).save(folder / name)
            masks[name] = scene.masks()
            kinds[name] = [i.kind for i in scene.instances]
        return SceneFolder(folder, masks, kinds)

    return write


@pytest.fixture
def helpers() -> Any:
    """The module-level helpers, for tests (importlib mode cannot import conftest)."""

    class Helpers:
        inner = staticmethod(inner_point)
        iou = staticmethod(mask_iou)

    return Helpers
