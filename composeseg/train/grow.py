"""Deepen a trained SAM image encoder without changing what it computes.

A larger encoder trained from scratch costs the whole recipe again. Appending transformer blocks
whose residual branches start at zero (the attention output projection and the MLP's second
linear are zero, as in Goyal et al.'s zero-init residuals and ReZero) keeps the model's function
exactly, so fine-tuning starts from the trained model's quality and only the new blocks have to
learn. The last new block attends globally, as ViTDet ends each stage; the others use the
encoder's windows.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from transformers import SamModel

from composeseg.train.model import (
    check_trainable,
    freeze_fourier_matrix,
    reset_to_pytorch_defaults,
)


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
    check_trainable(model)
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    config: Any = copy.deepcopy(model.config)
    vision = config.vision_config
    old = int(vision.num_hidden_layers)
    vision.num_hidden_layers = old + layers
    vision.global_attn_indexes = [*vision.global_attn_indexes, old + layers - 1]
    deeper = SamModel(config).float()
    missing, unexpected = deeper.load_state_dict(model.state_dict(), strict=False)
    new_prefixes = tuple(f"vision_encoder.layers.{i}." for i in range(old, old + layers))
    if unexpected or any(not key.startswith(new_prefixes) for key in missing):
        raise ValueError(f"weights do not match the deepened encoder: {missing + unexpected}")
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
