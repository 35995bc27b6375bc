"""A batched prompt decoder for transformers' ``SamModel`` (SAM, SlimSAM), cheaper per object.

transformers decodes C objects of one image as C batch elements: it materialises the image
embedding, its positional encoding and every per-layer ``keys + pe`` C times, projects the
(C, 4096, 256) image tokens through q/k/v projections of width 128 in every attention, and
upsamples with channels-first transposed convolutions plus layout copies. Decoding more objects
per call therefore gets *slower* per object on a CPU. This module runs the same computation, with
the HF modules' own weights (nothing is copied), rearranged so that:

* Without mask prompts the image tokens entering layer 0 are the same for every object, so the
  projections of the image in layer 0 run once (batch 1) and broadcast over objects.
* Once the image tokens differ per object, attention is factored through the few prompt tokens
  (T of them, h heads): ``q . (K Wk) = (Wk^T q) . K`` and ``P (K Wv) = (P K) Wv`` replace a
  (4096 x 256) @ (256 x 128) projection by products of width h*T (56 for a box) when h*T is
  smaller than the projection width (more than ~10 points: the plain projections run).
* ``keys + pe`` is never formed per object: ``pe``'s projections are computed once per call and
  enter as small score terms. The image-to-token output GEMM accumulates onto the residual
  keys. On a bandwidth-bound CPU each avoided (4096, 256) elementwise pass was worth more than
  a GEMM of width 56; softmax runs with the 4096 image tokens innermost (rows of 7 are slow).
* Objects run one at a time past layer 0 (:data:`GROUP`) and the upscaling in token tiles, so
  per-object tensors stay cache-sized and memory does not grow with C.
* Image tokens stay channels-last, ``(C, 4096, 256)``, end to end: the two stride-2 transposed
  convolutions become per-pixel matmuls whose sub-pixel outputs are only rearranged on the final
  one-channel masks, and LayerNorm2d acts on the contiguous last dim.
* Only the hypernetwork MLPs of the mask tokens that are returned are evaluated.

Results equal ``model(image_embeddings=..., ...)`` up to float32 summation order.
``attention_similarity`` / ``target_embedding`` (PerSAM) are not supported; callers needing them
use the HF forward.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Objects decoded together past layer 0. Every per-object image-side tensor is (G, 4096, 256)
# float32 = G * 4 MiB, and the GEMMs on it are per object anyway, so batching buys nothing: on a
# 2-core EPYC (1 MiB L2, 32 MiB L3) G = 1, 4 and 16 measured within noise of each other at 16
# objects (benchmarks/bench_sam_decoder.py), and G = 1 keeps working memory at one object's.
GROUP = 1
# Image tokens upsampled per step: the 64- and 32-channel intermediates are 4 and 8 MiB per
# object untiled; tiles of 128..4096 tokens measured within noise, 256 keeps them at 0.75 MiB.
UPSCALE_TILE = 256


def _layer_norm(x: Tensor, norm: nn.LayerNorm) -> Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _heads(x: Tensor, heads: int) -> Tensor:
    """``(C, T, h*d)`` -> ``(C, h, T, d)`` view."""
    c, t, _ = x.shape
    return x.view(c, t, heads, -1).transpose(1, 2)


def _factored(attn: Any, tokens: int) -> bool:
    """Whether products of width h*T are cheaper than the module's projection width."""
    return bool(attn.num_attention_heads * tokens < attn.internal_dim)


class _SharedImage(NamedTuple):
    """Layer 0's projections of the image when every object sees the same image tokens."""

    t2i_k: Tensor  # (1, h, N, d)
    t2i_v: Tensor  # (1, h, N, d)
    i2t_q: Tensor  # (h, d, N)

    @classmethod
    def of(cls, layer: Any, keys: Tensor, image_k: Tensor) -> _SharedImage:
        t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
        return cls(
            _heads(t2i.k_proj(image_k), t2i.num_attention_heads),
            _heads(t2i.v_proj(keys), t2i.num_attention_heads),
            _heads(i2t.q_proj(image_k), i2t.num_attention_heads)[0].transpose(1, 2),
        )


def _pe_proj(linear: nn.Linear, pe: Tensor, heads: int) -> Tensor:
    """``(h, N, d)``: a projection (with its bias) of the positional encoding alone.

    Attention inputs are ``keys + pe``; projecting ``pe`` once per call and adding it after the
    keys' own projection (or as a small score term) avoids a (G, N, D) ``keys + pe`` per object,
    which costs more than a GEMM on a bandwidth-bound CPU.
    """
    return _heads(linear(pe), heads)[0]


def _tokens_to_image(
    attn: Any, queries: Tensor, keys: Tensor, pe_k: Tensor | None, shared: _SharedImage | None
) -> Tensor:
    """Prompt tokens attend to image tokens (``keys + pe`` as keys, ``keys`` as values).

    Args:
        attn: a ``SamAttention``.
        queries: ``(G, T, D)`` prompt tokens plus their positional part.
        keys: ``(G, N, D)`` image tokens (unused with ``shared``).
        pe_k: ``(h, N, d)`` :func:`_pe_proj` of ``attn.k_proj`` (unused with ``shared``).
        shared: layer 0's image projections, computed once for all objects.

    Returns:
        ``(G, T, D)`` attention output after ``out_proj``.
    """
    h, scale = attn.num_attention_heads, attn.scaling
    g, t, _ = queries.shape
    q = _heads(attn.q_proj(queries), h)  # (G, h, T, d)
    if shared is not None:
        # the objects' queries form one long query sequence against the one image
        q = q.transpose(0, 1).reshape(1, h, g * t, -1)
        out = F.scaled_dot_product_attention(q, shared.t2i_k, shared.t2i_v, scale=scale)
        out = out.view(h, g, t, -1).transpose(0, 1)
    elif pe_k is None:
        raise ValueError("tokens-to-image attention needs pe_k or shared projections")
    elif not _factored(attn, t):
        k = _heads(F.linear(keys, attn.k_proj.weight), h) + pe_k  # pe_k carries the bias
        v = _heads(attn.v_proj(keys), h)
        out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    else:
        d = q.shape[-1]
        q = q * scale
        # q . ((keys + pe) Wk^T + bk) = (q Wk) . keys + q . pe_k
        qk = torch.matmul(q, attn.k_proj.weight.view(h, d, -1)).flatten(1, 2)  # (G, hT, D)
        pe_term = torch.matmul(q, pe_k.transpose(1, 2)).flatten(1, 2)  # (G, hT, N)
        probs = torch.softmax(torch.baddbmm(pe_term, qk, keys.transpose(1, 2)), dim=-1)
        mixed = torch.bmm(probs, keys).view(g, h, t, -1)  # (G, h, T, D)
        # P (keys Wv^T + bv) = (P keys) Wv^T + bv: softmax rows sum to 1
        out = torch.matmul(mixed, attn.v_proj.weight.view(h, d, -1).transpose(1, 2))
        out = out + attn.v_proj.bias.view(1, h, 1, d)  # (G, h, T, d)
    return attn.out_proj(out.transpose(1, 2).reshape(g, t, -1))


def _image_to_tokens(
    attn: Any,
    keys: Tensor,
    tokens_k: Tensor,
    tokens_v: Tensor,
    pe_q: Tensor | None,
    shared_q: Tensor | None,
) -> Tensor:
    """Image tokens (``keys + pe`` as queries) attend to prompt tokens; returns the residual sum.

    Args:
        attn: a ``SamAttention``.
        keys: ``(B, N, D)`` image tokens, B = 1 (same image for all objects) or G.
        tokens_k: ``(G, T, D)`` prompt tokens plus their positional part.
        tokens_v: ``(G, T, D)`` prompt tokens.
        pe_q: ``(h, N, d)`` :func:`_pe_proj` of ``attn.q_proj``, or None with ``shared_q``.
        shared_q: ``(h, d, N)`` layer 0's query projection of the one image, or None.

    Returns:
        ``(G, N, D)`` ``keys`` plus the attention output after ``out_proj``; a ``(G, N, D)``
        ``keys`` without ``shared_q`` may be overwritten with it.
    """
    h, scale = attn.num_attention_heads, attn.scaling
    g, t, _ = tokens_k.shape
    k = _heads(attn.k_proj(tokens_k), h) * scale  # (G, h, T, d)
    v = _heads(attn.v_proj(tokens_v), h)
    d = k.shape[-1]
    n = keys.shape[1]
    # scores are laid out (.., T, N): softmax over T with N innermost vectorises, while rows of
    # T ~ 7 (softmax(dim=-1) on (.., N, T)) measured ~10x slower
    if shared_q is not None:
        scores = torch.matmul(k.transpose(0, 1).reshape(h, g * t, d), shared_q)  # (h, G*T, N)
        scores = scores.view(h, g, t, n).transpose(0, 1)
    elif pe_q is None:
        raise ValueError("image-to-tokens attention needs pe_q or shared_q")
    elif _factored(attn, t):
        # ((keys + pe) Wq^T + bq) . k = keys . (Wq k) + pe_q . k
        qk = torch.matmul(k, attn.q_proj.weight.view(h, d, -1)).flatten(1, 2)  # (G, hT, D)
        pe_term = torch.matmul(k, pe_q.transpose(1, 2)).flatten(1, 2)  # (G, hT, N)
        scores = torch.baddbmm(pe_term, qk, keys.transpose(1, 2)).view(g, h, t, n)
    else:
        q = _heads(F.linear(keys, attn.q_proj.weight), h) + pe_q  # (G, h, N, d)
        scores = torch.matmul(k, q.transpose(2, 3))  # (G, h, T, N)
    probs = torch.softmax(scores, dim=2).reshape(g, h * t, n)
    if _factored(attn, t):
        # P (v Wo^T) instead of (P v) Wo^T: h*T instead of h*d columns against N rows. Each
        # head's probabilities sum to 1, so bo / h on every row of v Wo^T adds bo once; the
        # residual rides in the GEMM's accumulator instead of an extra (G, N, D) pass.
        wo = attn.out_proj.weight.view(-1, h, d).permute(1, 2, 0)  # (h, d, D)
        vo = torch.matmul(v, wo).flatten(1, 2) + attn.out_proj.bias / h  # (G, hT, D)
        if keys.shape[0] == g and shared_q is None and not torch.is_grad_enabled():
            # layers past 0 own their keys (a fresh LayerNorm or ``image + dense`` output)
            return keys.baddbmm_(probs.transpose(1, 2), vo)
        return torch.baddbmm(keys, probs.transpose(1, 2), vo)
    out = torch.matmul(probs.view(g, h, t, n).transpose(2, 3), v)  # (G, h, N, d)
    return keys + attn.out_proj(out.transpose(1, 2).reshape(g, n, -1))


def _block(
    layer: Any,
    queries: Tensor,
    qpe: Tensor,
    keys: Tensor,
    pe: tuple[Tensor, Tensor] | None,
    shared: _SharedImage | None,
) -> tuple[Tensor, Tensor]:
    """One ``SamTwoWayAttentionBlock``.

    ``keys`` is ``(1, N, D)`` with ``shared``, else ``(G, N, D)`` with ``pe`` the
    :func:`_pe_proj` of the token-to-image keys and image-to-token queries.
    """
    q4 = queries.unsqueeze(1)  # HF's token-side modules take (G, 1, T, D)
    if layer.skip_first_layer_pe:
        queries = layer.self_attn(query=q4, key=q4, value=q4)[0][:, 0]
    else:
        query = (queries + qpe).unsqueeze(1)
        queries = queries + layer.self_attn(query=query, key=query, value=q4)[0][:, 0]
    queries = _layer_norm(queries, layer.layer_norm1)
    pe_k, pe_q = (None, None) if pe is None else pe
    attn = _tokens_to_image(layer.cross_attn_token_to_image, queries + qpe, keys, pe_k, shared)
    queries = _layer_norm(queries + attn, layer.layer_norm2)
    queries = _layer_norm(queries + layer.mlp(queries), layer.layer_norm3)
    keys = _image_to_tokens(
        layer.cross_attn_image_to_token,
        keys,
        queries + qpe,
        queries,
        pe_q,
        None if shared is None else shared.i2t_q,
    )
    return queries, _layer_norm(keys, layer.layer_norm4)


def _conv_weights(conv: nn.ConvTranspose2d) -> tuple[Tensor, Tensor]:
    """A stride-2, kernel-2 transposed conv as a per-pixel matmul: ``(Cin, 2*2*Cout)`` weight
    and bias, columns ordered (sub-pixel row, sub-pixel column, channel). Each output pixel
    depends on one input pixel, so there is no overlap-add."""
    w = conv.weight  # (Cin, Cout, 2, 2)
    bias = conv.bias if conv.bias is not None else w.new_zeros(w.shape[1])
    return w.permute(0, 2, 3, 1).reshape(w.shape[0], -1), bias.repeat(4)


def _upscale(decoder: Any, keys: Tensor, hyper: Tensor, out: Tensor) -> None:
    """Mask logits of one object, channels-last, in tiles of image tokens kept in cache.

    Args:
        keys: ``(N, D)`` image tokens after the transformer.
        hyper: ``(K, D/8)`` hypernetwork outputs of the returned mask tokens.
        out: ``(N, 16, K)`` written: output pixel (4y + 2i + i2, 4x + 2j + j2) of token (y, x)
            at sub-index (i, j, i2, j2).
    """
    w1, b1 = _conv_weights(decoder.upscale_conv1)
    w2, b2 = _conv_weights(decoder.upscale_conv2)
    norm = decoder.upscale_layer_norm
    for start in range(0, keys.shape[0], UPSCALE_TILE):
        tile = keys[start : start + UPSCALE_TILE]
        x = torch.addmm(b1, tile, w1).view(-1, norm.normalized_shape[0])  # (R*4, D/4)
        x = decoder.activation(
            F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        )
        x = decoder.activation(torch.addmm(b2, x, w2)).view(-1, w2.shape[1] // 4)  # (R*16, D/8)
        torch.mm(x, hyper.T, out=out[start : start + UPSCALE_TILE].view(-1, hyper.shape[0]))


def decode(
    model: Any,
    image_embeddings: Tensor,
    *,
    boxes: Tensor | None = None,
    points: Tensor | None = None,
    labels: Tensor | None = None,
    masks: Tensor | None = None,
    multimask: bool = False,
) -> tuple[Tensor, Tensor]:
    """Decode C objects of one image with a transformers ``SamModel``'s prompt decoder.

    Args:
        model: a ``SamModel`` (SAM or SlimSAM).
        image_embeddings: ``(1, D, h, w)`` image embedding (model dtype and device).
        boxes: ``(C, 4)`` xyxy in the model input frame (pixels of the resized image), or None.
        points: ``(C, P, 2)`` xy in the same frame, or None.
        labels: ``(C, P)`` int: 1 foreground, 0 background, -1 padding; needed with ``points``.
        masks: ``(C, 1, 4h, 4w)`` mask logits of an earlier prediction, or None.
        multimask: return the 3 multimask outputs instead of the single-mask output.

    Returns:
        ``(C, K, 4h, 4w)`` low-res mask logits and ``(C, K)`` predicted IoU, K = 3 with
        ``multimask`` else 1, in the model dtype.
    """
    if image_embeddings.ndim != 4 or image_embeddings.shape[0] != 1:
        shape = tuple(image_embeddings.shape)
        raise ValueError(f"image_embeddings must be (1, D, h, w), got {shape}")
    if points is not None and labels is None:
        raise ValueError("points need labels")
    count = next((int(x.shape[0]) for x in (boxes, points, masks) if x is not None), 0)
    if count == 0:
        raise ValueError("decode needs boxes, points or masks for at least one object")
    decoder, transformer = model.mask_decoder, model.mask_decoder.transformer
    sparse, dense = model.prompt_encoder(
        input_points=None if points is None else points[:, None],
        input_labels=None if labels is None else labels[:, None],
        input_boxes=None if boxes is None else boxes[:, None],
        input_masks=masks,
    )
    height, width = image_embeddings.shape[2:]
    image = image_embeddings.flatten(2).transpose(1, 2)  # (1, N, D)
    pe = model.get_image_wide_positional_embeddings().flatten(2).transpose(1, 2).contiguous()
    output = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = output.unsqueeze(0).expand(count, -1, -1)
    if sparse is not None:
        tokens = torch.cat([tokens, sparse[:, 0].to(output.dtype)], dim=1)  # (C, T, D)
    shared = None
    if masks is None:
        no_mask = model.prompt_encoder.no_mask_embed.weight.view(1, 1, -1).to(image.dtype)
        image = image + no_mask  # (1, N, D): one copy for all objects
        if len(transformer.layers) > 0:
            shared = _SharedImage.of(transformer.layers[0], image, image + pe)
    else:
        dense = dense.flatten(2).transpose(1, 2)  # (C, N, D)
    pe_proj = [
        None
        if shared is not None and i == 0
        else (
            _pe_proj(
                layer.cross_attn_token_to_image.k_proj,
                pe,
                layer.cross_attn_token_to_image.num_attention_heads,
            ),
            _pe_proj(
                layer.cross_attn_image_to_token.q_proj,
                pe,
                layer.cross_attn_image_to_token.num_attention_heads,
            ),
        )
        for i, layer in enumerate(transformer.layers)
    ]
    final = transformer.final_attn_token_to_image
    final_pe = _pe_proj(final.k_proj, pe, final.num_attention_heads)

    chosen = range(1, decoder.num_mask_tokens) if multimask else range(1)
    logits = torch.empty(
        count, height * width, 16, len(chosen), dtype=image.dtype, device=image.device
    )
    iou = torch.empty(count, len(chosen), dtype=image.dtype, device=image.device)
    # a GPU is bound by kernel launches, not cache: all objects at once there (untimed)
    group = GROUP if image.device.type == "cpu" else count
    for start in range(0, count, group):
        rows = slice(start, start + group)
        queries, pos = tokens[rows], tokens[rows]
        keys = image if masks is None else image + dense[rows]
        for i, layer in enumerate(transformer.layers):
            queries, keys = _block(
                layer, queries, pos, keys, pe_proj[i], shared if i == 0 else None
            )
        keys = keys.expand(len(queries), -1, -1)  # a decoder without layers never diverges
        attn = _tokens_to_image(final, queries + pos, keys, final_pe, None)
        queries = _layer_norm(queries + attn, transformer.layer_norm_final_attn)
        hyper = torch.stack(
            [decoder.output_hypernetworks_mlps[i](queries[:, 1 + i]) for i in chosen], dim=1
        )  # (G, K, D/8)
        for g in range(len(queries)):
            _upscale(decoder, keys[g], hyper[g], logits[start + g])
        scores = decoder.iou_prediction_head(queries[:, 0])
        iou[rows] = scores[:, 1:] if multimask else scores[:, :1]
    # (y, x, i, j, i2, j2) -> rows 4y + 2i + i2, columns 4x + 2j + j2
    logits = logits.view(count, height, width, 2, 2, 2, 2, -1).permute(0, 7, 1, 3, 5, 2, 4, 6)
    return logits.reshape(count, -1, 4 * height, 4 * width), iou
