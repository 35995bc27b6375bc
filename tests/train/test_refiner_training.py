"""Training the learned mask refiner: crops hold every object whole under each prompt, the loop
fits them, and the written model directory loads with learned upsampling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from composeseg import load_sam
from composeseg.loading import UPSAMPLING_KEY
from composeseg.refiner import REFINER_FILE, MaskRefiner
from composeseg.train.loop import export_model
from composeseg.train.refiner import collect_crops, main, train_refiner, training_scenes


@pytest.fixture(scope="module")
def crops(tiny_sam_dir: Path) -> list:
    sam = load_sam(tiny_sam_dir, device="cpu")
    return collect_crops(sam, training_scenes(3))


def test_each_object_gets_one_crop_per_prompt_holding_it_whole(crops: list) -> None:
    objects = [m[m.reshape(len(m), -1).sum(1) >= 16] for _, m in training_scenes(3)]
    assert len(crops) == 4 * sum(len(m) for m in objects)  # box, point, two clicks
    areas = sorted(int(m.sum()) for masks in objects for m in masks for _ in range(4))
    assert sorted(int(c.target.sum()) for c in crops) == areas
    for crop in crops:
        assert crop.image.shape == (*crop.target.shape, 3)
        assert crop.bilinear.shape == crop.guided.shape == crop.target.shape
        assert crop.bilinear.dtype == np.float16 and crop.cell > 0


def test_the_loop_records_its_curve_against_the_guided_logits(crops: list) -> None:
    refiner, curve = train_refiner(crops, 3, seed=0)
    assert not refiner.training
    assert [c["step"] for c in curve] == [3]
    assert all(np.isfinite([c["loss"], c["guided_loss"]]).all() for c in curve)
    with pytest.raises(ValueError, match="steps >= 1"):
        train_refiner(crops, 0)
    with pytest.raises(ValueError, match="0 crops"):
        train_refiner([], 5)


def test_the_cli_writes_a_model_that_loads_with_its_refiner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo_learned"
    assert main(["-o", str(out), "--scenes", "2", "--steps", "2"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["steps"] == 2 and report["crops"] > 0
    assert (out / REFINER_FILE).is_file()
    assert json.loads((out / "config.json").read_text())["composeseg_upsampling"] == "learned"
    sam = load_sam(out, device="cpu")
    assert sam.upsampling == "learned" and sam.refiner is not None
    image, masks = next(training_scenes(1))
    box = np.argwhere(masks[0])
    (y0, x0), (y1, x1) = box.min(0), box.max(0) + 1
    predicted = sam.segment(image, boxes=np.array([x0, y0, x1, y1], np.float32)).masks
    assert predicted.shape == (1, 1, *image.shape[:2])


def test_export_model_writes_the_refiner_with_the_weights(
    tiny_sam_dir: Path, tmp_path: Path
) -> None:
    model = load_sam(tiny_sam_dir, device="cpu").model
    before = getattr(model.config, UPSAMPLING_KEY, None)
    refiner = MaskRefiner(4)
    torch.nn.init.normal_(refiner.head.weight)  # not the identity an untrained one is
    export_model(model, tmp_path / "m", refiner=refiner)
    sam = load_sam(tmp_path / "m", device="cpu")
    assert sam.upsampling == "learned" and sam.refiner is not None
    for name, weight in refiner.state_dict().items():
        assert torch.equal(sam.refiner.state_dict()[name], weight), name
    assert getattr(model.config, UPSAMPLING_KEY, None) == before  # the caller's model is as it was
    export_model(model, tmp_path / "m")  # the folder is replaced whole: no stale refiner
    assert not (tmp_path / "m" / REFINER_FILE).exists()
    assert load_sam(tmp_path / "m", device="cpu").refiner is None
