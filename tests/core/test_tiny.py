"""Consistent SAM configs, tiny test models, reproducible random init."""

from __future__ import annotations

import time

import pytest
import torch
from transformers import (
    Sam2Model,
    SamConfig,
    SamHQModel,
    SamMaskDecoderConfig,
    SamModel,
    SamPromptEncoderConfig,
    SamVisionConfig,
)

from composeseg.configs import sam_config, validate_sam_config
from composeseg.tiny import build_model, tiny_sam2_config, tiny_sam_config, tiny_sam_hq_config

TINY = {"sam": tiny_sam_config, "sam_hq": tiny_sam_hq_config, "sam2": tiny_sam2_config}
MODEL_CLASS = {"sam": SamModel, "sam_hq": SamHQModel, "sam2": Sam2Model}
BOX = torch.tensor([[[10.0, 20.0, 90.0, 100.0]]])  # (image, prompt, xyxy) pixels of the 128 input


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny models gain nothing from intra-op threads; on a shared CPU they stall for seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _embed_and_decode(model: torch.nn.Module, pixels: torch.Tensor):
    """``get_image_embeddings`` then a one-box forward on the first image's embedding."""
    with torch.no_grad():
        embeddings = model.get_image_embeddings(pixels)
        kwargs = {}
        if isinstance(model, SamHQModel):
            embeddings, intermediate = embeddings
            kwargs["intermediate_embeddings"] = [e[:1] for e in intermediate]
        first = [e[:1] for e in embeddings] if isinstance(embeddings, list) else embeddings[:1]
        out = model(image_embeddings=first, input_boxes=BOX, multimask_output=True, **kwargs)
    return embeddings, out


@pytest.mark.parametrize("kind", list(TINY))
def test_tiny_model_builds_and_runs_fast(kind):
    pixels = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    model = build_model(TINY[kind](), seed=0)
    embeddings, out = _embed_and_decode(model, pixels)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"{kind}: build + embed + decode took {elapsed:.2f} s"
    assert type(model) is MODEL_CLASS[kind]
    assert not model.training
    assert out.pred_masks.shape == (1, 1, 3, 32, 32)
    assert out.iou_scores.shape == (1, 1, 3)
    last = embeddings[-1] if isinstance(embeddings, list) else embeddings
    assert last.shape == (2, 32, 8, 8)
    # a random tiny model is a useful test subject: its embedding depends on the image
    assert (last[0] - last[1]).abs().max() > 1e-3


def test_sam_hq_exposes_intermediate_embeddings():
    config = tiny_sam_hq_config()
    assert config.mask_decoder_config.vit_dim == config.vision_config.hidden_size
    model = build_model(config)
    _, intermediate = model.get_image_embeddings(torch.zeros(1, 3, 128, 128))
    # one (B, H/16, W/16, hidden) map per global-attention block
    assert len(intermediate) == len(config.vision_config.global_attn_indexes)
    assert intermediate[0].shape == (1, 8, 8, 32)


def test_sam2_feature_pyramid_matches_config():
    config = tiny_sam2_config()
    model = build_model(config)
    embeddings = model.get_image_embeddings(torch.zeros(1, 3, 128, 128))
    sizes = [list(e.shape[-2:]) for e in embeddings]
    assert sizes == config.vision_config.backbone_feature_sizes == [[32, 32], [16, 16], [8, 8]]
    assert model.prompt_encoder.image_embedding_size == (8, 8)
    assert torch.equal(
        model.prompt_encoder.shared_embedding.positional_embedding,
        model.shared_image_embedding.positional_embedding,
    )


@pytest.mark.parametrize("kind", list(TINY))
def test_save_and_reload_round_trip(kind, tmp_path):
    pixels = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    model = build_model(TINY[kind](), seed=3)
    _, before = _embed_and_decode(model, pixels)
    model.save_pretrained(tmp_path)
    reloaded = MODEL_CLASS[kind].from_pretrained(tmp_path).eval()
    _, after = _embed_and_decode(reloaded, pixels)
    assert torch.equal(before.pred_masks, after.pred_masks)
    assert torch.equal(before.iou_scores, after.iou_scores)


@pytest.mark.parametrize("kind", list(TINY))
def test_build_model_is_reproducible_by_seed(kind):
    config = TINY[kind]()
    rng_state = torch.random.get_rng_state()
    first = build_model(config, seed=7).state_dict()
    assert torch.equal(torch.random.get_rng_state(), rng_state), "global RNG was consumed"
    again = build_model(config, seed=7).state_dict()
    other = build_model(config, seed=8).state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_build_model_positional_embedding_uses_meta_scale():
    config = tiny_sam_config()
    assert config.vision_config.scale == 16  # transformers would draw the matrix with std 16
    model = build_model(config, seed=0)
    std = model.shared_image_embedding.positional_embedding.std().item()
    assert 0.5 < std < 2.0


def test_build_model_rejects_other_configs():
    with pytest.raises(TypeError, match="SamVisionConfig"):
        build_model(SamVisionConfig())  # type: ignore[arg-type]


def test_default_sam_config_is_vit_b():
    config = sam_config()
    vision, default = config.vision_config, SamVisionConfig()
    vision_fields = (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "image_size",
        "patch_size",
        "window_size",
        "output_channels",
        "num_pos_feats",
        "mlp_dim",
    )
    for field in vision_fields:
        assert getattr(vision, field) == getattr(default, field), field
    assert list(vision.global_attn_indexes) == [2, 5, 8, 11]
    assert config.prompt_encoder_config.image_embedding_size == 64
    decoder, default_decoder = config.mask_decoder_config, SamMaskDecoderConfig()
    decoder_fields = (
        "hidden_size",
        "mlp_dim",
        "num_hidden_layers",
        "num_attention_heads",
        "iou_head_hidden_dim",
        "iou_head_depth",
        "attention_downsample_rate",
    )
    for field in decoder_fields:
        assert getattr(decoder, field) == getattr(default_decoder, field), field
    assert decoder.layer_norm_eps == 1e-5  # Meta's nn.LayerNorm default in the two-way transformer


def test_sam_config_scales_every_sub_config_together():
    config = sam_config(image_size=512, patch_size=8, output_channels=64, decoder_hidden_size=64)
    assert config.prompt_encoder_config.image_size == 512
    assert config.prompt_encoder_config.patch_size == 8
    assert config.prompt_encoder_config.image_embedding_size == 64
    assert config.prompt_encoder_config.hidden_size == 64
    assert config.vision_config.num_pos_feats == 32


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 1000}, "not a multiple of patch_size"),
        ({"num_attention_heads": 5}, "not divisible by num_attention_heads"),
        ({"global_attn_indexes": (2, 12)}, "global_attn_indexes"),
        ({"global_attn_indexes": (2, 2)}, "global_attn_indexes"),
        ({"output_channels": 128}, "must equal decoder_hidden_size"),
        ({"decoder_hidden_size": 100, "output_channels": 100}, "multiple of 8"),
        ({"decoder_num_heads": 3}, "decoder_num_heads 3"),
        ({"decoder_num_heads": 256}, "divisible by decoder_num_heads"),
        ({"window_size": -1}, "window_size"),
        ({"hidden_size": 0}, "hidden_size must be a positive int"),
        ({"mlp_dim": 0}, "mlp_dim"),
        ({"mask_input_channels": 6}, "mask_input_channels"),
        ({"iou_head_depth": 1}, "iou_head_depth"),
    ],
)
def test_sam_config_rejects_impossible_combinations(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sam_config(**kwargs)


@pytest.mark.parametrize(
    ("vision", "prompt", "message"),
    [
        ({"image_size": 512}, {}, "image_size"),
        ({"output_channels": 128}, {}, "output_channels"),
        ({"num_pos_feats": 64}, {}, "num_pos_feats"),
        ({}, {"patch_size": 8}, "patch_size"),
        ({}, {"hidden_size": 128}, "prompt encoder hidden_size"),
    ],
)
def test_validate_catches_transformers_inconsistencies(vision, prompt, message):
    """transformers builds these configs without complaint."""
    config = SamConfig(
        vision_config=SamVisionConfig(**vision),
        prompt_encoder_config=SamPromptEncoderConfig(**prompt),
    )
    with pytest.raises(ValueError, match=message):
        validate_sam_config(config)


def test_validate_accepts_consistent_configs():
    for config in (sam_config(), tiny_sam_config(), tiny_sam_config(256), tiny_sam_hq_config()):
        validate_sam_config(config)


@pytest.mark.parametrize("image_size", [100, 16, 0])
def test_tiny_sam2_rejects_bad_image_size(image_size):
    with pytest.raises(ValueError, match="multiple of 32"):
        tiny_sam2_config(image_size)


def test_tiny_sam2_other_size():
    config = tiny_sam2_config(256)
    model = build_model(config)
    _, out = _embed_and_decode(model, torch.zeros(1, 3, 256, 256))
    assert out.pred_masks.shape == (1, 1, 3, 64, 64)
