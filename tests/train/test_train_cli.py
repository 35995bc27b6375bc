"""``composeseg train``: decoder-only fine-tuning of a second model on a COCO folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from composeseg import load_sam
from composeseg.pipelines.cli import main
from composeseg.synthetic import SceneConfig, generate_scene, write_coco
from composeseg.tiny import build_model, tiny_sam_config


@pytest.fixture(scope="module")
def coco_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("coco")
    config = SceneConfig(height=72, width=96, max_objects=3)
    write_coco([generate_scene(seed, config) for seed in range(4)], out)
    return out


def test_decoder_only_fine_tuning_in_one_command(coco_folder: Path, tmp_path: Path) -> None:
    start = tmp_path / "start"
    build_model(tiny_sam_config(), seed=7).save_pretrained(start)
    out = tmp_path / "run"
    argv = [
        "train",
        "--data", str(coco_folder / "annotations.json"),
        "--images", str(coco_folder / "images"),
        "--holdout", "1",
        "--init", str(start),
        "--freeze-image-encoder",
        "-o", str(out),
        "--steps", "3",
        "--batch-images", "2",
        "--prompts-per-image", "2",
        "--interactive-rounds", "1",
        "--val-images", "1",
        "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 0
    before, after = load_sam(start, device="cpu").model, load_sam(out / "model", device="cpu").model
    for name, value in before.vision_encoder.state_dict().items():
        assert torch.equal(value, after.vision_encoder.state_dict()[name]), name
    decoder = after.mask_decoder.state_dict()
    changed = [
        k for k, v in before.mask_decoder.state_dict().items() if not torch.equal(v, decoder[k])
    ]
    assert changed
    assert (out / "best" / "config.json").is_file()


def test_training_on_domain_randomised_scenes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = [
        "train", "--synthetic", "--randomized", "1", "--dense-layouts", "--model-config", "tiny",
        "-o", str(out),
        "--steps", "2", "--batch-images", "1", "--prompts-per-image", "2",
        "--interactive-rounds", "0", "--val-images", "2", "--no-progress", "--zoom-crops", "0.5",
    ]  # fmt: skip
    assert main(argv) == 0
    assert load_sam(out / "model", device="cpu").model is not None


def _grow_on_the_cli(coco_folder: Path, tmp_path: Path, *flags: str) -> tuple[Any, Any]:
    """Trains a tiny model 2 steps from ``--init`` with growth ``flags``: (start, trained)."""
    start = tmp_path / "start"
    build_model(tiny_sam_config(64), seed=7).save_pretrained(start)
    out = tmp_path / "run"
    argv = [
        "train", "--data", str(coco_folder / "annotations.json"),
        "--images", str(coco_folder / "images"), "--init", str(start), *flags,
        "-o", str(out), "--steps", "2", "--batch-images", "1",
        "--prompts-per-image", "2", "--interactive-rounds", "0", "--val-images", "1",
        "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 0
    return load_sam(start, device="cpu").model, load_sam(out / "model", device="cpu").model


def test_deepened_encoder_trains_from_the_cli(coco_folder: Path, tmp_path: Path) -> None:
    start, trained = _grow_on_the_cli(coco_folder, tmp_path, "--add-encoder-layers", "1")
    layers = start.config.vision_config.num_hidden_layers
    assert trained.config.vision_config.num_hidden_layers == layers + 1
    new_block = trained.vision_encoder.layers[layers]
    assert new_block.mlp.lin2.weight.abs().sum() > 0  # left its zero start: it was trained


def test_deepened_decoder_trains_from_the_cli(coco_folder: Path, tmp_path: Path) -> None:
    start, trained = _grow_on_the_cli(coco_folder, tmp_path, "--add-decoder-layers", "1")
    layers = start.config.mask_decoder_config.num_hidden_layers
    assert trained.config.mask_decoder_config.num_hidden_layers == layers + 1
    new_block = trained.mask_decoder.transformer.layers[layers]
    assert new_block.mlp.lin2.weight.abs().sum() > 0  # left its zero start: it was trained


def test_rebuilt_decoder_trains_from_the_cli(coco_folder: Path, tmp_path: Path) -> None:
    start, trained = _grow_on_the_cli(coco_folder, tmp_path, "--decoder-width", "64")
    assert start.config.mask_decoder_config.hidden_size == 32
    assert trained.config.mask_decoder_config.hidden_size == 64
    assert trained.vision_encoder.neck.conv1.out_channels == 64


def test_a_finer_patch_model_trains_from_scratch(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = [
        "train", "--synthetic", "--model-config", "tiny", "--patch-size", "8",
        "--decoder-width", "16", "--data-workers", "1", "-o", str(out),
        "--steps", "2", "--batch-images", "1", "--prompts-per-image", "2",
        "--interactive-rounds", "0", "--val-images", "1", "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 0
    sam = load_sam(out / "model", device="cpu")
    assert sam.model.config.vision_config.patch_size == 8
    assert sam.model.config.mask_decoder_config.hidden_size == 16
    embedding = sam.embed(np.zeros((128, 128, 3), np.uint8))
    assert tuple(embedding.features[0].shape) == (1, 16, 16, 16)  # 16 channels, 128 px / 8
    masks = sam.segment(embedding, boxes=[10, 10, 60, 50])
    assert masks.logits.shape[-2:] == (64, 64)  # low-res masks: 4 x the finer grid


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "-o", "x"], "either --synthetic"),
        (["train", "--synthetic", "--data", "a.json", "--images", "d", "-o", "x"], "either"),
        (["train", "--data", "missing.json", "--images", ".", "-o", "x"], "does not exist"),
        (["train", "--synthetic", "--steps", "0", "-o", "x"], "steps must be"),
        (["train", "--synthetic", "--randomized", "2", "-o", "x"], "randomized must be"),
        (
            ["train", "--data", "a.json", "--images", "d", "--randomized", "0.5", "-o", "x"],
            "--synthetic scenes only",
        ),
        (["train", "--synthetic", "--dense-layouts", "-o", "x"], "--randomized scenes only"),
        (["train", "--synthetic", "--zoom-crops", "2", "-o", "x"], "zoom_crops must be"),
        (["train", "--synthetic", "--add-encoder-layers", "2", "-o", "x"], "needs --init"),
        (["train", "--synthetic", "--init", "m", "--patch-size", "8", "-o", "x"], "from scratch"),
        (["train", "--synthetic", "--patch-size", "7", "-o", "x"], "does not divide"),
        (["train", "--synthetic", "--add-decoder-layers", "1", "-o", "x"], "needs --init"),
    ],
)
def test_bad_arguments_fail_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
