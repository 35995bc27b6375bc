"""Meta's original SAM checkpoints (``sam_vit_{b,l,h}_*.pth``) → transformers ``SamModel``.

Everything happens in memory: the architecture is read off the tensor shapes, the keys are
renamed to transformers' names, and the weights are loaded strictly into a ``SamModel`` built
on the ``meta`` device (no random init of a ViT-H, no file written).

What cannot be read from the tensors and is taken from Meta's code unless given:

- the two-way transformer's head count (8 in every released model);
- the image encoder's head count when there are no relative-position tables (with them,
  heads = width / table width);
- which blocks attend globally and the window size when there are no relative-position tables
  (then every block is taken as global, the ``ImageEncoderViT`` default);
- the image size when there is no absolute positional embedding;
- layer-norm eps: 1e-6 in the image encoder, 1e-5 in the two-way transformer.

Meta's ``pixel_mean`` / ``pixel_std`` are preprocessing constants (non-persistent buffers,
absent from the released files); if a state dict carries them they are dropped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import torch
from transformers import SamConfig, SamModel

from composeseg.errors import first_line
from composeseg.meta_config import (
    _GAUSSIAN,
    _SIGNATURE_KEYS,
    is_meta_sam_state_dict,
    sam_config_from_meta_state_dict,
)

__all__ = [
    "convert_meta_sam_state_dict",
    "is_meta_sam_state_dict",
    "load_meta_sam_checkpoint",
    "sam_config_from_meta_state_dict",
]

_IGNORED_KEYS = frozenset({"pixel_mean", "pixel_std"})
_WRAPPER_KEYS = ("model", "state_dict")

# (Meta pattern, transformers replacement), applied with re.fullmatch, first match wins.
# Multi-layer perceptrons of the mask decoder are handled separately (their names depend
# on depth).
_RENAMES: tuple[tuple[str, str], ...] = (
    # image encoder
    (
        r"image_encoder\.patch_embed\.proj\.(weight|bias)",
        r"vision_encoder.patch_embed.projection.\1",
    ),
    (r"image_encoder\.pos_embed", r"vision_encoder.pos_embed"),
    (
        r"image_encoder\.blocks\.(\d+)\.norm([12])\.(weight|bias)",
        r"vision_encoder.layers.\1.layer_norm\2.\3",
    ),
    (
        r"image_encoder\.blocks\.(\d+)\.attn\.(qkv\.weight|qkv\.bias|proj\.weight|proj\.bias|rel_pos_h|rel_pos_w)",
        r"vision_encoder.layers.\1.attn.\2",
    ),
    (
        r"image_encoder\.blocks\.(\d+)\.mlp\.(lin[12])\.(weight|bias)",
        r"vision_encoder.layers.\1.mlp.\2.\3",
    ),
    (r"image_encoder\.neck\.0\.weight", r"vision_encoder.neck.conv1.weight"),
    (r"image_encoder\.neck\.1\.(weight|bias)", r"vision_encoder.neck.layer_norm1.\1"),
    (r"image_encoder\.neck\.2\.weight", r"vision_encoder.neck.conv2.weight"),
    (r"image_encoder\.neck\.3\.(weight|bias)", r"vision_encoder.neck.layer_norm2.\1"),
    # prompt encoder
    (r"prompt_encoder\.point_embeddings\.(\d+)\.weight", r"prompt_encoder.point_embed.\1.weight"),
    (r"prompt_encoder\.not_a_point_embed\.weight", r"prompt_encoder.not_a_point_embed.weight"),
    (r"prompt_encoder\.no_mask_embed\.weight", r"prompt_encoder.no_mask_embed.weight"),
    (r"prompt_encoder\.mask_downscaling\.0\.(weight|bias)", r"prompt_encoder.mask_embed.conv1.\1"),
    (
        r"prompt_encoder\.mask_downscaling\.1\.(weight|bias)",
        r"prompt_encoder.mask_embed.layer_norm1.\1",
    ),
    (r"prompt_encoder\.mask_downscaling\.3\.(weight|bias)", r"prompt_encoder.mask_embed.conv2.\1"),
    (
        r"prompt_encoder\.mask_downscaling\.4\.(weight|bias)",
        r"prompt_encoder.mask_embed.layer_norm2.\1",
    ),
    (r"prompt_encoder\.mask_downscaling\.6\.(weight|bias)", r"prompt_encoder.mask_embed.conv3.\1"),
    # mask decoder
    (r"mask_decoder\.(iou_token|mask_tokens)\.weight", r"mask_decoder.\1.weight"),
    (
        r"mask_decoder\.transformer\.layers\.(\d+)\."
        r"(self_attn|cross_attn_token_to_image|cross_attn_image_to_token)\."
        r"([qkv]_proj|out_proj)\.(weight|bias)",
        r"mask_decoder.transformer.layers.\1.\2.\3.\4",
    ),
    (
        r"mask_decoder\.transformer\.layers\.(\d+)\.norm([1-4])\.(weight|bias)",
        r"mask_decoder.transformer.layers.\1.layer_norm\2.\3",
    ),
    (
        r"mask_decoder\.transformer\.layers\.(\d+)\.mlp\.(lin[12])\.(weight|bias)",
        r"mask_decoder.transformer.layers.\1.mlp.\2.\3",
    ),
    (
        r"mask_decoder\.transformer\.final_attn_token_to_image\.([qkv]_proj|out_proj)\.(weight|bias)",
        r"mask_decoder.transformer.final_attn_token_to_image.\1.\2",
    ),
    (
        r"mask_decoder\.transformer\.norm_final_attn\.(weight|bias)",
        r"mask_decoder.transformer.layer_norm_final_attn.\1",
    ),
    (r"mask_decoder\.output_upscaling\.0\.(weight|bias)", r"mask_decoder.upscale_conv1.\1"),
    (r"mask_decoder\.output_upscaling\.1\.(weight|bias)", r"mask_decoder.upscale_layer_norm.\1"),
    (r"mask_decoder\.output_upscaling\.3\.(weight|bias)", r"mask_decoder.upscale_conv2.\1"),
)
_COMPILED_RENAMES = tuple((re.compile(pattern), repl) for pattern, repl in _RENAMES)
# Meta's MLP(layers.0 .. layers.{n-1}) → transformers' SamFeedForward(proj_in, layers.*, proj_out)
_MLP = re.compile(
    r"mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head)\.layers\.(\d+)\.(weight|bias)"
)
_HF_POSITIONAL = (
    "shared_image_embedding.positional_embedding",
    # tied to the one above in SamModel, but present in its state dict under both names
    "prompt_encoder.shared_embedding.positional_embedding",
)


def _rename(key: str, mlp_depths: Mapping[str, int]) -> list[str]:
    """transformers names for one Meta key; empty when the key is not part of SAM."""
    if key == _GAUSSIAN:
        return list(_HF_POSITIONAL)
    for pattern, repl in _COMPILED_RENAMES:
        if pattern.fullmatch(key):
            return [pattern.sub(repl, key)]
    match = _MLP.fullmatch(key)
    if match:
        mlp, index, kind = match.group(1), int(match.group(2)), match.group(3)
        depth = mlp_depths[mlp]
        if index == 0:
            name = "proj_in"
        elif index == depth - 1:
            name = "proj_out"
        else:
            name = f"layers.{index - 1}"
        return [f"mask_decoder.{mlp}.{name}.{kind}"]
    return []


def _mlp_depths(state_dict: Mapping[str, torch.Tensor]) -> dict[str, int]:
    depths: dict[str, int] = {}
    for key in state_dict:
        match = _MLP.fullmatch(key)
        if match:
            mlp, index = match.group(1), int(match.group(2))
            depths[mlp] = max(depths.get(mlp, 0), index + 1)
    return depths


def _empty_sam_model(config: SamConfig) -> SamModel:
    """A ``SamModel`` with parameters on the ``meta`` device: its key names and shapes only."""
    with torch.device("meta"):
        return SamModel(config)


def convert_meta_sam_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    *,
    decoder_num_attention_heads: int = 8,
    num_attention_heads: int | None = None,
    image_size: int | None = None,
) -> dict[str, torch.Tensor]:
    """Renames a Meta SAM state dict to transformers' ``SamModel`` keys.

    The returned dict has exactly the keys of ``SamModel(config).state_dict()`` for the
    inferred config (including both names of the tied positional-embedding matrix), holding the
    caller's tensors (not copies); the input is not modified. Keyword arguments as in
    :func:`sam_config_from_meta_state_dict`.

    Raises:
        ValueError: not a SAM state dict, an unsupported architecture, or keys that do not
            map one-to-one (the message lists unexpected, missing and mis-shaped keys).
    """
    config = sam_config_from_meta_state_dict(
        state_dict,
        decoder_num_attention_heads=decoder_num_attention_heads,
        num_attention_heads=num_attention_heads,
        image_size=image_size,
    )
    return _convert(state_dict, _empty_sam_model(config).state_dict())


def _convert(
    state_dict: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Renames ``state_dict`` and checks it against ``reference`` (a SamModel state dict)."""
    depths = _mlp_depths(state_dict)
    converted: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, tensor in state_dict.items():
        if key in _IGNORED_KEYS:
            continue
        new_keys = _rename(key, depths)
        if not new_keys:
            unexpected.append(key)
        for new_key in new_keys:
            converted[new_key] = tensor
    missing = sorted(set(reference) - set(converted))
    extra = sorted(set(converted) - set(reference))
    mis_shaped = [
        f"{key}: {tuple(converted[key].shape)} vs {tuple(reference[key].shape)}"
        for key in sorted(set(reference) & set(converted))
        if converted[key].shape != reference[key].shape
    ]
    problems = []
    if unexpected:
        problems.append(f"unexpected Meta keys {unexpected}")
    if extra:
        problems.append(f"keys with no place in SamModel {extra}")
    if missing:
        problems.append(f"SamModel keys left without a value {missing}")
    if mis_shaped:
        problems.append(f"shape mismatches (converted vs expected) {mis_shaped}")
    if problems:
        raise ValueError("cannot convert the Meta SAM state dict: " + "; ".join(problems))
    return converted


def _unwrap(obj: Any, path: str) -> Mapping[str, torch.Tensor]:
    if is_meta_sam_state_dict(obj):
        return obj
    if isinstance(obj, Mapping):
        for wrapper in _WRAPPER_KEYS:
            inner = obj.get(wrapper)
            if isinstance(inner, Mapping) and is_meta_sam_state_dict(inner):
                return inner
        keys = list(obj)[:8]
        found = f"a dict with keys {keys}{' …' if len(obj) > 8 else ''}"
    else:
        found = f"a {type(obj).__name__}"
    raise ValueError(
        f"{path} is not a Meta SAM checkpoint: it holds {found}; tried the top level and the "
        f"{' / '.join(repr(k) for k in _WRAPPER_KEYS)} entries for tensors under "
        f"{', '.join(repr(k) for k in _SIGNATURE_KEYS)}"
    )


_FOREIGN_SIGNATURES = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"RIFF": "a RIFF (WebP / WAV / AVI) file",
    b"%PDF": "a PDF document",
    b"{": "a JSON or text file",
}


def _check_checkpoint_signature(path: str) -> None:
    """Say what a file is when it plainly is not a checkpoint: torch's own error for, say, a
    PNG asks the user to file a bug report. Unknown contents are left to ``torch.load``."""
    with open(path, "rb") as file:
        head = file.read(8)
    kind = next((k for magic, k in _FOREIGN_SIGNATURES.items() if head.startswith(magic)), None)
    if head and kind is None:
        return
    raise ValueError(
        f"{path} is not a PyTorch checkpoint (a SAM .pth file is a zip archive or a pickle); "
        f"this file is {kind or 'empty'}"
    )


def load_meta_sam_checkpoint(
    path: str | os.PathLike[str],
    *,
    decoder_num_attention_heads: int = 8,
    num_attention_heads: int | None = None,
    image_size: int | None = None,
) -> SamModel:
    """Loads Meta's ``sam_vit_{b,l,h}_*.pth`` (or any ``segment_anything`` SAM) as a ``SamModel``.

    Reads the file with ``torch.load(map_location="cpu", weights_only=True)``; accepts a raw
    state dict or one wrapped as ``{"model": sd}`` / ``{"state_dict": sd}``. The architecture
    is inferred (see :func:`sam_config_from_meta_state_dict`, whose keyword arguments this
    takes), the weights are loaded strictly, nothing is written to disk. The model is on the
    CPU, in the checkpoint's dtype, in eval mode. Its outputs match Meta's ``Sam`` given the
    same image tensor and prompts (see ``tests/core/test_convert.py``); preprocessing
    (resize to the longest side, normalisation, padding) is not part of the model.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is a directory, is not a readable torch file, holds no SAM state
            dict, or holds an architecture ``SamModel`` cannot express; the message names
            ``path``.
    """
    path_str = os.fspath(path)
    if not os.path.exists(path_str):
        raise FileNotFoundError(f"SAM checkpoint not found: {path_str}")
    if os.path.isdir(path_str):
        raise ValueError(f"SAM checkpoint path is a directory, expected a .pth file: {path_str}")
    _check_checkpoint_signature(path_str)
    try:
        obj = torch.load(path_str, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt / foreign files
        raise ValueError(
            f"cannot read {path_str} as a torch checkpoint with "
            f"torch.load(map_location='cpu', weights_only=True): {type(exc).__name__}: "
            f"{first_line(exc)}"
        ) from exc
    state_dict = _unwrap(obj, path_str)
    try:
        config = sam_config_from_meta_state_dict(
            state_dict,
            decoder_num_attention_heads=decoder_num_attention_heads,
            num_attention_heads=num_attention_heads,
            image_size=image_size,
        )
        model = _empty_sam_model(config)
        converted = _convert(state_dict, model.state_dict())
    except ValueError as exc:
        raise ValueError(f"{path_str}: {exc}") from exc
    model.load_state_dict(converted, strict=True, assign=True)
    model.tie_weights()
    leftover = [
        name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta
    ]
    if leftover:  # pragma: no cover - would mean SamModel gained state the conversion misses
        raise ValueError(f"{path_str}: no value for {leftover} after loading")
    return model.eval()
