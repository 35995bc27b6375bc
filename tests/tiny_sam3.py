"""A random-init tiny SAM 3 (``Sam3Model`` + ``Sam3Processor``) built offline, for tests.

56 px input (4 x 4 patches of 14 px), one layer per stage, width 16, four queries and a
byte-level CLIP tokenizer without merges (every character is a token). A forward pass takes
milliseconds; the weights are meaningless.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

IMAGE_SIZE = 56
NUM_QUERIES = 4
_WIDTH = 16


def _byte_characters() -> list[str]:
    # The printable stand-ins byte-level BPE uses for the 256 byte values (GPT-2 / CLIP table).
    kept = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = {b: chr(b) for b in kept}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def tiny_sam3_vocab() -> dict[str, int]:
    """CLIP special tokens plus every byte alone and word-final (``"a</w>"``): 514 entries."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for char in _byte_characters():
            vocab[char + suffix] = len(vocab)
    return vocab


def tiny_sam3_config() -> Any:
    """The smallest ``Sam3Config`` that runs (see the module docstring)."""
    from transformers import Sam3Config
    from transformers.models.sam3.configuration_sam3 import (
        Sam3DETRDecoderConfig,
        Sam3DETREncoderConfig,
        Sam3GeometryEncoderConfig,
        Sam3MaskDecoderConfig,
        Sam3VisionConfig,
        Sam3ViTConfig,
    )

    heads: dict[str, Any] = {"num_attention_heads": 2}
    layer: dict[str, Any] = {
        "hidden_size": _WIDTH,
        "intermediate_size": 2 * _WIDTH,
        "num_layers": 1,
        **heads,
    }
    backbone = Sam3ViTConfig(
        hidden_size=_WIDTH,
        intermediate_size=2 * _WIDTH,
        num_hidden_layers=1,
        image_size=IMAGE_SIZE,
        pretrain_image_size=IMAGE_SIZE,
        patch_size=14,
        window_size=2,
        global_attn_indexes=[0],
        **heads,
    )
    text = {
        "vocab_size": len(tiny_sam3_vocab()),
        "hidden_size": _WIDTH,
        "intermediate_size": 2 * _WIDTH,
        "projection_dim": _WIDTH,
        "num_hidden_layers": 1,
        "max_position_embeddings": 32,
        "hidden_act": "gelu",
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 1,
        **heads,
    }
    return Sam3Config(
        vision_config=Sam3VisionConfig(
            backbone_config=backbone, fpn_hidden_size=_WIDTH, scale_factors=[2.0, 1.0]
        ),
        text_config=text,
        geometry_encoder_config=Sam3GeometryEncoderConfig(**layer),
        detr_encoder_config=Sam3DETREncoderConfig(**layer),
        detr_decoder_config=Sam3DETRDecoderConfig(num_queries=NUM_QUERIES, **layer),
        mask_decoder_config=Sam3MaskDecoderConfig(
            hidden_size=_WIDTH, num_upsampling_stages=2, **heads
        ),
    )


def tiny_sam3_processor() -> Any:
    """A ``Sam3Processor`` resizing to :data:`IMAGE_SIZE` with the tiny tokenizer."""
    from transformers import CLIPTokenizer, Sam3ImageProcessor, Sam3Processor

    image_processor = Sam3ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    tokenizer = CLIPTokenizer(vocab=tiny_sam3_vocab(), merges=[])
    return Sam3Processor(image_processor=image_processor, tokenizer=tokenizer)


def _redraw_(model: Any, seed: int) -> None:
    """Redraw every parameter at unit activation scale, in place, reproducibly.

    With transformers' init (std 0.02) a model this narrow predicts mask logits within 1e-7 of
    each other, so every mask is a coin flip at 0.5; redrawn, masks, boxes and scores depend on
    the image and the concept.
    """
    import math

    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            for name, param in module.named_parameters(recurse=False):
                noise = torch.randn(param.shape, generator=generator, dtype=param.dtype)
                if name == "weight" and isinstance(module, torch.nn.ConvTranspose2d):
                    param.copy_(noise / math.sqrt(param.shape[0]))
                elif name == "weight" and isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                    param.copy_(noise / math.sqrt(math.prod(param.shape[1:])))
                elif name == "weight" and param.dim() == 1:  # norm scales
                    param.copy_(1.0 + 0.1 * noise)
                elif name == "bias":
                    param.copy_(0.1 * noise)
                else:  # embeddings, queries, positional tables
                    param.copy_(noise)


def save_tiny_sam3(directory: Path, seed: int = 0) -> Path:
    """Write a random-init tiny ``Sam3Model`` and its processor with ``save_pretrained``."""
    import torch
    from transformers import Sam3Model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Sam3Model(tiny_sam3_config()).eval()
    _redraw_(model, seed)
    model.save_pretrained(directory)
    tiny_sam3_processor().save_pretrained(directory)
    return directory
