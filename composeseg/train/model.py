"""Model-side pieces of training: initialisation, freezing, and the forward with gradients.

Training runs transformers' ``SamModel`` modules directly (``get_image_embeddings`` is
``@torch.no_grad``), and decodes through :meth:`composeseg.backends.sam.SamBackend.decode`, the
same call inference makes, so the prompt encoding cannot drift between the two.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import SamConfig, SamModel

from composeseg.backends.base import DecoderPrompts
from composeseg.backends.sam import SamBackend


def check_trainable(model: nn.Module) -> SamModel:
    """Return ``model`` if the trainer supports it (SAM / SlimSAM ``SamModel``), else raise.

    Raises:
        TypeError: SAM-HQ, SAM 2 or anything else, naming the class.
    """
    if type(model) is not SamModel:
        raise TypeError(
            f"the trainer supports transformers SamModel (SAM, SlimSAM); got {type(model).__name__}"
        )
    return model


def freeze_fourier_matrix(model: SamModel) -> None:
    """Stop gradients to the random-Fourier positional matrix, as Meta's code does.

    Meta keeps it as a buffer; transformers makes it a ``Parameter`` (shared by the image-wide
    positional embedding and the prompt encoder), which an optimiser would otherwise move.
    """
    for embedding in (model.shared_image_embedding, model.prompt_encoder.shared_embedding):
        embedding.positional_embedding.requires_grad_(False)


def reset_to_pytorch_defaults(module: nn.Module) -> None:
    """Give every linear, (transposed) convolution and embedding under ``module`` the
    initialisation PyTorch constructs it with (Kaiming uniform; ``N(0, 1)`` for embeddings).

    Draws from the global torch RNG in module order: seed it (under ``fork_rng``) first.
    """
    for child in module.modules():
        if isinstance(child, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            child.reset_parameters()
        elif isinstance(child, nn.Embedding):
            nn.init.normal_(child.weight)


def init_for_training(model: SamModel, seed: int = 0) -> SamModel:
    """Re-initialise a freshly built ``SamModel`` the way Meta's code does, so training works.

    transformers initialises every linear, convolution and embedding with ``N(0,
    initializer_range)`` (0.02; the vision encoder even ~1e-10). At the widths of a small model
    that shrinks activations layer after layer: measured on the tiny preset, gradient norms were
    ~100x (decoder) and ~4000x (vision encoder) smaller than with PyTorch's default init, and
    training collapsed to all-background masks. Meta's modules use PyTorch's defaults, so:

    - linear and (transposed) convolution layers: their own ``reset_parameters()`` (Kaiming
      uniform, as ``nn.Linear`` / ``nn.Conv2d`` construct themselves);
    - embeddings (prompt tokens, IoU / mask tokens): ``N(0, 1)``, ``nn.Embedding``'s default;
    - the random-Fourier matrix (``shared_image_embedding.positional_embedding``, tied to the
      prompt encoder's): ``N(0, 1)`` and frozen, as Meta keeps it (transformers draws it with
      std = hidden / 2, which aliases every coordinate).

    The global torch RNG is left untouched; the same ``seed`` gives the same weights. Returns
    ``model`` (modified in place).
    """
    check_trainable(model)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(int(seed))
        reset_to_pytorch_defaults(model)
        matrix = model.shared_image_embedding.positional_embedding
        matrix.copy_(torch.randn(matrix.shape, dtype=matrix.dtype))
        prompt_matrix = model.prompt_encoder.shared_embedding.positional_embedding
        if prompt_matrix is not matrix:
            prompt_matrix.copy_(matrix)
    freeze_fourier_matrix(model)
    return model


def frame_size(model: SamModel) -> int:
    """S: side of the model's square input frame, in pixels."""
    config: Any = model.config
    return int(config.vision_config.image_size)


def encode(model: SamModel, pixels: torch.Tensor) -> torch.Tensor:
    """``(B, 3, S, S)`` normalised pixels -> ``(B, C, S/P, S/P)`` image embeddings (P: the
    patch side), with grad."""
    return model.vision_encoder(pixels).last_hidden_state


def decode(
    model: SamModel,
    embeddings: torch.Tensor,
    *,
    boxes: torch.Tensor | None = None,
    points: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    mask_input: torch.Tensor | None = None,
    multimask: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode one object per row of ``embeddings`` (model frame), with grad.

    Args:
        embeddings: ``(N, C, h, w)``, one per object (index a per-image batch to build it).
        boxes: ``(N, 4)`` xyxy; points: ``(N, P, 2)`` xy; labels: ``(N, P)`` 1 / 0 / -1.
        mask_input: ``(N, 1, M, M)`` logits of the previous round.

    Returns:
        ``(N, K, M, M)`` low-res logits and ``(N, K)`` predicted IoU; K = 3 with ``multimask``.
    """
    prompts = DecoderPrompts(boxes=boxes, points=points, labels=labels, masks=mask_input)
    return SamBackend(model).decode((embeddings,), prompts, multimask)


DEMO_MODEL_SIZES: dict[str, int | tuple[int, ...]] = {
    "image_size": 256,
    "patch_size": 16,
    "hidden_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "window_size": 8,
    "global_attn_indexes": (3,),
    "mlp_dim": 512,
    "output_channels": 64,
    "decoder_hidden_size": 64,
    "decoder_num_layers": 2,
    "decoder_num_heads": 4,
    "decoder_mlp_dim": 256,
    "mask_input_channels": 16,
    "iou_head_hidden_dim": 64,
}
"""The embedded demo model: 16 x 16 tokens of a 256 px frame, low-res masks 64 x 64."""


def model_preset(name: str, patch_size: int | None = None) -> SamConfig:
    """``"demo"`` (the embedded demo model's architecture) or ``"tiny"`` (tests).

    Args:
        patch_size: the image encoder's patch side in pixels instead of the preset's (16). The
            image embedding and the low-res masks grow as the patch shrinks: 8 px patches give
            four times the tokens of a frame (the windows keep their size in tokens, so they
            cover a quarter of the pixels).

    Raises:
        ValueError: an unknown preset, or a patch that does not divide the preset's frame.
    """
    from composeseg.configs import sam_config
    from composeseg.tiny import tiny_sam_config

    if name == "demo":
        config = sam_config(**DEMO_MODEL_SIZES)  # type: ignore[arg-type]
    elif name == "tiny":
        config = tiny_sam_config()
    else:
        raise ValueError(f"unknown model preset {name!r}; expected 'demo' or 'tiny'")
    if patch_size is None:
        return config
    vision: Any = config.vision_config
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size must be an int >= 1, got {patch_size!r}")
    if vision.image_size % patch_size:
        raise ValueError(
            f"patch_size {patch_size} does not divide the {name} preset's "
            f"{vision.image_size} px frame"
        )
    vision.patch_size = patch_size
    prompt: Any = config.prompt_encoder_config
    prompt.patch_size = patch_size
    prompt.image_embedding_size = vision.image_size // patch_size
    return config


def build_model_for_training(config: SamConfig, seed: int = 0) -> SamModel:
    """A new ``SamModel`` from ``config``, initialised by :func:`init_for_training`.

    The global torch RNG is left untouched; the same ``config`` and ``seed`` give the same
    weights.
    """
    from composeseg.configs import validate_sam_config

    validate_sam_config(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SamModel(config)
    return init_for_training(model, seed)
