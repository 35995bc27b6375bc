"""The embedded demo model meets the issue's quality floors on scenes it never saw.

Scenes come from seeds >= ``EVALUATION_SEED_START`` (1e9); the trainer draws training seeds
below 9e8 and validation seeds in [9e8, 1e9), so these are unseen by training and by model
selection alike. The floors are the issue's and must not be lowered: if the shipped model is
below them, this test fails. The shipped model scores box 0.864, one point (best of 3) 0.831
and 3 interactive points 0.860 on these 40 scenes (``composeseg eval points --synthetic 40``).
"""

from __future__ import annotations

import pytest

from composeseg import load_sam
from composeseg.evaluation.points import PointPromptMetrics, point_prompt_miou, scene_instances
from composeseg.loading import DEMO_MODEL_DIR
from composeseg.synthetic import SceneConfig
from composeseg.train.config import EVALUATION_SEED_START

SCENES = 40
FLOORS = {"box": 0.85, "box_fit": 0.85, "one_point_oracle": 0.70, "interactive": 0.85}


def _require_demo_model() -> None:
    if not (DEMO_MODEL_DIR / "config.json").is_file():
        pytest.fail(f"the embedded demo model is missing from {DEMO_MODEL_DIR}")


@pytest.fixture(scope="module")
def metrics() -> PointPromptMetrics | None:
    if not (DEMO_MODEL_DIR / "config.json").is_file():
        return None
    sam = load_sam(device="cpu")
    seeds = range(EVALUATION_SEED_START, EVALUATION_SEED_START + SCENES)
    return point_prompt_miou(sam, scene_instances(seeds, SceneConfig()), interactive_points=3)


@pytest.mark.parametrize("protocol", sorted(FLOORS))
def test_demo_model_meets_the_floor(metrics: PointPromptMetrics | None, protocol: str) -> None:
    _require_demo_model()
    assert metrics is not None
    value = getattr(metrics, protocol)
    assert value >= FLOORS[protocol], (
        f"demo model {protocol} mIoU {value:.3f} < floor {FLOORS[protocol]} "
        f"({metrics.instances} instances, {metrics.images} scenes): {metrics.as_dict()}"
    )


def test_demo_model_loads_in_float32_and_fits_the_size_budget() -> None:
    import torch

    _require_demo_model()
    size = sum(f.stat().st_size for f in DEMO_MODEL_DIR.iterdir())
    assert size <= 5_000_000  # issue 19's budget for the shipped weights
    sam = load_sam(device="cpu")
    assert sam.name == "composeseg-demo"
    assert all(p.dtype == torch.float32 for p in sam.model.parameters())
