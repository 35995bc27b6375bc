"""Meta SAM checkpoint → transformers SamModel: architecture inference, key mapping, parity."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from segment_anything import sam_model_registry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds meta_reference

from meta_reference import build_meta_sam, build_tiny_meta_sam, perturb_
from transformers import SamModel, SamVisionConfig

from composeseg.convert import (
    convert_meta_sam_state_dict,
    is_meta_sam_state_dict,
    load_meta_sam_checkpoint,
    sam_config_from_meta_state_dict,
)
from composeseg.tiny import tiny_sam_config

IMG = 128
GRID = IMG // 16
LOGITS_ATOL = 1e-4
IOU_ATOL = 1e-5


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny models gain nothing from intra-op threads; on a shared CPU they stall for seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def meta_sam():
    return build_tiny_meta_sam(seed=0, img_size=IMG)


@pytest.fixture(scope="module")
def checkpoint(meta_sam, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "sam_tiny.pth"
    torch.save(meta_sam.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def hf_sam(checkpoint) -> SamModel:
    return load_meta_sam_checkpoint(checkpoint)


@pytest.fixture(scope="module")
def image_embeddings(meta_sam) -> torch.Tensor:
    pixels = torch.randn(1, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return meta_sam.image_encoder(pixels)


def test_config_recognised(hf_sam):
    vision = hf_sam.config.vision_config
    assert (vision.image_size, vision.patch_size) == (IMG, 16)
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads) == (32, 2, 2)
    assert list(vision.global_attn_indexes) == [1]
    assert vision.window_size == 4
    assert (vision.mlp_dim, vision.output_channels, vision.num_pos_feats) == (64, 32, 16)
    decoder = hf_sam.config.mask_decoder_config
    assert (decoder.hidden_size, decoder.num_hidden_layers, decoder.num_attention_heads) == (
        32,
        2,
        8,
    )
    assert (decoder.mlp_dim, decoder.attention_downsample_rate, decoder.iou_head_hidden_dim) == (
        64,
        2,
        32,
    )
    assert hf_sam.config.prompt_encoder_config.mask_input_channels == 8
    # the tiny Meta builder and composeseg's tiny config describe the same architecture
    expected = tiny_sam_config(IMG)
    for name in ("vision_config", "prompt_encoder_config", "mask_decoder_config"):
        assert getattr(hf_sam.config, name).to_dict() == getattr(expected, name).to_dict(), name
    assert not hf_sam.training
    assert (
        hf_sam.prompt_encoder.shared_embedding.positional_embedding
        is hf_sam.shared_image_embedding.positional_embedding
    )


def test_image_embeddings_match(meta_sam, hf_sam):
    pixels = torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = meta_sam.image_encoder(pixels)
    actual = hf_sam.get_image_embeddings(pixels)
    assert actual.shape == (2, 32, GRID, GRID)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)


BOXES = torch.tensor([[10.0, 20.0, 90.0, 100.0], [0.0, 5.0, 60.0, 127.0]])
POINTS = torch.tensor(
    [[[30.0, 40.0], [70.5, 12.0], [100.0, 90.0]], [[5.0, 5.0], [64.0, 64.0], [120.0, 3.0]]]
)
LABELS = torch.tensor([[1, 0, 1], [0, 1, -1]])
MASK = torch.randn(1, 1, 4 * GRID, 4 * GRID, generator=torch.Generator().manual_seed(3)) * 5

# name: (Meta prompt_encoder kwargs, transformers SamModel kwargs); P prompts → point batch P
PROMPT_CASES = {
    "box": (
        {"points": None, "boxes": BOXES[:1], "masks": None},
        {"input_boxes": BOXES[None, :1]},
    ),
    "two_boxes": (
        {"points": None, "boxes": BOXES, "masks": None},
        {"input_boxes": BOXES[None]},
    ),
    "points_fg_bg": (
        {"points": (POINTS[:1, :2], LABELS[:1, :2]), "boxes": None, "masks": None},
        {"input_points": POINTS[None, :1, :2], "input_labels": LABELS[None, :1, :2]},
    ),
    "two_point_sets_with_not_a_point": (
        {"points": (POINTS, LABELS), "boxes": None, "masks": None},
        {"input_points": POINTS[None], "input_labels": LABELS[None]},
    ),
    "box_and_points": (
        {"points": (POINTS, LABELS), "boxes": BOXES, "masks": None},
        {"input_points": POINTS[None], "input_labels": LABELS[None], "input_boxes": BOXES[None]},
    ),
    "box_and_mask": (
        {"points": None, "boxes": BOXES[:1], "masks": MASK},
        {"input_boxes": BOXES[None, :1], "input_masks": MASK},
    ),
    "points_and_mask": (
        {"points": (POINTS[:1], LABELS[:1]), "boxes": None, "masks": MASK},
        {"input_points": POINTS[None, :1], "input_labels": LABELS[None, :1], "input_masks": MASK},
    ),
    "mask_only": (
        {"points": None, "boxes": None, "masks": MASK},
        {"input_masks": MASK},
    ),
}


@pytest.mark.parametrize("multimask", [True, False], ids=["multimask", "single"])
@pytest.mark.parametrize("case", list(PROMPT_CASES))
def test_prompt_and_decoder_outputs_match(meta_sam, hf_sam, image_embeddings, case, multimask):
    meta_kwargs, hf_kwargs = PROMPT_CASES[case]
    with torch.no_grad():
        sparse, dense = meta_sam.prompt_encoder(**meta_kwargs)
        expected_masks, expected_iou = meta_sam.mask_decoder(
            image_embeddings=image_embeddings,
            image_pe=meta_sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
        out = hf_sam(image_embeddings=image_embeddings, multimask_output=multimask, **hf_kwargs)
    num_prompts = sparse.shape[0]
    num_masks = 3 if multimask else 1
    assert out.pred_masks.shape == (1, num_prompts, num_masks, 4 * GRID, 4 * GRID)
    assert out.iou_scores.shape == (1, num_prompts, num_masks)
    torch.testing.assert_close(out.pred_masks[0], expected_masks, atol=LOGITS_ATOL, rtol=0)
    torch.testing.assert_close(out.iou_scores[0], expected_iou, atol=IOU_ATOL, rtol=0)


def test_end_to_end_from_pixels_matches(meta_sam, hf_sam):
    pixels = torch.randn(1, 3, IMG, IMG, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        sparse, dense = meta_sam.prompt_encoder(points=None, boxes=BOXES[:1], masks=None)
        expected, _ = meta_sam.mask_decoder(
            image_embeddings=meta_sam.image_encoder(pixels),
            image_pe=meta_sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )
        out = hf_sam(pixel_values=pixels, input_boxes=BOXES[None, :1])
    torch.testing.assert_close(out.pred_masks[0], expected, atol=LOGITS_ATOL, rtol=0)


def test_decoder_head_count_is_a_hint(tmp_path):
    """The two-way transformer's heads leave no trace in the shapes: they are passed in."""
    meta = build_meta_sam(
        img_size=64,
        embed_dim=32,
        depth=1,
        num_heads=4,
        global_attn_indexes=(0,),
        window_size=2,
        prompt_embed_dim=32,
        mask_in_chans=4,
        decoder_depth=1,
        decoder_mlp_dim=16,
        decoder_num_heads=4,
        iou_head_hidden_dim=16,
    )
    perturb_(meta, seed=5)
    path = tmp_path / "heads4.pth"
    torch.save({"state_dict": meta.state_dict()}, path)
    model = load_meta_sam_checkpoint(path, decoder_num_attention_heads=4)
    assert model.config.mask_decoder_config.num_attention_heads == 4
    assert model.config.vision_config.num_attention_heads == 4
    assert model.config.vision_config.global_attn_indexes == [0]
    embeddings = torch.randn(1, 32, 4, 4, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        sparse, dense = meta.prompt_encoder(points=None, boxes=BOXES[:1] / 2, masks=None)
        expected, _ = meta.mask_decoder(
            embeddings, meta.prompt_encoder.get_dense_pe(), sparse, dense, True
        )
        actual = model(image_embeddings=embeddings, input_boxes=BOXES[None, :1] / 2).pred_masks[0]
    torch.testing.assert_close(actual, expected, atol=LOGITS_ATOL, rtol=0)


@pytest.mark.parametrize(
    ("name", "hidden", "depth", "heads", "global_indexes"),
    [
        ("vit_b", 768, 12, 12, [2, 5, 8, 11]),
        ("vit_l", 1024, 24, 16, [5, 11, 17, 23]),
        ("vit_h", 1280, 32, 16, [7, 15, 23, 31]),
    ],
)
def test_released_architectures_recognised(name, hidden, depth, heads, global_indexes):
    """Meta's three builds, on the meta device (shapes only), convert key for key."""
    with torch.device("meta"):
        state_dict = sam_model_registry[name]().state_dict()
    config = sam_config_from_meta_state_dict(state_dict)
    vision = config.vision_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads) == (
        hidden,
        depth,
        heads,
    )
    assert list(vision.global_attn_indexes) == global_indexes
    assert (vision.window_size, vision.image_size, vision.patch_size) == (14, 1024, 16)
    assert (vision.mlp_dim, vision.output_channels, vision.num_pos_feats) == (4 * hidden, 256, 128)
    assert config.prompt_encoder_config.image_embedding_size == 64
    converted = convert_meta_sam_state_dict(state_dict)
    assert len(converted) == len(state_dict) + 1  # the Fourier matrix lands under two tied names
    if name == "vit_b":  # transformers' default SamConfig dims are ViT-B's
        default = SamVisionConfig()
        for field in (
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "mlp_dim",
            "window_size",
            "output_channels",
            "num_pos_feats",
            "image_size",
        ):
            assert getattr(vision, field) == getattr(default, field), field
        assert list(vision.global_attn_indexes) == list(default.global_attn_indexes)


def test_is_meta_sam_state_dict(meta_sam, hf_sam):
    state_dict = meta_sam.state_dict()
    assert is_meta_sam_state_dict(state_dict)
    assert not is_meta_sam_state_dict(hf_sam.state_dict())
    assert not is_meta_sam_state_dict({"model": state_dict})
    assert not is_meta_sam_state_dict([1, 2])
    assert not is_meta_sam_state_dict({k: 0 for k in state_dict})


def test_convert_does_not_touch_the_input(meta_sam):
    state_dict = meta_sam.state_dict()
    keys = list(state_dict)
    converted = convert_meta_sam_state_dict(state_dict)
    assert list(state_dict) == keys
    assert converted["vision_encoder.pos_embed"] is state_dict["image_encoder.pos_embed"]
    gaussian = state_dict["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"]
    assert converted["shared_image_embedding.positional_embedding"] is gaussian
    assert converted["prompt_encoder.shared_embedding.positional_embedding"] is gaussian


def test_convert_lists_unexpected_and_missing_keys(meta_sam):
    state_dict = dict(meta_sam.state_dict())
    state_dict["image_encoder.blocks.0.attn.extra"] = torch.zeros(3)
    del state_dict["mask_decoder.transformer.layers.1.norm3.bias"]
    with pytest.raises(ValueError) as info:
        convert_meta_sam_state_dict(state_dict)
    message = str(info.value)
    assert "image_encoder.blocks.0.attn.extra" in message
    assert "mask_decoder.transformer.layers.1.layer_norm3.bias" in message


def test_convert_reports_shape_mismatch(meta_sam):
    state_dict = dict(meta_sam.state_dict())
    state_dict["mask_decoder.iou_prediction_head.layers.1.bias"] = torch.zeros(5)
    with pytest.raises(ValueError, match=r"iou_prediction_head\.layers\.0\.bias"):
        convert_meta_sam_state_dict(state_dict)


def test_unknown_architecture_names_the_tensor(meta_sam, tmp_path):
    state_dict = dict(meta_sam.state_dict())
    state_dict["image_encoder.blocks.0.attn.rel_pos_h"] = torch.zeros(8, 16)  # even length
    path = tmp_path / "odd.pth"
    torch.save(state_dict, path)
    with pytest.raises(ValueError, match=r"odd\.pth.*rel_pos_h has even length 8"):
        load_meta_sam_checkpoint(path)


@pytest.mark.parametrize("wrapper", ["model", "state_dict"])
def test_wrapped_state_dict_accepted(meta_sam, hf_sam, tmp_path, wrapper):
    path = tmp_path / "wrapped.pth"
    torch.save({wrapper: meta_sam.state_dict(), "epoch": 3}, path)
    model = load_meta_sam_checkpoint(str(path))
    for key, value in hf_sam.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_not_a_sam_state_dict(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3), "fc.bias": torch.zeros(2)}, path)
    with pytest.raises(
        ValueError, match=r"resnet\.pth is not a Meta SAM checkpoint.*conv1\.weight"
    ):
        load_meta_sam_checkpoint(path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.pth"
    path.write_bytes(
        torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0))
        .to(torch.uint8)
        .numpy()
        .tobytes()
    )
    with pytest.raises(ValueError, match=r"corrupt\.pth.*weights_only=True"):
        load_meta_sam_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        load_meta_sam_checkpoint(tmp_path / "nope.pth")


def test_directory(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        load_meta_sam_checkpoint(tmp_path)
