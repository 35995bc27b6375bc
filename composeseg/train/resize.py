"""Change a SAM model's input frame (``image_size``) while keeping its trained weights.

Fine-tuning at another resolution (a 1024 px model at 512 px to train faster, or a small model
at a larger frame to see small objects) needs only the position-dependent weights resampled:
the absolute position embedding of the patch grid (bicubic, as timm and Meta's ViTDet do) and the
relative-position tables of the global-attention blocks (linear along the offset axis, as Meta's
``get_rel_pos`` does at run time). Windowed blocks and every decoder weight are size-free.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from transformers import SamModel


def _resize_pos_embed(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """``(1, G, G, C)`` -> ``(1, grid, grid, C)``."""
    resized = F.interpolate(
        pos.permute(0, 3, 1, 2).float(), size=(grid, grid), mode="bicubic", align_corners=False
    )
    return resized.permute(0, 2, 3, 1).to(pos.dtype)


def _resize_rel_pos(table: torch.Tensor, length: int) -> torch.Tensor:
    """``(L, head_dim)`` -> ``(length, head_dim)``."""
    resized = F.interpolate(table.T[None].float(), size=length, mode="linear", align_corners=False)
    return resized[0].T.to(table.dtype)


def resize_input(model: SamModel, image_size: int) -> SamModel:
    """A float32 copy of ``model`` taking ``image_size`` x ``image_size`` inputs.

    The image embedding becomes ``image_size // patch_size`` square and the low-res masks four
    times that; prompts stay in pixels of the (new) model frame, so inference code is unchanged.

    Raises:
        ValueError: ``image_size`` not a positive multiple of the patch size.
    """
    vision: Any = model.config.vision_config
    patch = vision.patch_size
    if image_size <= 0 or image_size % patch:
        raise ValueError(f"image_size must be a positive multiple of {patch}, got {image_size}")
    if image_size == vision.image_size:
        return copy.deepcopy(model)
    config: Any = copy.deepcopy(model.config)
    grid = image_size // patch
    config.vision_config.image_size = image_size
    config.prompt_encoder_config.image_size = image_size
    config.prompt_encoder_config.image_embedding_size = grid
    state = model.state_dict()
    if "vision_encoder.pos_embed" in state:
        state["vision_encoder.pos_embed"] = _resize_pos_embed(
            state["vision_encoder.pos_embed"], grid
        )
    for index in vision.global_attn_indexes:
        for axis in ("h", "w"):
            key = f"vision_encoder.layers.{index}.attn.rel_pos_{axis}"
            if key in state:
                state[key] = _resize_rel_pos(state[key], 2 * grid - 1)
    resized = SamModel(config)  # float32, the dtype to fine-tune in
    resized.load_state_dict(state)
    return resized.eval()
