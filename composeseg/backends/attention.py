"""Memory-lean ViT layers for the image encoder of SAM, SlimSAM and SAM-HQ.

transformers' ``SamVisionAttention`` (eager) and ``SamVisionSdpaAttention`` (its default) add
the decomposed relative-position bias ``rel_h[q, kh] + rel_w[q, kw]`` (MViTv2) to the attention
scores as one ``(B, heads, N, N)`` tensor. In a global-attention layer of ViT-B at 1024²
(N = 4096 tokens, 12 heads) that is 805 MB of float32 per image, written by a broadcast add and
copied once more before SDPA reads it: the four global layers make the encoder's memory peak
(1.79 GB above the model) and, through first-touch page faults and memory traffic, about a
quarter of its CPU time.

:class:`LeanVisionLayer` runs the same layer with two changes:

* Attention runs in chunks of query rows (and of images or windows). Each chunk's bias is
  written into one buffer of at most :data:`CHUNK_BYTES`, reused by every chunk of the call, and
  handed to ``torch.nn.functional.scaled_dot_product_attention`` as its ``attn_mask``: the full
  N x N map never exists. With grad enabled each chunk gets its own bias, which autograd keeps.
  In eager CPU inference the global layers go further: per head and block of a few query rows,
  bias + scaled q k^T, softmax and the product with v run as cache-sized matmuls (CPU SDPA with
  a float mask ran at half the matmul rate), and windowed layers in batched matmuls over
  blocks of (window, head) pairs.
* In eager float32 CPU inference the q/k/v, output and MLP projections go through oneDNN with
  the bias and GELU fused into the GEMM (:mod:`composeseg.backends.onednn`).
* Windowed layers project q/k/v from the real tokens only. transformers pads the normed tokens
  with zeros to a multiple of the window (64 -> 70 at 1024²) before the projection, so the 804
  padding tokens cost 16 % more q/k/v and output projections; a zero token projects to the
  projection's bias, so the padded keys and values are filled with it instead (same result).

The layers reuse the replaced layers' modules and parameters (same objects, same names), so
state dicts, ``save_pretrained`` and training are unchanged; ``output_attentions`` and
transformers' ``output_hidden_states`` recording are not supported (load with
``attention="transformers"`` for those).

SAM 2's Hiera encoder has no relative-position bias and transformers already runs it through
SDPA without an N x N map, so nothing is swapped there.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.modeling_layers import GradientCheckpointingLayer

from composeseg.backends import onednn

AttentionImpl = Literal["lean", "transformers"]
"""``"lean"``: :class:`LeanVisionLayer`; ``"transformers"``: the loaded model's own layers
(SDPA by default), kept selectable for benchmarks and comparisons."""

CHUNK_BYTES: dict[str, int] = {"cpu": 64 * 2**20}
"""Bias bytes per chunk, by device type. On a CPU, 64 MiB chunks (5 query rows of ViT-B at
1024²) ran fastest of 4-128 MiB. Other devices use :data:`DEFAULT_CHUNK_BYTES`: fewer, larger
SDPA calls keep a GPU busy."""
DEFAULT_CHUNK_BYTES = 512 * 2**20
CPU_BLOCKED_TOKENS = 1024
"""From this many tokens (global layers; windows have 196), CPU inference attends in
cache-sized blocks of matmuls (:meth:`LeanVisionAttention._attend_blocked`) instead of SDPA."""
CPU_BLOCK_BYTES = 4 * 2**20
"""Scores per block on a CPU: 4 query rows of ViT-B at 1024², fastest of 1-16 rows measured."""
CPU_WINDOW_BLOCK = 16
"""(window, head) pairs per batched matmul in CPU windowed attention: 2.4 MB of scores for
ViT-B's 14x14 windows; fastest of 8-300 measured."""


def rel_pos_table(size: int, rel_pos: Tensor) -> Tensor:
    """Relative-position embeddings for every (query, key) pair along one axis.

    Args:
        size: tokens along the axis, the same for queries and keys (SAM's ViT attends within a
            square window or over the whole square grid).
        rel_pos: ``(L, d)`` learned embeddings, ``L = 2 * size - 1`` at the size they were
            trained for; other lengths are linearly resized, as in Meta's ``get_rel_pos``.

    Returns:
        ``(size, size, d)``: entry ``[i, j]`` is the embedding of the offset ``i - j``.
    """
    length = 2 * size - 1
    if rel_pos.shape[0] != length:
        rel_pos = F.interpolate(rel_pos.T[None], size=length, mode="linear")[0].T
    coords = torch.arange(size, device=rel_pos.device)
    return rel_pos[coords[:, None] - coords[None, :] + (size - 1)]


class LeanVisionAttention(nn.Module):
    """Multi-head attention with decomposed relative-position bias over a whole token grid.

    Unlike transformers' module it takes the full ``(B, H, W, C)`` grid also in windowed layers
    and partitions it itself (after the q/k/v projection, see the module docstring).

    Args:
        source: transformers' ``Sam(HQ)VisionAttention`` (or SDPA subclass) to replace; its
            ``qkv``, ``proj``, ``rel_pos_h`` and ``rel_pos_w`` are taken over, not copied.
        window_size: the layer's window side in tokens; 0 for global attention.
        chunk_bytes: bias bytes per chunk; default :data:`CHUNK_BYTES` for the device.
    """

    def __init__(
        self, source: nn.Module, *, window_size: int, chunk_bytes: int | None = None
    ) -> None:
        super().__init__()
        module: Any = source
        self.num_attention_heads = int(module.num_attention_heads)
        self.scale = float(module.scale)
        self.dropout = float(module.dropout)
        self.use_rel_pos = bool(module.use_rel_pos)
        self.qkv: nn.Linear = module.qkv
        self.proj: nn.Linear = module.proj
        if self.use_rel_pos:
            self.rel_pos_h: nn.Parameter = module.rel_pos_h
            self.rel_pos_w: nn.Parameter = module.rel_pos_w
        self.window_size = int(window_size)
        self.chunk_bytes = chunk_bytes

    def forward(self, hidden_states: Tensor) -> Tensor:
        """``(B, H, W, C)`` normed tokens -> ``(B, H, W, C)`` attention output (projected)."""
        batch, height, width, channels = hidden_states.shape
        heads = self.num_attention_heads
        head_dim = self.qkv.out_features // (3 * heads)
        qkv = onednn.linear(hidden_states, self.qkv)  # (B, H, W, 3C)
        window = self.window_size
        if window == 0:
            side_h, side_w = height, width
            # (3, B, heads, N, d) in one copy: SDPA on contiguous heads ran ~10 % faster than
            # on strided views of the projection, copy included
            qkv = qkv.view(batch, height * width, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        else:
            side_h = side_w = window
            padded_h, padded_w = -(-height // window) * window, -(-width // window) * window
            if (padded_h, padded_w) != (height, width):
                # transformers pads the normed tokens with zeros, which project to the bias
                fill = 0.0 if self.qkv.bias is None else self.qkv.bias
                grid = qkv.new_empty(batch, padded_h, padded_w, qkv.shape[-1])
                grid[:, :height, :width] = qkv
                grid[:, height:] = fill
                grid[:, :height, width:] = fill
                qkv = grid
            rows, cols = padded_h // window, padded_w // window
            # (3, B * windows, heads, w * w, d), windows row-major as in transformers
            qkv = qkv.view(batch, rows, window, cols, window, 3, heads, head_dim)
            qkv = qkv.permute(5, 0, 1, 3, 6, 2, 4, 7).reshape(
                3, -1, heads, window * window, head_dim
            )
        query, key, value = qkv.contiguous().unbind(0)
        out = self._attend(query, key, value, side_h, side_w)  # (G, heads, n, d)
        if window == 0:
            out = out.transpose(1, 2).reshape(batch, height, width, channels)
        else:
            out = out.view(batch, rows, cols, heads, window, window, head_dim)
            out = out.permute(0, 1, 4, 2, 5, 3, 6).reshape(
                batch, rows * window, cols * window, channels
            )[:, :height, :width]
        return onednn.linear(out, self.proj)

    def _attend(
        self, query: Tensor, key: Tensor, value: Tensor, side_h: int, side_w: int
    ) -> Tensor:
        """SDPA over G groups (images or windows) of ``side_h x side_w`` tokens.

        Args:
            query, key, value: ``(G, heads, n, d)``, n = side_h * side_w, contiguous.

        Returns:
            ``(G, heads, n, d)``.
        """
        groups, heads, tokens, head_dim = query.shape
        dropout = self.dropout if self.training else 0.0
        if not self.use_rel_pos:
            return F.scaled_dot_product_attention(
                query, key, value, dropout_p=dropout, scale=self.scale
            )
        # rel_h[g, n, y, x, ky] = q[g, n, (y, x)] . Rh[y, ky]; the bias of query (y, x) and key
        # (ky, kx) is rel_h[..., ky] + rel_w[..., kx] (unscaled query, as in Meta's code)
        grid = query.view(groups, heads, side_h, side_w, head_dim)
        rel_h = torch.einsum("gnyxc,ykc->gnyxk", grid, rel_pos_table(side_h, self.rel_pos_h))
        rel_w = torch.einsum("gnyxc,xkc->gnyxk", grid, rel_pos_table(side_w, self.rel_pos_w))

        # one reused buffer in eager inference; autograd needs every chunk's own bias, and
        # under torch.compile Inductor plans the memory itself (it rejects out= into views)
        functional = torch.is_grad_enabled() or torch.compiler.is_compiling()
        if not functional and query.device.type == "cpu":
            if tokens >= CPU_BLOCKED_TOKENS:
                return self._attend_blocked(query, key, value, rel_h, rel_w)
            if self.window_size:
                return self._attend_windows(query, key, value, rel_h, rel_w)
        row = heads * side_w * tokens  # one group's bias for one query row, in elements
        budget = self._chunk_bytes(query.device) // query.element_size()
        rows = max(1, min(side_h, budget // row))
        per_chunk = max(1, min(groups, budget // (row * side_h))) if rows == side_h else 1
        buffer = None if functional else query.new_empty(per_chunk * rows * row)

        out = torch.empty_like(query)
        for g0 in range(0, groups, per_chunk):
            g1 = min(groups, g0 + per_chunk)
            for y0 in range(0, side_h, rows):
                y1 = min(side_h, y0 + rows)
                pair_h = rel_h[g0:g1, :, y0:y1, :, :, None]
                pair_w = rel_w[g0:g1, :, y0:y1, :, None, :]
                if buffer is None:
                    bias = pair_h + pair_w
                else:
                    size = (g1 - g0) * (y1 - y0) * row
                    bias = buffer[:size].view(g1 - g0, heads, y1 - y0, side_w, side_h, side_w)
                    torch.add(pair_h, pair_w, out=bias)
                queries = slice(y0 * side_w, y1 * side_w)
                out[g0:g1, :, queries] = F.scaled_dot_product_attention(
                    query[g0:g1, :, queries],
                    key[g0:g1],
                    value[g0:g1],
                    attn_mask=bias.reshape(g1 - g0, heads, (y1 - y0) * side_w, tokens),
                    dropout_p=dropout,
                    scale=self.scale,
                )
        return out

    def _attend_blocked(
        self, query: Tensor, key: Tensor, value: Tensor, rel_h: Tensor, rel_w: Tensor
    ) -> Tensor:
        """Global attention on a CPU, in eager inference: per head and block of query rows,
        scores = bias + scale * q k^T, softmax, times v, each block small enough to stay in
        the cache (:data:`CPU_BLOCK_BYTES`).

        With a float mask, CPU SDPA ran the global layers of ViT-B at about 100 GFLOP/s; these
        blocks run as matmuls at about twice that (0.38 s against 0.45 s per layer at 1024²).

        Args:
            query, key, value: ``(G, heads, n, d)``.
            rel_h, rel_w: ``(G, heads, side_h, side_w, side_h | side_w)`` decomposed biases.
        """
        groups, heads, tokens, _ = query.shape
        side_h, side_w = rel_h.shape[2], rel_h.shape[3]
        rows = max(1, min(side_h, CPU_BLOCK_BYTES // (side_w * tokens * query.element_size())))
        key_t = key.transpose(-1, -2)
        out = torch.empty_like(query)
        for g in range(groups):
            for y0 in range(0, side_h, rows):
                y1 = min(side_h, y0 + rows)
                queries = slice(y0 * side_w, y1 * side_w)
                for h in range(heads):
                    pair_h, pair_w = rel_h[g, h, y0:y1, :, :, None], rel_w[g, h, y0:y1, :, None, :]
                    scores = torch.add(pair_h, pair_w).reshape((y1 - y0) * side_w, tokens)
                    scores.addmm_(query[g, h, queries], key_t[g, h], alpha=self.scale)
                    torch.mm(torch.softmax(scores, -1), value[g, h], out=out[g, h, queries])
        return out

    def _attend_windows(
        self, query: Tensor, key: Tensor, value: Tensor, rel_h: Tensor, rel_w: Tensor
    ) -> Tensor:
        """Windowed attention on a CPU, in eager inference: batched matmuls over blocks of
        :data:`CPU_WINDOW_BLOCK` (window, head) pairs (fewer if their scores would pass
        :data:`CPU_BLOCK_BYTES`), bias + scaled q k^T, softmax, times v.

        With a float mask, CPU SDPA took 76 ms per windowed layer of ViT-B at 1024² on one
        core; these blocks took 51 ms. Arguments as :meth:`_attend_blocked`.
        """
        groups, heads, tokens, head_dim = query.shape
        side_h, side_w = rel_h.shape[2], rel_h.shape[3]
        pairs = groups * heads
        q, v = query.reshape(pairs, tokens, head_dim), value.reshape(pairs, tokens, head_dim)
        key_t = key.reshape(pairs, tokens, head_dim).transpose(1, 2)
        rel_h = rel_h.reshape(pairs, side_h, side_w, side_h, 1)
        rel_w = rel_w.reshape(pairs, side_h, side_w, 1, side_w)
        block = max(
            1, min(pairs, CPU_WINDOW_BLOCK, CPU_BLOCK_BYTES // (tokens**2 * q.element_size()))
        )
        out = torch.empty_like(q)
        buffer = q.new_empty(block * tokens * tokens)
        for i in range(0, pairs, block):
            j = min(pairs, i + block)
            scores = buffer[: (j - i) * tokens * tokens].view(j - i, tokens, tokens)
            torch.add(
                rel_h[i:j], rel_w[i:j], out=scores.view(j - i, side_h, side_w, side_h, side_w)
            )
            scores.baddbmm_(q[i:j], key_t[i:j], alpha=self.scale)
            torch.bmm(torch.softmax(scores, -1), v[i:j], out=out[i:j])
        return out.view(groups, heads, tokens, head_dim)

    def _chunk_bytes(self, device: torch.device) -> int:
        if self.chunk_bytes is not None:
            return self.chunk_bytes
        return CHUNK_BYTES.get(device.type, DEFAULT_CHUNK_BYTES)


class LeanVisionLayer(GradientCheckpointingLayer):
    """A ``SamVisionLayer`` / ``SamHQVisionLayer`` computed with :class:`LeanVisionAttention`.

    Same input and output, ``(B, H, W, C)`` tokens; same submodules (``layer_norm1``, ``attn``'s
    projections and relative positions, ``layer_norm2``, ``mlp``) and ``window_size``, which
    SAM-HQ's encoder reads to find its global-attention layers.
    """

    def __init__(self, layer: nn.Module, *, chunk_bytes: int | None = None) -> None:
        super().__init__()
        source: Any = layer
        self.layer_norm1: nn.Module = source.layer_norm1
        self.window_size = int(source.window_size)
        self.attn = LeanVisionAttention(
            source.attn, window_size=self.window_size, chunk_bytes=chunk_bytes
        )
        self.layer_norm2: nn.Module = source.layer_norm2
        self.mlp: nn.Module = source.mlp
        # the fused CPU path computes lin1 -> erf GELU -> lin2, which is this block exactly
        # when its activation is transformers' GELUActivation in its default (erf) form
        act = getattr(self.mlp, "act", None)
        self._exact_gelu_mlp = (
            type(act).__name__ == "GELUActivation"
            and getattr(act, "act", None) is F.gelu
            and isinstance(getattr(self.mlp, "lin1", None), nn.Linear)
            and isinstance(getattr(self.mlp, "lin2", None), nn.Linear)
        )

    def forward(self, hidden_states: Tensor) -> Tensor:
        hidden_states = hidden_states + self.attn(self.layer_norm1(hidden_states))
        normed = self.layer_norm2(hidden_states)
        mlp: Any = self.mlp
        if self._exact_gelu_mlp and onednn.fused_linear_available(normed):
            return hidden_states + onednn.linear(
                onednn.linear(normed, mlp.lin1, gelu=True), mlp.lin2
            )
        return hidden_states + self.mlp(normed)


def use_lean_attention(model: nn.Module, *, chunk_bytes: int | None = None) -> int:
    """Swap the ViT layers of a SAM / SlimSAM / SAM-HQ image encoder for lean ones, in place.

    Every transformers ``SamVisionLayer`` / ``SamHQVisionLayer`` of ``model.vision_encoder``
    (or of ``model`` itself, an encoder), eager or SDPA, becomes a :class:`LeanVisionLayer` over
    the same modules. Models without such layers (SAM 2's Hiera) are left as they are; a second
    call changes nothing.

    Returns:
        The number of lean layers in the encoder (0 for SAM 2).
    """
    from transformers.models.sam.modeling_sam import SamVisionLayer

    originals: tuple[type[nn.Module], ...] = (SamVisionLayer,)
    try:
        from transformers.models.sam_hq.modeling_sam_hq import SamHQVisionLayer
    except ImportError:  # pragma: no cover - transformers without SAM-HQ
        pass
    else:
        originals = (*originals, SamHQVisionLayer)
    encoder = getattr(model, "vision_encoder", model)
    layers = getattr(encoder, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        return 0
    for index, layer in enumerate(layers):
        if isinstance(layer, originals):
            layers[index] = LeanVisionLayer(layer, chunk_bytes=chunk_bytes)
    return sum(isinstance(layer, LeanVisionLayer) for layer in layers)
