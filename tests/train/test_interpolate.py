"""interpolate_weights: WiSE-FT's weight average of a model and its fine-tune."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import SamModel

from composeseg import load_sam
from composeseg.tiny import build_model, tiny_sam_config
from composeseg.train.grow import deepen_encoder
from composeseg.train.interpolate import blend_checkpoints, interpolate_weights, main
from composeseg.train.loop import export_model
from composeseg.train.resize import resize_input


@pytest.fixture(scope="module")
def pair() -> tuple[SamModel, SamModel]:
    """Two tiny SAMs with one architecture and different weights (seeds 1 and 2)."""
    return build_model(tiny_sam_config(128), seed=1), build_model(tiny_sam_config(128), seed=2)


@pytest.mark.parametrize("alpha", [0.0, 0.25, 1.0])
def test_every_weight_is_the_blend(pair: tuple[SamModel, SamModel], alpha: float) -> None:
    start, tuned = pair
    mixed = interpolate_weights(start, tuned, alpha).state_dict()
    a, b = start.state_dict(), tuned.state_dict()
    assert mixed.keys() == a.keys()
    differ = 0
    for name, weight in mixed.items():
        if not weight.is_floating_point():
            continue
        expected = (1 - alpha) * a[name].float() + alpha * b[name].float()
        torch.testing.assert_close(weight, expected, msg=name)
        differ += int(not torch.equal(a[name], b[name]))
    assert differ > 10  # the seeds drew different weights, so the blend was tested


def test_the_result_is_a_new_model_with_the_start_config(
    pair: tuple[SamModel, SamModel],
) -> None:
    start, tuned = pair
    before = {k: v.clone() for k, v in start.state_dict().items()}
    mixed = interpolate_weights(start, tuned, 0.5)
    assert mixed is not start and not mixed.training and mixed.dtype == torch.float32
    assert mixed.config.to_dict() == start.config.to_dict()
    for name, weight in start.state_dict().items():
        assert torch.equal(weight, before[name]), f"{name} of the input changed"


def test_a_blend_saves_loads_and_segments(pair: tuple[SamModel, SamModel], tmp_path: Path) -> None:
    export_model(interpolate_weights(*pair, 0.5), tmp_path / "mixed", "float16")
    sam = load_sam(tmp_path / "mixed", device="cpu")
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    prediction = sam.segment(sam.embed(image), boxes=np.array([[10.0, 10.0, 60.0, 70.0]]))
    assert prediction.masks.shape[-2:] == (96, 128)


def test_frames_or_architectures_that_differ_are_refused(pair: tuple[SamModel, SamModel]) -> None:
    start, tuned = pair
    with pytest.raises(ValueError, match="resize_input"):
        interpolate_weights(start, resize_input(tuned, 256), 0.5)
    with pytest.raises(ValueError, match="differ in names"):
        interpolate_weights(start, deepen_encoder(tuned, 1), 0.5)
    for alpha in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="alpha"):
            interpolate_weights(start, tuned, alpha)


def test_blend_checkpoints_moves_the_fine_tune_to_the_start_frame(
    pair: tuple[SamModel, SamModel], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The shipped demo weights are such a blend: a 640 px fine-tune averaged at 512 px.
    start, tuned = pair
    export_model(start, tmp_path / "start")
    export_model(resize_input(tuned, 256), tmp_path / "tuned")  # fine-tuned at another frame
    main([str(tmp_path / "start"), str(tmp_path / "tuned"), "0.25", str(tmp_path / "out")])
    assert "-> " in capsys.readouterr().out
    blended = load_sam(tmp_path / "out", device="cpu").model
    assert blended.config.vision_config.image_size == start.config.vision_config.image_size
    back = resize_input(load_sam(tmp_path / "tuned", device="cpu").model, 128)
    expected = interpolate_weights(start, back, 0.25).state_dict()
    for name, weight in blended.state_dict().items():
        # stored in float16 by default, as the demo model ships
        torch.testing.assert_close(weight, expected[name], atol=2e-3, rtol=1e-3, msg=name)
    with pytest.raises(ValueError, match="alpha"):
        blend_checkpoints(tmp_path / "start", tmp_path / "tuned", 2.0, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
