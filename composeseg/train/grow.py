"""Grow a trained SAM: a deeper image encoder or mask decoder, or a wider decoder.

A larger encoder trained from scratch costs the whole recipe again. Appending transformer blocks
whose residual branches start at zero (the attention output projection and the MLP's second
linear are zero, as in Goyal et al.'s zero-init residuals and ReZero) keeps the model's function
exactly, so fine-tuning starts from the trained model's quality and only the new blocks have to
learn. The last new block attends globally, as ViTDet ends each stage; the others use the
encoder's windows.

The mask decoder's two-way blocks normalise after each residual (post-norm), so a new block with
zero residual branches still renormalises the tokens: :func:`deepen_decoder` keeps the function
close, not exact.

Widening the decoder cannot keep the function this way (layer norms and attention mix every
channel), so :func:`rebuild_decoder` keeps the costly part, the image encoder's trunk, and starts
the neck, prompt encoder and mask decoder afresh at the new width. The mask is a dot product of
``width / 8`` upscaled channels with a per-mask vector, so the width bounds how finely a decoder
can tell neighbouring objects apart.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from transformers import SamModel

from composeseg.train.model import (
    build_model_for_training,
    check_trainable,
    freeze_fourier_matrix,
    reset_to_pytorch_defaults,
)


def _config_to_deepen(model: SamModel, layers: int) -> Any:
    check_trainable(model)
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    return copy.deepcopy(model.config)


def _with_new_blocks(model: SamModel, config: Any, prefix: str, new: range) -> SamModel:
    """A float32 ``SamModel(config)`` holding ``model``'s weights; only blocks ``prefix{i}.``
    for ``i`` in ``new`` may be missing from them."""
    grown = SamModel(config).float()
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    new_prefixes = tuple(f"{prefix}{i}." for i in new)
    if unexpected or any(not key.startswith(new_prefixes) for key in missing):
        raise ValueError(f"weights do not match the deepened model: {missing + unexpected}")
    return grown


def deepen_encoder(model: SamModel, layers: int, seed: int = 0) -> SamModel:
    """A float32 copy of ``model`` with ``layers`` more vision-encoder blocks before the neck.

    The new blocks' inner weights get PyTorch's default initialisation
    (:func:`composeseg.train.model.reset_to_pytorch_defaults`, as a new model gets); their output
    projections are zero, so the copy's embeddings equal the original's until it is trained.

    Args:
        model: a transformers ``SamModel`` (SAM / SlimSAM).
        layers: how many blocks to append, >= 1.
        seed: seeds the new blocks' weights; the global torch RNG is left untouched.

    Raises:
        ValueError: ``layers`` < 1.
        TypeError: not a ``SamModel``.
    """
    config = _config_to_deepen(model, layers)
    vision = config.vision_config
    old = int(vision.num_hidden_layers)
    vision.num_hidden_layers = old + layers
    vision.global_attn_indexes = [*vision.global_attn_indexes, old + layers - 1]
    blocks = "vision_encoder.layers."
    deeper: Any = _with_new_blocks(model, config, blocks, range(old, old + layers))
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(int(seed))
        for block in deeper.vision_encoder.layers[old:]:
            reset_to_pytorch_defaults(block)
            for branch_out in (block.attn.proj, block.mlp.lin2):
                nn.init.zeros_(branch_out.weight)
                nn.init.zeros_(branch_out.bias)
            # Meta's relative-position tables start at zero: no offset preferred before training.
            nn.init.zeros_(block.attn.rel_pos_h)
            nn.init.zeros_(block.attn.rel_pos_w)
    freeze_fourier_matrix(deeper)
    return deeper.eval()


def deepen_decoder(model: SamModel, layers: int, seed: int = 0) -> SamModel:
    """A float32 copy of ``model`` with ``layers`` more two-way blocks in its mask decoder.

    The new blocks come after the existing ones, before the final token-to-image attention. Their
    inner weights get PyTorch's default initialisation, and the output projections of their
    three attentions and their MLP's second linear are zero. Each new block then only
    renormalises tokens that a norm has just scaled and shifted, so the copy's masks start close
    to the original's, not equal (the packaged demo SAM, one block: box mIoU within 0.002).

    Args:
        model: a transformers ``SamModel`` (SAM / SlimSAM).
        layers: how many two-way blocks to append, >= 1.
        seed: seeds the new blocks' weights; the global torch RNG is left untouched.

    Raises:
        ValueError: ``layers`` < 1.
        TypeError: not a ``SamModel``.
    """
    config = _config_to_deepen(model, layers)
    old = int(config.mask_decoder_config.num_hidden_layers)
    config.mask_decoder_config.num_hidden_layers = old + layers
    blocks = "mask_decoder.transformer.layers."
    deeper: Any = _with_new_blocks(model, config, blocks, range(old, old + layers))
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(int(seed))
        for block in deeper.mask_decoder.transformer.layers[old:]:
            reset_to_pytorch_defaults(block)
            for attention in (
                block.self_attn,
                block.cross_attn_token_to_image,
                block.cross_attn_image_to_token,
            ):
                nn.init.zeros_(attention.out_proj.weight)
                nn.init.zeros_(attention.out_proj.bias)
            nn.init.zeros_(block.mlp.lin2.weight)
            nn.init.zeros_(block.mlp.lin2.bias)
            # Plain norms: copying the previous norms' scale would apply it twice.
            norms = (block.layer_norm1, block.layer_norm2, block.layer_norm3, block.layer_norm4)
            for norm in norms:
                nn.init.ones_(norm.weight)
                nn.init.zeros_(norm.bias)
    freeze_fourier_matrix(deeper)
    return deeper.eval()


def rebuild_decoder(model: SamModel, width: int, seed: int = 0) -> SamModel:
    """A float32 model with ``model``'s image-encoder trunk and a new decoder of ``width``.

    The patch embedding, position embeddings and transformer blocks are copied; the neck, the
    prompt encoder and the mask decoder are built at ``width`` channels (decoder MLP ``4 *
    width``, IoU head ``width``) and initialised as a model trained from scratch is
    (:func:`composeseg.train.model.init_for_training`). Image embeddings become ``(width,
    S/P, S/P)`` (P: the patch side); everything else (frame, patch size, heads, layer counts)
    stays.

    Args:
        model: a transformers ``SamModel`` (SAM / SlimSAM).
        width: decoder channels, a multiple of 8 that the decoder's heads (and its cross
            attention's ``width / attention_downsample_rate``) divide.
        seed: seeds the new modules' weights; the global torch RNG is left untouched.

    Raises:
        ValueError: a width the decoder cannot take, naming the rule.
        TypeError: not a ``SamModel``.
    """
    check_trainable(model)
    if isinstance(width, bool) or not isinstance(width, int) or width < 8:
        raise ValueError(f"width must be an int >= 8, got {width!r}")
    config: Any = copy.deepcopy(model.config)
    config.vision_config.output_channels = width
    config.vision_config.num_pos_feats = width // 2
    config.prompt_encoder_config.hidden_size = width
    decoder = config.mask_decoder_config
    decoder.hidden_size = width
    decoder.mlp_dim = 4 * width
    decoder.iou_head_hidden_dim = width
    rebuilt = build_model_for_training(config, seed)
    trunk = {
        key: value
        for key, value in model.state_dict().items()
        if key.startswith("vision_encoder.") and not key.startswith("vision_encoder.neck.")
    }
    _, unexpected = rebuilt.load_state_dict(trunk, strict=False)
    if unexpected:
        raise ValueError(f"weights do not match the rebuilt encoder: {unexpected}")
    return rebuilt.float().eval()
