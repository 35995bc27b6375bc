"""resize_input: a SAM model moved to another input frame keeps its size-free weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import SamModel

from composeseg import load_sam
from composeseg.configs import validate_sam_config
from composeseg.pipelines.cli import main
from composeseg.synthetic import SceneConfig, generate_scene, write_coco
from composeseg.tiny import build_model, tiny_sam_config
from composeseg.train.resize import resize_input

POSITIONAL = ("vision_encoder.pos_embed", "attn.rel_pos_h", "attn.rel_pos_w")


@pytest.fixture(scope="module")
def small() -> SamModel:
    """A tiny SAM at 128 px: 8 x 8 patches of 16 px, block 1 global, window 4.

    Its positional weights (zeros at init) become linear ramps, which both resamplings must
    reproduce away from the borders.
    """
    model = build_model(tiny_sam_config(128), seed=3)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        pos = model.vision_encoder.pos_embed  # (1, 8, 8, 32)
        coord = torch.arange(8, dtype=torch.float32) - 3.5
        ax, ay, d = (torch.from_numpy(rng.normal(size=32).astype(np.float32)) for _ in range(3))
        pos.copy_((coord[None, :, None] * ax + coord[:, None, None] * ay + d)[None])
        for layer in model.vision_encoder.layers:
            for table in (layer.attn.rel_pos_h, layer.attn.rel_pos_w):
                offset = torch.arange(len(table), dtype=torch.float32) - (len(table) - 1) / 2
                slope = torch.from_numpy(rng.normal(size=table.shape[1]).astype(np.float32))
                table.copy_(offset[:, None] * slope + 0.1)
    return model


@pytest.fixture(scope="module")
def doubled(small: SamModel) -> SamModel:
    return resize_input(small, 256)


def _is_global_rel_pos(name: str) -> bool:
    return name.startswith("vision_encoder.layers.1.attn.rel_pos_")


def test_config_sizes_follow_the_new_frame(small: SamModel, doubled: SamModel) -> None:
    vision, prompt = doubled.config.vision_config, doubled.config.prompt_encoder_config
    assert vision.image_size == 256 and prompt.image_size == 256
    assert prompt.image_embedding_size == 16
    validate_sam_config(doubled.config)  # every sub-config agrees
    assert small.config.vision_config.image_size == 128  # the input model is untouched
    assert not doubled.training and doubled.dtype == torch.float32


def test_only_positional_weights_change(small: SamModel, doubled: SamModel) -> None:
    before, after = small.state_dict(), doubled.state_dict()
    assert before.keys() == after.keys()
    grid = 256 // 16
    for name, value in after.items():
        if name == "vision_encoder.pos_embed":
            assert value.shape == (1, grid, grid, before[name].shape[-1])
        elif _is_global_rel_pos(name):
            assert value.shape == (2 * grid - 1, before[name].shape[1])
        else:  # windowed rel-pos tables, every decoder and prompt weight: identical
            assert torch.equal(value, before[name]), name


def test_pos_embed_is_resampled_in_place(small: SamModel, doubled: SamModel) -> None:
    old = small.state_dict()["vision_encoder.pos_embed"][0]  # (8, 8, C) linear ramps
    new = doubled.state_dict()["vision_encoder.pos_embed"][0]  # (16, 16, C)
    # new patch i covers old patch coordinate (i + 0.5) / 2 - 0.5: the ramp at that point
    slope_x, slope_y = old[0, 1] - old[0, 0], old[1, 0] - old[0, 0]
    coord = (torch.arange(16, dtype=torch.float32) + 0.5) / 2 - 0.5
    want = old[0, 0] + coord[None, :, None] * slope_x + coord[:, None, None] * slope_y
    inner = slice(3, 13)  # bicubic reads two cells beyond: borders replicate
    # PyTorch's bicubic (a = -0.75) bends a ramp by <= 0.05 cell; a wrong sampling grid
    # (align_corners=True, or no resampling) would be off by 0.15 cell or more here
    tolerance = 0.06 * (slope_x.abs() + slope_y.abs()) + 1e-4
    assert ((new - want)[inner, inner].abs() <= tolerance).all()
    assert not torch.allclose(new[0, 0], new[15, 15])


def test_global_rel_pos_tables_are_stretched(small: SamModel, doubled: SamModel) -> None:
    for axis in "hw":
        key = f"vision_encoder.layers.1.attn.rel_pos_{axis}"
        source, table = small.state_dict()[key], doubled.state_dict()[key]  # (15, D), (31, D)
        # the offset-0 row stays in the middle and offsets shrink by 15 / 31
        assert torch.allclose(table[15], source[7], atol=1e-5)
        slope = source[8] - source[7]
        offsets = torch.arange(31, dtype=torch.float32) - 15
        want = source[7] + offsets[:, None] * (15 / 31) * slope
        assert torch.allclose(table[1:-1], want[1:-1], atol=1e-4)


def test_resized_model_segments_after_save_and_load(doubled: SamModel, tmp_path: Path) -> None:
    doubled.save_pretrained(tmp_path)
    sam = load_sam(tmp_path, device="cpu")
    assert sam.image_size == 256
    image = np.random.default_rng(0).integers(0, 255, (90, 140, 3), dtype=np.uint8)
    prediction = sam.segment(image, boxes=np.array([[20, 10, 90, 70]], np.float32))
    assert prediction.masks.shape == (1, 1, 90, 140) and prediction.masks.dtype == bool
    assert prediction.logits.shape[-2:] == (64, 64)  # 4 x the 16 x 16 embedding
    assert np.isfinite(prediction.scores).all()


def test_same_size_gives_an_equal_copy(small: SamModel) -> None:
    same = resize_input(small, 128)
    assert same is not small
    for name, value in small.state_dict().items():
        assert torch.equal(same.state_dict()[name], value), name
    same.state_dict()["vision_encoder.pos_embed"].add_(1.0)  # a copy, not shared storage
    assert not torch.equal(
        same.state_dict()["vision_encoder.pos_embed"],
        small.state_dict()["vision_encoder.pos_embed"],
    )


def test_shrinking_works_too(small: SamModel) -> None:
    half = resize_input(small, 64)
    assert half.config.prompt_encoder_config.image_embedding_size == 4
    with torch.no_grad():
        out = half.vision_encoder(torch.randn(1, 3, 64, 64)).last_hidden_state
    assert out.shape == (1, 32, 4, 4)


@pytest.mark.parametrize("size", [0, -16, 100, 130])
def test_bad_sizes(small: SamModel, size: int) -> None:
    with pytest.raises(ValueError, match=f"multiple of 16, got {size}"):
        resize_input(small, size)


def test_train_cli_image_size_flag(tmp_path: Path) -> None:
    data = tmp_path / "coco"
    write_coco(
        [
            generate_scene(seed, SceneConfig(height=72, width=96, max_objects=2))
            for seed in range(2)
        ],
        data,
    )
    start = tmp_path / "start"
    build_model(tiny_sam_config(128), seed=7).save_pretrained(start)
    out = tmp_path / "run"
    argv = [
        "train",
        "--data", str(data / "annotations.json"),
        "--images", str(data / "images"),
        "--init", str(start),
        "--image-size", "64",
        "--freeze-image-encoder",
        "-o", str(out),
        "--steps", "1",
        "--batch-images", "1",
        "--prompts-per-image", "1",
        "--interactive-rounds", "0",
        "--val-images", "1",
        "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 0
    trained = load_sam(out / "model", device="cpu")
    assert trained.image_size == 64
    assert trained.model.config.prompt_encoder_config.image_embedding_size == 4
