"""Consistent SAM / SAM-HQ configurations, from one set of numbers.

transformers' ``SamConfig`` holds three sub-configs (vision, prompt encoder, mask decoder) that
it never checks against each other: the prompt encoder keeps its own ``image_size`` and
``patch_size``, the vision config its own ``output_channels`` and ``num_pos_feats``, the mask
decoder its own ``hidden_size``. A mismatch builds fine and fails (or silently misbehaves) at the
first forward. :func:`sam_config` derives all of them from one set of numbers and
:func:`validate_sam_config` checks any ``SamConfig`` / ``SamHQConfig`` for the same agreement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import SamConfig, SamHQConfig

__all__ = ["sam_config", "validate_sam_config"]

# Meta's two-way transformer uses ``nn.LayerNorm`` with its default eps (1e-5); transformers'
# ``SamMaskDecoderConfig`` defaults to 1e-6. We follow Meta so converted checkpoints match it.
META_DECODER_LAYER_NORM_EPS = 1e-5
# Meta's image encoder is built with ``LayerNorm(eps=1e-6)`` (``build_sam.py``).
META_VISION_LAYER_NORM_EPS = 1e-6


def _sam_sub_configs(
    *,
    image_size: int,
    patch_size: int,
    hidden_size: int,
    num_hidden_layers: int,
    num_attention_heads: int,
    window_size: int,
    global_attn_indexes: Sequence[int],
    mlp_dim: int | None,
    output_channels: int,
    decoder_hidden_size: int,
    decoder_num_layers: int,
    decoder_num_heads: int,
    decoder_mlp_dim: int,
    use_rel_pos: bool,
    use_abs_pos: bool,
    qkv_bias: bool,
    num_channels: int,
    mask_input_channels: int,
    num_multimask_outputs: int,
    iou_head_depth: int,
    iou_head_hidden_dim: int,
    attention_downsample_rate: int,
) -> tuple[dict, dict, dict]:
    """Checks one set of SAM numbers and returns (vision, prompt encoder, mask decoder) kwargs."""
    ints = {
        "image_size": image_size,
        "patch_size": patch_size,
        "hidden_size": hidden_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "output_channels": output_channels,
        "decoder_hidden_size": decoder_hidden_size,
        "decoder_num_layers": decoder_num_layers,
        "decoder_num_heads": decoder_num_heads,
        "decoder_mlp_dim": decoder_mlp_dim,
        "num_channels": num_channels,
        "mask_input_channels": mask_input_channels,
        "num_multimask_outputs": num_multimask_outputs,
        "iou_head_hidden_dim": iou_head_hidden_dim,
        "attention_downsample_rate": attention_downsample_rate,
    }
    for name, value in ints.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if mlp_dim is not None and (not isinstance(mlp_dim, int) or mlp_dim < 1):
        raise ValueError(f"mlp_dim must be a positive int or None, got {mlp_dim!r}")
    if not isinstance(window_size, int) or window_size < 0:
        raise ValueError(
            f"window_size must be an int >= 0 (0 = global attention), got {window_size!r}"
        )
    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
    if hidden_size % num_attention_heads:
        raise ValueError(
            f"hidden_size {hidden_size} is not divisible by "
            f"num_attention_heads {num_attention_heads}"
        )
    indexes = tuple(global_attn_indexes)
    if len(set(indexes)) != len(indexes) or any(
        not isinstance(i, int) or not 0 <= i < num_hidden_layers for i in indexes
    ):
        raise ValueError(
            f"global_attn_indexes must be distinct block indexes in [0, {num_hidden_layers}), "
            f"got {indexes!r}"
        )
    if output_channels != decoder_hidden_size:
        raise ValueError(
            "the image embedding feeds the mask decoder directly: output_channels "
            f"({output_channels}) must equal decoder_hidden_size ({decoder_hidden_size})"
        )
    if decoder_hidden_size % 8:
        raise ValueError(
            f"decoder_hidden_size must be a multiple of 8 (mask upscaling uses hidden/4 and "
            f"hidden/8 channels), got {decoder_hidden_size}"
        )
    if decoder_hidden_size % decoder_num_heads:
        raise ValueError(
            f"decoder_num_heads {decoder_num_heads} does not divide decoder_hidden_size "
            f"{decoder_hidden_size}"
        )
    internal = decoder_hidden_size // attention_downsample_rate
    if decoder_hidden_size % attention_downsample_rate or internal % decoder_num_heads:
        raise ValueError(
            f"cross-attention width decoder_hidden_size / attention_downsample_rate = "
            f"{decoder_hidden_size} / {attention_downsample_rate} must be an int divisible by "
            f"decoder_num_heads {decoder_num_heads}"
        )
    if mask_input_channels % 4:
        raise ValueError(f"mask_input_channels must be a multiple of 4, got {mask_input_channels}")
    if not isinstance(iou_head_depth, int) or iou_head_depth < 2:
        raise ValueError(f"iou_head_depth must be an int >= 2, got {iou_head_depth!r}")

    vision = {
        "hidden_size": hidden_size,
        "output_channels": output_channels,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "num_channels": num_channels,
        "image_size": image_size,
        "patch_size": patch_size,
        "layer_norm_eps": META_VISION_LAYER_NORM_EPS,
        "qkv_bias": qkv_bias,
        "mlp_dim": mlp_dim if mlp_dim is not None else 4 * hidden_size,
        "use_abs_pos": use_abs_pos,
        "use_rel_pos": use_rel_pos,
        "window_size": window_size,
        "global_attn_indexes": list(indexes),
        # the shared random-Fourier positional embedding outputs 2 * num_pos_feats channels,
        # added to the decoder's image embedding and prompt tokens
        "num_pos_feats": decoder_hidden_size // 2,
    }
    prompt = {
        "hidden_size": decoder_hidden_size,
        "image_size": image_size,
        "patch_size": patch_size,
        "mask_input_channels": mask_input_channels,
        "num_point_embeddings": 4,
    }
    decoder = {
        "hidden_size": decoder_hidden_size,
        "mlp_dim": decoder_mlp_dim,
        "num_hidden_layers": decoder_num_layers,
        "num_attention_heads": decoder_num_heads,
        "attention_downsample_rate": attention_downsample_rate,
        "num_multimask_outputs": num_multimask_outputs,
        "iou_head_depth": iou_head_depth,
        "iou_head_hidden_dim": iou_head_hidden_dim,
        "layer_norm_eps": META_DECODER_LAYER_NORM_EPS,
    }
    return vision, prompt, decoder


def sam_config(
    *,
    image_size: int = 1024,
    patch_size: int = 16,
    hidden_size: int = 768,
    num_hidden_layers: int = 12,
    num_attention_heads: int = 12,
    window_size: int = 14,
    global_attn_indexes: Sequence[int] = (2, 5, 8, 11),
    mlp_dim: int | None = None,
    output_channels: int = 256,
    decoder_hidden_size: int = 256,
    decoder_num_layers: int = 2,
    decoder_num_heads: int = 8,
    decoder_mlp_dim: int = 2048,
    use_rel_pos: bool = True,
    use_abs_pos: bool = True,
    qkv_bias: bool = True,
    num_channels: int = 3,
    mask_input_channels: int = 16,
    num_multimask_outputs: int = 3,
    iou_head_depth: int = 3,
    iou_head_hidden_dim: int = 256,
    attention_downsample_rate: int = 2,
) -> SamConfig:
    """A ``SamConfig`` whose vision, prompt-encoder and mask-decoder sub-configs agree.

    Defaults are Meta's ViT-B (``sam_vit_b_01ec64.pth``). The image embedding is
    ``(output_channels, image_size // patch_size, image_size // patch_size)``; prompts are in
    pixels of the ``image_size`` x ``image_size`` model input; the mask input and low-res mask
    output are ``4 * image_size // patch_size`` square.

    Layer-norm eps follow Meta's code (1e-6 in the image encoder, 1e-5 in the two-way
    transformer), so a converted Meta checkpoint reproduces Meta's outputs.

    Args:
        mlp_dim: image-encoder MLP width; ``None`` means ``4 * hidden_size``.
        window_size: windowed-attention size in patches; 0 makes every block global.
        global_attn_indexes: image-encoder blocks that attend globally.

    Raises:
        ValueError: an impossible combination, e.g. ``image_size`` not a multiple of
            ``patch_size``, heads not dividing a width, ``output_channels !=
            decoder_hidden_size``.
    """
    vision, prompt, decoder = _sam_sub_configs(
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        window_size=window_size,
        global_attn_indexes=global_attn_indexes,
        mlp_dim=mlp_dim,
        output_channels=output_channels,
        decoder_hidden_size=decoder_hidden_size,
        decoder_num_layers=decoder_num_layers,
        decoder_num_heads=decoder_num_heads,
        decoder_mlp_dim=decoder_mlp_dim,
        use_rel_pos=use_rel_pos,
        use_abs_pos=use_abs_pos,
        qkv_bias=qkv_bias,
        num_channels=num_channels,
        mask_input_channels=mask_input_channels,
        num_multimask_outputs=num_multimask_outputs,
        iou_head_depth=iou_head_depth,
        iou_head_hidden_dim=iou_head_hidden_dim,
        attention_downsample_rate=attention_downsample_rate,
    )
    config = SamConfig(
        vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder
    )
    validate_sam_config(config)
    return config


def validate_sam_config(config: SamConfig | SamHQConfig) -> None:
    """Raises ``ValueError`` naming the first disagreement between the sub-configs of ``config``.

    Checks what transformers leaves unchecked: image/patch sizes of the vision and prompt
    encoders, ``output_channels`` = prompt hidden = decoder hidden = 2 * ``num_pos_feats``, head
    counts dividing widths, global-attention indexes in range (and, for SAM-HQ, at least one
    global block and ``vit_dim`` equal to the vision width).
    """
    if not isinstance(config, (SamConfig, SamHQConfig)):
        raise TypeError(f"expected a SamConfig or SamHQConfig, got {type(config).__name__}")
    # sub-configs are typed ``dict | PreTrainedConfig | None`` but are config objects here
    v: Any = config.vision_config
    p: Any = config.prompt_encoder_config
    d: Any = config.mask_decoder_config
    checks = [
        ("vision image_size", v.image_size, "prompt encoder image_size", p.image_size),
        ("vision patch_size", v.patch_size, "prompt encoder patch_size", p.patch_size),
        ("vision output_channels", v.output_channels, "mask decoder hidden_size", d.hidden_size),
        ("prompt encoder hidden_size", p.hidden_size, "mask decoder hidden_size", d.hidden_size),
        (
            "2 * vision num_pos_feats",
            2 * v.num_pos_feats,
            "mask decoder hidden_size",
            d.hidden_size,
        ),
        (
            "prompt encoder image_embedding_size",
            p.image_embedding_size,
            "vision image_size // patch_size",
            v.image_size // v.patch_size,
        ),
    ]
    if isinstance(config, SamHQConfig):
        checks.append(("mask decoder vit_dim", d.vit_dim, "vision hidden_size", v.hidden_size))
        if not v.global_attn_indexes:
            raise ValueError(
                "SAM-HQ fuses the output of the first global-attention block: "
                "vision global_attn_indexes must not be empty"
            )
    for left_name, left, right_name, right in checks:
        if left != right:
            raise ValueError(
                f"inconsistent SAM config: {left_name} = {left} != {right_name} = {right}"
            )
    _sam_sub_configs(
        image_size=v.image_size,
        patch_size=v.patch_size,
        hidden_size=v.hidden_size,
        num_hidden_layers=v.num_hidden_layers,
        num_attention_heads=v.num_attention_heads,
        window_size=v.window_size,
        global_attn_indexes=v.global_attn_indexes,
        mlp_dim=v.mlp_dim,
        output_channels=v.output_channels,
        decoder_hidden_size=d.hidden_size,
        decoder_num_layers=d.num_hidden_layers,
        decoder_num_heads=d.num_attention_heads,
        decoder_mlp_dim=d.mlp_dim,
        use_rel_pos=v.use_rel_pos,
        use_abs_pos=v.use_abs_pos,
        qkv_bias=v.qkv_bias,
        num_channels=v.num_channels,
        mask_input_channels=p.mask_input_channels,
        num_multimask_outputs=d.num_multimask_outputs,
        iou_head_depth=d.iou_head_depth,
        iou_head_hidden_dim=d.iou_head_hidden_dim,
        attention_downsample_rate=d.attention_downsample_rate,
    )
