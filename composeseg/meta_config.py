"""The architecture of a Meta ``segment_anything`` SAM checkpoint, read off its tensor shapes.

:func:`sam_config_from_meta_state_dict` returns the matching transformers ``SamConfig``; what
the tensors cannot tell (head counts, global-attention blocks, image size without an absolute
positional embedding) comes from Meta's code unless given (see :mod:`composeseg.convert`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from transformers import SamConfig

from composeseg.configs import sam_config

__all__ = ["is_meta_sam_state_dict", "sam_config_from_meta_state_dict"]

# Keys every Meta SAM state dict has, one per sub-module.
_SIGNATURE_KEYS = (
    "image_encoder.patch_embed.proj.weight",
    "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
    "mask_decoder.iou_token.weight",
)
_GAUSSIAN = "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"


def is_meta_sam_state_dict(state_dict: Mapping[str, Any]) -> bool:
    """Whether ``state_dict`` looks like a Meta ``segment_anything`` SAM state dict.

    True when it is a mapping holding tensors under Meta's key names for the three
    sub-modules (``image_encoder.``, ``prompt_encoder.``, ``mask_decoder.``). A transformers
    state dict, a wrapper such as ``{"model": sd}`` or a SAM 2 checkpoint gives False.
    """
    if not isinstance(state_dict, Mapping):
        return False
    return all(isinstance(state_dict.get(key), torch.Tensor) for key in _SIGNATURE_KEYS)


def _shape(state_dict: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise ValueError(f"not a complete Meta SAM state dict: missing key {key!r}")
    return tuple(state_dict[key].shape)


def _indexes(state_dict: Mapping[str, torch.Tensor], prefix: str) -> list[int]:
    """The sorted ``N`` of the keys ``prefix + N + '.…'``, checked to be 0..n-1."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = sorted({int(m.group(1)) for key in state_dict if (m := pattern.match(key))})
    if found != list(range(len(found))):
        raise ValueError(f"the indexes under {prefix!r} are not 0..n-1: {found}")
    return found


def sam_config_from_meta_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    *,
    decoder_num_attention_heads: int = 8,
    num_attention_heads: int | None = None,
    image_size: int | None = None,
) -> SamConfig:
    """The ``SamConfig`` of the model that produced a Meta SAM state dict, read from its shapes.

    Recognises ViT-B/L/H and any other ``segment_anything.modeling`` build: width, depth and
    MLP width of the image encoder, heads (width / relative-position table width), the blocks
    with global attention (relative-position table ``2 * grid - 1`` long) and the window size
    (the others' tables are ``2 * window - 1``), image and patch size, neck channels, the
    prompt encoder's width and mask channels, and the mask decoder's width, depth, MLP width,
    attention downsample rate, number of mask outputs and IoU head.

    Args:
        state_dict: Meta key names → tensors (only shapes are read; ``meta`` tensors work).
        decoder_num_attention_heads: the two-way transformer's heads, which no shape records
            (8 in Meta's code).
        num_attention_heads: image-encoder heads, needed only without relative positions.
        image_size: model input size in pixels, needed only without ``pos_embed``.

    Raises:
        ValueError: not a SAM state dict, or an architecture transformers' ``SamModel`` cannot
            express (the message names the offending key and shape).
    """
    if not is_meta_sam_state_dict(state_dict):
        raise ValueError(
            "not a Meta SAM state dict: expected tensors under "
            f"{', '.join(repr(k) for k in _SIGNATURE_KEYS)}"
        )
    sd = state_dict
    hidden, num_channels, patch_h, patch_w = _shape(sd, "image_encoder.patch_embed.proj.weight")
    if patch_h != patch_w:
        raise ValueError(f"non-square patches are not supported: patch {patch_h}x{patch_w}")
    patch = patch_h

    blocks = _indexes(sd, "image_encoder.blocks.")
    if not blocks:
        raise ValueError("the image encoder has no blocks (no 'image_encoder.blocks.0.*' keys)")
    depth = len(blocks)
    mlp_dim = _shape(sd, "image_encoder.blocks.0.mlp.lin1.weight")[0]
    qkv_bias = "image_encoder.blocks.0.attn.qkv.bias" in sd
    use_rel_pos = "image_encoder.blocks.0.attn.rel_pos_h" in sd
    use_abs_pos = "image_encoder.pos_embed" in sd

    if use_abs_pos:
        pos = _shape(sd, "image_encoder.pos_embed")
        if len(pos) != 4 or pos[1] != pos[2] or pos[3] != hidden:
            raise ValueError(
                f"image_encoder.pos_embed has shape {pos}, expected (1, grid, grid, {hidden})"
            )
        grid = pos[1]
        if image_size is not None and image_size != grid * patch:
            raise ValueError(
                f"image_size={image_size} disagrees with pos_embed: "
                f"{grid} x {patch} = {grid * patch}"
            )
    elif image_size is not None:
        grid = image_size // patch
    else:
        raise ValueError(
            "the state dict has no image_encoder.pos_embed, so the image size is unknown: "
            "pass image_size"
        )

    if use_rel_pos:
        head_dim = _shape(sd, "image_encoder.blocks.0.attn.rel_pos_h")[1]
        if hidden % head_dim:
            raise ValueError(
                f"rel_pos_h width {head_dim} does not divide the encoder width {hidden}"
            )
        heads = hidden // head_dim
        if num_attention_heads is not None and num_attention_heads != heads:
            raise ValueError(
                f"num_attention_heads={num_attention_heads} disagrees with the relative-position "
                f"tables ({hidden} / {head_dim} = {heads} heads)"
            )
        global_indexes: list[int] = []
        windows: set[int] = set()
        for i in blocks:
            length = _shape(sd, f"image_encoder.blocks.{i}.attn.rel_pos_h")[0]
            if length == 2 * grid - 1:
                global_indexes.append(i)
            elif length % 2 == 1:
                windows.add((length + 1) // 2)
            else:
                raise ValueError(
                    f"image_encoder.blocks.{i}.attn.rel_pos_h has even length {length}; "
                    "expected 2 * window - 1"
                )
        if len(windows) > 1:
            raise ValueError(
                f"windowed blocks use different window sizes {sorted(windows)}; transformers' "
                "SamVisionConfig has a single window_size"
            )
        # no windowed block: every block global (window_size 0 means global in transformers)
        window_size = windows.pop() if windows else 0
    else:
        if num_attention_heads is None:
            raise ValueError(
                "the image encoder has no relative-position tables, so its head count is "
                "unknown: pass num_attention_heads"
            )
        heads = num_attention_heads
        global_indexes = list(blocks)
        window_size = 0

    out_chans = _shape(sd, "image_encoder.neck.0.weight")[0]
    prompt_dim = _shape(sd, "prompt_encoder.point_embeddings.0.weight")[1]
    num_point_embeddings = len(_indexes(sd, "prompt_encoder.point_embeddings."))
    if num_point_embeddings != 4:
        raise ValueError(f"expected 4 prompt point embeddings, found {num_point_embeddings}")
    gaussian = _shape(sd, _GAUSSIAN)
    if len(gaussian) != 2 or gaussian[0] != 2 or 2 * gaussian[1] != prompt_dim:
        raise ValueError(
            f"{_GAUSSIAN} has shape {gaussian}, expected (2, {prompt_dim // 2}) "
            f"for prompt width {prompt_dim}"
        )
    mask_in_chans = _shape(sd, "prompt_encoder.mask_downscaling.3.weight")[0]

    decoder_dim = _shape(sd, "mask_decoder.iou_token.weight")[1]
    num_mask_tokens = _shape(sd, "mask_decoder.mask_tokens.weight")[0]
    decoder_layers = _indexes(sd, "mask_decoder.transformer.layers.")
    if not decoder_layers:
        raise ValueError("the mask decoder's two-way transformer has no layers")
    decoder_mlp_dim = _shape(sd, "mask_decoder.transformer.layers.0.mlp.lin1.weight")[0]
    internal = _shape(
        sd, "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight"
    )[0]
    if decoder_dim % internal:
        raise ValueError(
            f"cross-attention width {internal} does not divide the decoder width {decoder_dim}"
        )
    for key in (
        "mask_decoder.transformer.layers.0.cross_attn_image_to_token.q_proj.weight",
        "mask_decoder.transformer.final_attn_token_to_image.q_proj.weight",
    ):
        if _shape(sd, key)[0] != internal:
            raise ValueError(
                f"{key} has width {_shape(sd, key)[0]} but the token-to-image cross-attention "
                f"{internal}; transformers uses one attention_downsample_rate for all of them"
            )
    hypernetworks = _indexes(sd, "mask_decoder.output_hypernetworks_mlps.")
    if len(hypernetworks) != num_mask_tokens:
        raise ValueError(
            f"{len(hypernetworks)} output hypernetwork MLPs for {num_mask_tokens} mask tokens"
        )
    hyper_depth = len(_indexes(sd, "mask_decoder.output_hypernetworks_mlps.0.layers."))
    if hyper_depth != 3:
        raise ValueError(f"output hypernetwork MLPs have {hyper_depth} layers; transformers uses 3")
    iou_depth = len(_indexes(sd, "mask_decoder.iou_prediction_head.layers."))
    iou_hidden = _shape(sd, "mask_decoder.iou_prediction_head.layers.0.weight")[0]

    try:
        return sam_config(
            image_size=grid * patch,
            patch_size=patch,
            hidden_size=hidden,
            num_hidden_layers=depth,
            num_attention_heads=heads,
            window_size=window_size,
            global_attn_indexes=tuple(global_indexes),
            mlp_dim=mlp_dim,
            output_channels=out_chans,
            decoder_hidden_size=decoder_dim,
            decoder_num_layers=len(decoder_layers),
            decoder_num_heads=decoder_num_attention_heads,
            decoder_mlp_dim=decoder_mlp_dim,
            use_rel_pos=use_rel_pos,
            use_abs_pos=use_abs_pos,
            qkv_bias=qkv_bias,
            num_channels=num_channels,
            mask_input_channels=mask_in_chans,
            num_multimask_outputs=num_mask_tokens - 1,
            iou_head_depth=iou_depth,
            iou_head_hidden_dim=iou_hidden,
            attention_downsample_rate=decoder_dim // internal,
        )
    except ValueError as exc:
        raise ValueError(f"unsupported SAM architecture in the state dict: {exc}") from exc
