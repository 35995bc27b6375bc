"""Tiny SAM / SAM-HQ / SAM 2 configurations and reproducible random models, for tests and
small training runs.

The ``tiny_*`` configs build models that run a forward pass in milliseconds on a CPU (they go
through :func:`composeseg.configs.sam_config`, so their sub-configs agree).
:func:`build_model` turns any SAM, SAM-HQ or SAM 2 config into a randomly initialised model,
reproducibly by seed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import (
    Sam2Config,
    Sam2Model,
    SamConfig,
    SamHQConfig,
    SamHQModel,
    SamModel,
)

from composeseg.configs import sam_config, validate_sam_config

__all__ = ["build_model", "tiny_sam2_config", "tiny_sam_config", "tiny_sam_hq_config"]


def tiny_sam_config(image_size: int = 128) -> SamConfig:
    """A very small ``SamConfig``: 2 ViT blocks of width 32 (block 1 global, window 4), patch 16.

    The image embedding is ``(32, image_size // 16, image_size // 16)``; low-res masks are
    ``image_size // 4`` square. Builds and runs a forward in milliseconds on a CPU.
    """
    return sam_config(
        image_size=image_size,
        patch_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        window_size=4,
        global_attn_indexes=(1,),
        mlp_dim=64,
        output_channels=32,
        decoder_hidden_size=32,
        decoder_num_layers=2,
        decoder_num_heads=8,  # Meta's value: a tiny Meta checkpoint converts without hints
        decoder_mlp_dim=64,
        mask_input_channels=8,
        iou_head_hidden_dim=32,
    )


def tiny_sam_hq_config(image_size: int = 128) -> SamHQConfig:
    """The SAM-HQ counterpart of :func:`tiny_sam_config` (same sizes).

    SAM-HQ's vision encoder returns, besides the image embedding, the ``(B, H/16, W/16,
    hidden_size)`` output of every global-attention block (``intermediate_embeddings``); the
    mask decoder fuses the first one, so ``mask_decoder_config.vit_dim`` is the vision width.
    """
    base = tiny_sam_config(image_size)
    vision: Any = base.vision_config
    prompt: Any = base.prompt_encoder_config
    decoder_config: Any = base.mask_decoder_config
    decoder = decoder_config.to_dict()
    decoder["vit_dim"] = vision.hidden_size
    config = SamHQConfig(
        vision_config=_own_keys(vision.to_dict()),
        prompt_encoder_config=_own_keys(prompt.to_dict()),
        mask_decoder_config=_own_keys(decoder),
    )
    validate_sam_config(config)
    return config


def _own_keys(config_dict: dict) -> dict:
    """Drops the bookkeeping entries of ``PreTrainedConfig.to_dict`` that name the model type."""
    return {
        k: v
        for k, v in config_dict.items()
        if k not in {"model_type", "transformers_version", "architectures"}
    }


def tiny_sam2_config(image_size: int = 128) -> Sam2Config:
    """A very small ``Sam2Config``: a 4-stage Hiera backbone (dims 8/16/32/64, 1-1-2-1 blocks).

    Hiera's patch embedding has stride 4 and each later stage halves the resolution, so the
    backbone features are ``image_size / 4, / 8, / 16, / 32``; the FPN keeps the first three
    levels and the mask decoder works on the ``/ 16`` one: the image embedding is
    ``(32, image_size // 16, image_size // 16)`` like :func:`tiny_sam_config`'s.

    Raises:
        ValueError: ``image_size`` not a positive multiple of 32.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32:
        raise ValueError(f"image_size must be a positive multiple of 32, got {image_size!r}")
    if image_size % 32:
        raise ValueError(f"image_size must be a multiple of 32 (4 Hiera stages), got {image_size}")
    dims = [8, 16, 32, 64]
    hidden = 32
    stride0 = image_size // 4  # a multiple of 8, so 8 x 8 stage-0 windows tile it (required by
    # the windowed positional embedding)
    backbone = {
        "hidden_size": dims[0],
        "num_attention_heads": 1,
        "image_size": [image_size, image_size],
        "patch_kernel_size": [7, 7],
        "patch_stride": [4, 4],
        "patch_padding": [3, 3],
        "query_stride": [2, 2],
        "window_positional_embedding_background_size": [4, 4],
        "num_query_pool_stages": 3,
        "blocks_per_stage": [1, 1, 2, 1],
        "embed_dim_per_stage": dims,
        "num_attention_heads_per_stage": [1, 1, 2, 2],
        "window_size_per_stage": [8, 4, 4, 2],
        "global_attention_blocks": [3],
    }
    feature_sizes = [[stride0 >> k, stride0 >> k] for k in range(3)]
    vision = {
        "backbone_config": {"model_type": "sam2_hiera_det_model", **backbone},
        "backbone_channel_list": dims[::-1],
        "backbone_feature_sizes": feature_sizes,
        "fpn_hidden_size": hidden,
        "fpn_top_down_levels": [2, 3],
        "num_feature_levels": 3,
    }
    prompt = {
        "hidden_size": hidden,
        "image_size": image_size,
        "patch_size": 16,
        "mask_input_channels": 8,
    }
    decoder = {
        "hidden_size": hidden,
        "mlp_dim": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "iou_head_hidden_dim": 32,
    }
    return Sam2Config(
        vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder
    )


def build_model(config: SamConfig | SamHQConfig | Sam2Config, seed: int = 0) -> nn.Module:
    """A randomly initialised ``SamModel`` / ``SamHQModel`` / ``Sam2Model`` in eval mode.

    The same ``config`` and ``seed`` give bit-identical weights; the global torch RNG is left
    untouched. Two departures from transformers' own random init, so that a random model is a
    useful test subject (its masks depend on the image and on where the prompt is):

    - transformers initialises the SAM / SAM-HQ ViT with ``initializer_range=1e-10``, which makes
      every image embedding identical (~1e-20); we draw the image-encoder linear and conv
      weights from N(0, 0.02) instead (SAM 2's Hiera already uses 0.02);
    - transformers draws the random-Fourier positional-embedding matrix with std
      ``vision hidden_size // 2`` (384 for ViT-B, aliasing every coordinate); we use Meta's
      std of 1, and give SAM 2's prompt encoder the same matrix as its image side (transformers
      draws two independent ones there).

    Raises:
        TypeError: ``config`` is not one of the three config classes.
    """
    if isinstance(config, SamHQConfig):
        model_class: type[nn.Module] = SamHQModel
    elif isinstance(config, Sam2Config):
        model_class = Sam2Model
    elif isinstance(config, SamConfig):
        model_class = SamModel
    else:
        raise TypeError(
            f"expected a SamConfig, SamHQConfig or Sam2Config, got {type(config).__name__}"
        )
    if isinstance(config, (SamConfig, SamHQConfig)):
        validate_sam_config(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
        generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            _reinit_sam_parts(model, generator)
    return model.eval()


def _reinit_sam_parts(model: nn.Module, generator: torch.Generator) -> None:
    """Applies the init fixes described in :func:`build_model`, in place, deterministically."""
    if isinstance(model, (SamModel, SamHQModel)):
        for module in model.vision_encoder.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                module.weight.normal_(0.0, 0.02, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
    shared = getattr(model, "shared_image_embedding", None)
    if shared is not None:
        matrix = shared.positional_embedding
        matrix.copy_(torch.randn(matrix.shape, generator=generator, dtype=matrix.dtype))
        # SAM / SAM-HQ tie the prompt encoder's copy to this one; SAM 2 keeps a separate buffer
        # (``_tied_weights_keys = {}``), randomly drawn on its own: make them equal, as in
        # every real checkpoint, so prompts and image share one coordinate encoding
        prompt_encoder: Any = model.prompt_encoder
        prompt_copy = prompt_encoder.shared_embedding.positional_embedding
        if prompt_copy is not matrix:
            prompt_copy.copy_(matrix)
