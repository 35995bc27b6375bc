"""The demo grounder's recipe: Hungarian matching, the detection loss, its init and a short run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import box_convert

from composeseg.adapters import TransformersGrounder
from composeseg.synthetic import SceneConfig, generate_scene
from composeseg.train import grounder
from composeseg.train.clip_data import build_tokenizer, describes
from composeseg.transforms import build_point_grid


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    return build_tokenizer()


def test_describes_reads_colour_and_kind() -> None:
    color = np.array([0, 0, 1, -1])
    kind = np.array([2, 3, 2, -1])
    from composeseg.synthetic import COLORS, KINDS

    c0, c1 = list(COLORS)[:2]
    texts = [f"the {c0} {KINDS[2]}", c0, f"a {KINDS[2]}", f"the {c1} {KINDS[3]}"]
    np.testing.assert_array_equal(
        describes(texts, color, kind),
        [
            [True, False, False, False],
            [True, True, False, False],
            [True, False, True, False],  # a negative (-1) is described by no text
            [False, False, False, False],
        ],
    )


def _boxes(xyxy: list[list[float]]) -> torch.Tensor:
    return box_convert(torch.tensor(xyxy, dtype=torch.float32), "xyxy", "cxcywh")


def test_match_pairs_each_object_with_the_patch_that_predicts_it() -> None:
    gt = _boxes([[0.1, 0.1, 0.3, 0.3], [0.6, 0.5, 0.9, 0.8]])
    pred = _boxes([[0.0, 0.0, 0.05, 0.05], [0.6, 0.5, 0.9, 0.8], [0.5, 0.5, 0.6, 0.6]] * 2)
    pred[4] = gt[0]  # patch 4 has object 0's box, patch 1 object 1's
    truth = torch.tensor([[True, False], [False, True]])  # query q describes object q
    logits = torch.full((6, 2), -5.0)
    rows, cols = grounder.match(logits, pred, gt, truth)
    assert dict(zip(cols.tolist(), rows.tolist(), strict=True)) == {0: 4, 1: 1}
    # with equal boxes, the class score decides: patch 3 scores query 1 highest
    pred[:] = gt[1]
    logits[3, 1] = 5.0
    rows, cols = grounder.match(logits, pred, gt[1:], truth[:, 1:])
    assert rows.tolist() == [3] and cols.tolist() == [0]


def test_detection_loss_prefers_the_right_boxes_and_scores() -> None:
    scene = generate_scene(11, SceneConfig(min_objects=3))
    texts = [f"the {inst.color} {inst.kind}" for inst in scene.instances] + ["the red ring"]
    gt, truth = grounder._targets(scene, texts)
    patches = 64
    boxes = torch.full((1, patches, 4), 0.5)
    boxes[0, :, 2:] = 0.05
    logits = torch.full((1, patches, len(texts)), -6.0)
    wrong = grounder.detection_loss(logits, boxes, [scene], texts)
    # right: every patch on an object frames it, one patch per object scores its queries
    centres = build_point_grid(8) * [scene.width, scene.height]
    owner = scene.label_map()[centres[:, 1].astype(int), centres[:, 0].astype(int)] - 1
    good_boxes, good_logits = boxes.clone(), logits.clone()
    free = iter(np.flatnonzero(owner < 0))
    for m in range(len(gt)):
        mine = np.flatnonzero(owner == m)
        good_boxes[0, mine] = gt[m]
        scorer = mine[0] if len(mine) else next(free)  # a small object may own no centre
        good_boxes[0, scorer] = gt[m]
        good_logits[0, scorer] = torch.where(truth[:, m], 6.0, -6.0)
    good = grounder.detection_loss(good_logits, good_boxes, [scene], texts)
    assert good < 0.05 < wrong
    # the dense term alone: the right class scores with wrong boxes still cost
    assert grounder.detection_loss(good_logits, boxes, [scene], texts) > 1
    logits.requires_grad_(True)
    boxes.requires_grad_(True)
    grounder.detection_loss(logits, boxes, [scene], texts).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert boxes.grad is not None and boxes.grad.abs().sum() > 0


def test_point_grid_is_cell_centres_row_major() -> None:
    # the grounder reads it as its patches' centres, AMG as its prompt points
    np.testing.assert_allclose(
        build_point_grid(2), [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]
    )


def test_init_heads_starts_boxes_at_the_patches(tokenizer) -> None:  # type: ignore[no-untyped-def]
    from transformers import OwlViTForObjectDetection

    torch.manual_seed(0)
    model = OwlViTForObjectDetection(grounder.demo_grounder_config(tokenizer)).eval()
    grounder.init_heads(model)
    processor = grounder.demo_processor(tokenizer)
    scene = generate_scene(5, SceneConfig())
    inputs = processor(text=[["the red star", "blue"]], images=[scene.image], return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    torch.testing.assert_close(out.pred_boxes[0], model.box_bias.sigmoid())
    assert out.logits.abs().max() < 20  # transformers' std-1 heads gave |logits| ~ 200


def test_train_a_few_steps_and_load_with_the_grounder(tmp_path: Path) -> None:
    out = tmp_path / "grounder"
    best = grounder.train_grounder(out, steps=2, batch=2, validate_every=1, val_scenes=2)
    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history] == [1, 2]
    assert best in history and math.isfinite(best["loss"]) and 0 <= best["box_iou"] <= 1
    found = TransformersGrounder(out / "model", threshold=0.0, device="cpu")(
        generate_scene(7, SceneConfig()).image, ["the red star", "blue"]
    )
    assert found.class_id is not None and set(found.class_id.tolist()) <= {0, 1}
    assert found.boxes.shape[1] == 4 and len(found) > 0


def test_training_scripts_share_one_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from composeseg.train.script import script_main

    calls = []

    def train(output: Path, **options: float) -> dict[str, float]:
        calls.append((output, options, torch.get_num_threads()))
        return {"loss": 0.5}

    before = torch.get_num_threads()
    argv = ["-o", str(tmp_path), "--lr", "2.5e-4", "--threads", "1"]
    try:
        assert script_main(argv, "test", train, steps=10, lr=1e-3) == 0
    finally:
        torch.set_num_threads(before)
    assert calls == [(tmp_path, {"steps": 10, "lr": 2.5e-4}, 1)]
    assert json.loads(capsys.readouterr().out) == {"loss": 0.5}
