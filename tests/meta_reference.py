"""Meta ``segment_anything`` reference models with random weights, for parity tests.

How transformers' ``SamModel`` takes prompts, compared with Meta's ``Sam`` (checked in
``tests/core/test_convert.py``; all coordinates already in the model-input frame, i.e. the
``image_size`` x ``image_size`` padded input — what ``ResizeLongestSide.apply_coords`` gives):

- Meta's prompt encoder / mask decoder batch is "one row per prompt": points ``(P, N, 2)`` +
  labels ``(P, N)``, boxes ``(P, 4)``, masks ``(P, 1, 4g, 4g)``; outputs ``(P, M, 4g, 4g)`` and
  ``(P, M)``, where ``g = image_size // patch_size``, ``M`` = 3 (multimask) or 1.
- transformers adds an image dimension in front and calls the prompt dimension
  ``point_batch_size``: ``input_points (B, P, N, 2)`` float, ``input_labels (B, P, N)`` int,
  ``input_boxes (B, P, 4)`` (boxes and points together need the same ``P``); outputs
  ``pred_masks (B, P, M, 4g, 4g)`` and ``iou_scores (B, P, M)``. Labels: 1 fg, 0 bg, -1 "not a
  point" (Meta's pad), plus -10 = padding, whose embedding is zero (no Meta equivalent).
  Points without a box get one -1 pad point appended, as in Meta.
- ``input_masks`` is NOT ``(B, image_size, image_size)`` as transformers' docstring says: it
  goes straight into the mask-embedding convs and must be the low-res logits
  ``(B, 1, 4g, 4g)`` (256 x 256 for ViT models), exactly Meta's ``mask_input``. Its embedding
  is per IMAGE (added to the image embedding before the point-batch expansion), so several
  prompts with different mask inputs need the image embedding repeated along ``B``
  (``image_embeddings (P, C, g, g)``, ``input_points (P, 1, N, 2)``, ``input_masks
  (P, 1, 4g, 4g)``) — not ``point_batch_size``.
- ``model.get_image_embeddings(x)`` == ``sam.image_encoder(x)`` for the same normalised,
  padded ``(B, 3, image_size, image_size)`` tensor; ``model(image_embeddings=...)`` skips the
  encoder. Positional encoding: Meta's ``pe_layer.positional_encoding_gaussian_matrix`` is
  transformers' ``shared_image_embedding.positional_embedding`` (tied to
  ``prompt_encoder.shared_embedding.positional_embedding``).
"""

from __future__ import annotations

import math
from functools import partial

import torch
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

__all__ = ["build_meta_sam", "build_meta_sam_vit_b", "build_tiny_meta_sam", "perturb_"]


def build_meta_sam(
    *,
    img_size: int = 1024,
    patch_size: int = 16,
    embed_dim: int = 768,
    depth: int = 12,
    num_heads: int = 12,
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11),
    window_size: int = 14,
    mlp_ratio: float = 4.0,
    prompt_embed_dim: int = 256,
    mask_in_chans: int = 16,
    decoder_depth: int = 2,
    decoder_mlp_dim: int = 2048,
    decoder_num_heads: int = 8,
    iou_head_hidden_dim: int = 256,
) -> Sam:
    """Meta's ``Sam`` assembled as ``segment_anything.build_sam._build_sam`` does (eval mode).

    Defaults are ViT-B. Weights are Meta's init (several zero tables); see :func:`perturb_`.
    """
    grid = img_size // patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=depth,
            embed_dim=embed_dim,
            img_size=img_size,
            mlp_ratio=mlp_ratio,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=num_heads,
            patch_size=patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=global_attn_indexes,
            window_size=window_size,
            out_chans=prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(img_size, img_size),
            mask_in_chans=mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=decoder_depth,
                embedding_dim=prompt_embed_dim,
                mlp_dim=decoder_mlp_dim,
                num_heads=decoder_num_heads,
            ),
            transformer_dim=prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=iou_head_hidden_dim,
        ),
    )
    return sam.eval()


@torch.no_grad()
def perturb_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Redraws every parameter and buffer of ``model`` in place, reproducibly, keeping scales sane.

    Nothing stays zero or one, so a weight mapped to the wrong place (or not at all) changes
    the outputs: linear / conv weights ~ N(0, 1/fan_in), embeddings ~ N(0, 1), norm scales
    ~ 1 + N(0, 0.1), biases, norm shifts and positional / relative-position tables
    ~ N(0, 0.1), the Fourier-feature buffer ~ N(0, 1).
    """
    generator = torch.Generator().manual_seed(seed)

    def noise(t: torch.Tensor) -> torch.Tensor:
        return torch.randn(t.shape, generator=generator, dtype=t.dtype)

    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if name == "weight" and isinstance(module, torch.nn.ConvTranspose2d):
                # each output pixel sees one input pixel per kernel tap (stride == kernel)
                param.copy_(noise(param) / math.sqrt(param.shape[0]))
            elif name == "weight" and isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                param.copy_(noise(param) / math.sqrt(math.prod(param.shape[1:])))
            elif name == "weight" and isinstance(module, torch.nn.Embedding):
                param.copy_(noise(param))
            elif name == "weight" and param.dim() == 1:  # LayerNorm / LayerNorm2d scales
                param.copy_(1.0 + 0.1 * noise(param))
            else:  # biases, norm shifts, pos_embed, rel_pos_h / rel_pos_w
                param.copy_(0.1 * noise(param))
        for _, buffer in module.named_buffers(recurse=False):
            if buffer.is_floating_point() and buffer.dim() == 2:  # the Fourier-feature matrix
                buffer.copy_(noise(buffer))
    return model


def build_tiny_meta_sam(seed: int = 0, img_size: int = 128) -> Sam:
    """A tiny Meta ``Sam`` with every weight randomised by ``seed`` (eval mode).

    Same sizes as ``composeseg.tiny.tiny_sam_config(img_size)``: ViT width 32, 2 blocks,
    2 heads, window 4, block 1 global, patch 16, neck / prompt / decoder width 32, mask
    channels 8, decoder MLP 64 with 8 heads (Meta's count), IoU head width 32.
    """
    sam = build_meta_sam(
        img_size=img_size,
        embed_dim=32,
        depth=2,
        num_heads=2,
        global_attn_indexes=(1,),
        window_size=4,
        mlp_ratio=2.0,
        prompt_embed_dim=32,
        mask_in_chans=8,
        decoder_mlp_dim=64,
        iou_head_hidden_dim=32,
    )
    return perturb_(sam, seed)


def build_meta_sam_vit_b(seed: int = 0) -> Sam:
    """Meta's ViT-B SAM (1024 input) with random weights from ``seed``; for benchmarks.

    Takes a few seconds and ~360 MB; not used by the fast tests.
    """
    return perturb_(build_meta_sam(), seed)
