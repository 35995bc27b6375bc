"""Short training runs on a tiny model: outputs load, an interrupted run resumes exactly."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from payloads import Payload

from composeseg import load_sam
from composeseg.synthetic import SceneConfig
from composeseg.tiny import tiny_sam_config
from composeseg.train.config import TrainConfig
from composeseg.train.data import SyntheticSource
from composeseg.train.loop import CHECKPOINT_NAME, learning_rate_factor, train
from composeseg.train.model import build_model_for_training

SOURCE = SyntheticSource(
    scene_config=SceneConfig(height=64, width=64, max_objects=3),
    min_side=64,
    max_side=96,
    validation_config=SceneConfig(height=64, width=64, max_objects=3),
)
CONFIG = TrainConfig(
    steps=3,
    batch_images=2,
    prompts_per_image=3,
    interactive_rounds=1,
    warmup_steps=10,
    val_every=0,
    val_images=2,
    checkpoint_every=1,
)


def _run(out: Path, **changes: object) -> object:
    model = build_model_for_training(tiny_sam_config(), seed=0)
    resume = bool(changes.pop("resume", False))
    stop_after = changes.pop("stop_after", None)
    return train(
        model,
        SOURCE,
        CONFIG.replace(**changes),
        out,
        resume=resume,
        stop_after=stop_after,  # type: ignore[arg-type]
        progress=False,
        log=lambda _: None,
    )


def test_a_short_run_writes_a_loadable_model(tmp_path: Path) -> None:
    result = _run(tmp_path)
    assert result.step == 3 and len(result.losses) == 3
    assert all(np.isfinite(result.losses))
    assert (tmp_path / CHECKPOINT_NAME).is_file()
    assert [entry["step"] for entry in result.history] == [3]
    assert 0.0 <= result.history[0]["box"] <= 1.0
    sam = load_sam(result.model_dir, device="cpu")
    prediction = sam.segment(np.zeros((50, 70, 3), np.uint8), boxes=[5, 5, 40, 30])
    assert prediction.masks.shape == (1, 1, 50, 70)
    assert result.best_dir is not None and (result.best_dir / "config.json").is_file()
    trained = sam.model.mask_decoder.iou_token.weight
    assert not torch.equal(
        trained, build_model_for_training(tiny_sam_config()).mask_decoder.iou_token.weight
    )


def test_resume_continues_with_the_identical_next_step(tmp_path: Path) -> None:
    whole = _run(tmp_path / "whole")
    _run(tmp_path / "cut", steps=2)
    resumed = _run(tmp_path / "cut", resume=True)
    assert resumed.step == 3 and len(resumed.losses) == 1
    assert resumed.losses[0] == pytest.approx(whole.losses[2], rel=1e-5)
    with pytest.raises(ValueError, match="resume"):
        _run(tmp_path / "cut")
    with pytest.raises(ValueError, match="different config.*lr"):
        _run(tmp_path / "cut", resume=True, lr=1e-3)


def test_stop_after_cuts_a_run_that_resume_finishes_identically(tmp_path: Path) -> None:
    whole = _run(tmp_path / "whole")
    cut = _run(tmp_path / "cut", stop_after=2)
    assert cut.step == 2 and [h["step"] for h in cut.history][-1] == 2
    # model/ holds step 2, and the schedule of the cut run is the whole run's
    assert load_sam(tmp_path / "cut" / "model", device="cpu").model is not None
    resumed = _run(tmp_path / "cut", resume=True)
    assert resumed.step == 3
    assert resumed.losses[0] == pytest.approx(whole.losses[2], rel=1e-5)
    final = load_sam(tmp_path / "whole" / "model", device="cpu").model.state_dict()
    again = load_sam(tmp_path / "cut" / "model", device="cpu").model.state_dict()
    assert all(torch.allclose(final[k], again[k], atol=1e-6) for k in final)
    with pytest.raises(ValueError, match="stop_after"):
        _run(tmp_path / "zero", stop_after=0)


def test_data_workers_give_the_same_run(tmp_path: Path) -> None:
    alone = _run(tmp_path / "alone")
    helped = _run(tmp_path / "helped", data_workers=2)
    assert helped.losses == pytest.approx(alone.losses, rel=1e-6)
    # a resumed run may take another worker count: it does not change what a step computes
    _run(tmp_path / "cut", stop_after=2, data_workers=1)
    resumed = _run(tmp_path / "cut", resume=True)
    assert resumed.losses[0] == pytest.approx(alone.losses[2], rel=1e-5)


class _BrokenSource(SyntheticSource):
    def train_sample(self, rng: np.random.Generator) -> Any:
        raise ValueError("scene 7 cannot be drawn")


def test_a_worker_error_stops_the_run_with_its_message(tmp_path: Path) -> None:
    broken = _BrokenSource(**{k: getattr(SOURCE, k) for k in ("scene_config", "min_side")})
    with pytest.raises(ValueError, match="scene 7 cannot be drawn"):
        train(
            build_model_for_training(tiny_sam_config(), seed=0),
            broken,
            CONFIG.replace(data_workers=1),
            tmp_path,
            progress=False,
            log=lambda _: None,
        )


def test_learning_rate_warms_up_then_decays() -> None:
    config = TrainConfig(steps=100, warmup_steps=10, min_lr_ratio=0.1)
    factors = [learning_rate_factor(s, config) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))
    assert factors[-1] == pytest.approx(0.1, abs=0.01)


@pytest.mark.parametrize("how", ["payload", "truncated"])
def test_resume_refuses_a_checkpoint_that_is_not_data(tmp_path: Path, how: str) -> None:
    out, marker = tmp_path / "out", tmp_path / "ran"
    _run(out, steps=1)
    checkpoint = out / CHECKPOINT_NAME
    if how == "payload":
        torch.save({"model": Payload(marker)}, checkpoint)
    else:
        checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    with pytest.raises(ValueError, match=f"{CHECKPOINT_NAME}: not a checkpoint this trainer"):
        _run(out, resume=True)
    assert not marker.exists(), "the planted pickle ran"
