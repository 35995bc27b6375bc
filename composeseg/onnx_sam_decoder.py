"""SAM's prompt decoder for the ONNX graph: composeseg's cheaper arithmetic, all objects at once.

:mod:`composeseg.backends.sam_decoder` computes transformers' ``SamMaskDecoder`` with attention
factored through the few prompt tokens (products of width heads x tokens instead of the
projection width), ``keys + pe`` never formed per object, and the transposed convolutions as
channels-last matmuls. Its loops over objects (cache-sized working sets on a CPU) cannot be
traced for a graph whose object count is dynamic, so this module reuses its building blocks
vectorised over the N objects instead, and always takes the factored products (a graph has one
path for every prompt length; they are the cheaper ones up to ten points per object).
Results equal transformers' forward up to float32 summation order.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from composeseg.backends.sam_decoder import (
    _block,
    _conv_weights,
    _layer_norm,
    _pe_proj,
    _tokens_to_image,
)


class _Factored:
    """A ``SamAttention`` as :mod:`~composeseg.backends.sam_decoder`'s helpers see it when the
    factored products are cheaper than its projections, whatever the number of tokens."""

    def __init__(self, attention: Any) -> None:
        self._attention = attention
        self.internal_dim = sys.maxsize

    def __getattr__(self, name: str) -> Any:
        return getattr(self._attention, name)


class _Layer:
    """A ``SamTwoWayAttentionBlock`` whose cross attentions are :class:`_Factored`."""

    def __init__(self, layer: Any) -> None:
        self._layer = layer
        self.cross_attn_token_to_image = _Factored(layer.cross_attn_token_to_image)
        self.cross_attn_image_to_token = _Factored(layer.cross_attn_image_to_token)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._layer, name)


def sam_candidates(
    mask_decoder: Any, image: Tensor, image_pe: Tensor, sparse: Tensor, dense: Tensor
) -> tuple[Tensor, Tensor]:
    """Every mask token's logits for N objects.

    Args:
        mask_decoder: a transformers ``SamMaskDecoder``.
        image: ``(1, D, h, w)`` image embedding.
        image_pe: ``(1, D, h, w)`` its positional encoding.
        sparse: ``(N, P, D)`` prompt tokens.
        dense: ``(N, D, h, w)`` mask-prompt embeddings (the no-mask embedding without one).

    Returns:
        ``(N, 4, 4h, 4w)`` logits and ``(N, 4)`` predicted IoU: the single-mask token, then
        the three multimask tokens.
    """
    transformer = mask_decoder.transformer
    count, (height, width) = sparse.shape[0], image.shape[2:]
    output = torch.cat([mask_decoder.iou_token.weight, mask_decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat([output.unsqueeze(0).expand(count, -1, -1), sparse], dim=1)  # (N, T, D)
    keys = (image + dense).flatten(2).transpose(1, 2)  # (N, L, D)
    pe = image_pe.flatten(2).transpose(1, 2)[0]  # (L, D)
    queries = tokens
    for module in transformer.layers:
        layer = _Layer(module)
        t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
        pe_proj = (
            _pe_proj(t2i.k_proj, pe[None], t2i.num_attention_heads),
            _pe_proj(i2t.q_proj, pe[None], i2t.num_attention_heads),
        )
        queries, keys = _block(layer, queries, tokens, keys, pe_proj, None)
    final = _Factored(transformer.final_attn_token_to_image)
    final_pe = _pe_proj(final.k_proj, pe[None], final.num_attention_heads)
    attn = _tokens_to_image(final, queries + tokens, keys, final_pe, None)
    queries = _layer_norm(queries + attn, transformer.layer_norm_final_attn)
    k = mask_decoder.num_mask_tokens
    hyper = torch.stack(
        [mask_decoder.output_hypernetworks_mlps[i](queries[:, 1 + i]) for i in range(k)], dim=1
    )  # (N, K, D/8)
    logits = _upscale(mask_decoder, keys, hyper)  # (N, L * 16, K)
    # (y, x, i, j, i2, j2) -> rows 4y + 2i + i2, columns 4x + 2j + j2
    logits = logits.view(count, height, width, 2, 2, 2, 2, k).permute(0, 7, 1, 3, 5, 2, 4, 6)
    return logits.reshape(count, k, 4 * height, 4 * width), mask_decoder.iou_prediction_head(
        queries[:, 0]
    )


def _upscale(mask_decoder: Any, keys: Tensor, hyper: Tensor) -> Tensor:
    """``(N, L, D)`` image tokens -> ``(N, L * 16, K)`` logits, channels-last: each stride-2
    transposed convolution is a per-pixel matmul, sub-pixels ordered (i, j, i2, j2)."""
    w1, b1 = _conv_weights(mask_decoder.upscale_conv1)
    w2, b2 = _conv_weights(mask_decoder.upscale_conv2)
    norm = mask_decoder.upscale_layer_norm
    count = keys.shape[0]
    x = (torch.matmul(keys, w1) + b1).reshape(count, -1, norm.normalized_shape[0])
    x = mask_decoder.activation(
        F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    )
    x = mask_decoder.activation(torch.matmul(x, w2) + b2).reshape(count, -1, w2.shape[1] // 4)
    return torch.matmul(x, hyper.transpose(1, 2))
