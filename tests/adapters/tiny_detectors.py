"""Tiny random-init transformers detectors saved with ``save_pretrained``, for offline tests.

Each ``build_*`` writes model + processor into ``path`` and returns it; load them back with
``TransformersDetector`` / ``TransformersGrounder``. Not a test module: test files import it
after putting this directory on ``sys.path`` (pytest runs with ``--import-mode=importlib``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

LABELS = {0: "cat", 1: "dog"}
"""Classes of the closed-set RT-DETR."""
GROUNDING_MAX_TEXT_LEN = 16
"""``max_text_len`` of the tiny Grounding DINO models: 7 one-token queries fit one pass."""
WORDS = [a + b for a in "abcdefghij" for b in "klmno"]
"""50 distinct queries: one token each for the tiny BERT, two letters for the tiny CLIP."""


def build_rtdetr(path: Path) -> Path:
    """A closed-set RT-DETR with 12 queries over :data:`LABELS`, 64x64 input."""
    from transformers import (
        RTDetrConfig,
        RTDetrForObjectDetection,
        RTDetrImageProcessor,
        RTDetrResNetConfig,
    )

    backbone = RTDetrResNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 16, 16, 16],
        depths=[1, 1, 1, 1],
        out_features=["stage2", "stage3", "stage4"],
        layer_type="basic",
    )
    config = RTDetrConfig(
        backbone_config=backbone,
        encoder_hidden_dim=16,
        encoder_in_channels=[16, 16, 16],
        encoder_ffn_dim=32,
        d_model=16,
        decoder_ffn_dim=32,
        num_queries=12,
        decoder_layers=1,
        encoder_layers=1,
        decoder_n_points=2,
        decoder_in_channels=[16, 16, 16],
        num_denoising=0,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        hidden_expansion=0.5,
        id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()},
    )
    torch.manual_seed(0)
    RTDetrForObjectDetection(config).save_pretrained(path)
    RTDetrImageProcessor(size={"height": 64, "width": 64}).save_pretrained(path)
    return path


def _clip_tokenizer() -> Any:
    from transformers import CLIPTokenizer

    # OWL masks a query whose first token id is 0: keep the start token off id 0. Letters and
    # end-of-word letters spell any lowercase word without merges.
    vocab = {"!": 0, "<|startoftext|>": 1, "<|endoftext|>": 2}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[f"{c}</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)


def _clip_text_config(vocab_size: int, hidden_size: int = 16, max_length: int = 16) -> dict:
    return dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=max_length,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )


def build_owl(path: Path, model_type: str = "owlv2") -> Path:
    """An OWLv2 (``"owlv2"``) or OWL-ViT (``"owlvit"``): 32x32 input, 16 boxes, 16 tokens."""
    import transformers

    prefix = {"owlv2": "Owlv2", "owlvit": "OwlViT"}[model_type]
    config_class = getattr(transformers, f"{prefix}Config")
    model_class = getattr(transformers, f"{prefix}ForObjectDetection")
    image_processor_class = getattr(transformers, f"{prefix}ImageProcessor")
    processor_class = getattr(transformers, f"{prefix}Processor")
    tokenizer = _clip_tokenizer()
    vision = dict(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    config = config_class(
        text_config=_clip_text_config(len(tokenizer)), vision_config=vision, projection_dim=16
    )
    torch.manual_seed(0)
    model_class(config).save_pretrained(path)
    image_processor = image_processor_class(
        size={"height": 32, "width": 32}, crop_size={"height": 32, "width": 32}
    )
    processor_class(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path


def _tiny_swin() -> Any:
    from transformers import SwinConfig

    return SwinConfig(
        embed_dim=8,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=2,
        image_size=64,
        patch_size=4,
        out_indices=[2, 3, 4],
    )


def build_omdet_turbo(path: Path) -> Path:
    """An OmDet-Turbo: 64x64 input, 10 boxes, CLIP text of 77 tokens (its processor pads to 77)."""
    from transformers import (
        DetrImageProcessor,
        OmDetTurboConfig,
        OmDetTurboForObjectDetection,
        OmDetTurboProcessor,
    )

    tokenizer = _clip_tokenizer()
    config = OmDetTurboConfig(
        backbone_config=_tiny_swin(),
        # transformers' Swin returns channels-first maps; the layer norms expect timm's NHWC
        apply_layernorm_after_vision_backbone=False,
        text_config=_clip_text_config(len(tokenizer), hidden_size=24, max_length=77),
        image_size=64,
        text_projection_in_dim=24,
        text_projection_out_dim=24,
        task_encoder_hidden_dim=32,
        # != decoder_hidden_dim: transformers 5.24 only creates the decoder's task projection then
        class_embed_dim=24,
        num_queries=10,
        encoder_hidden_dim=16,
        vision_features_channels=[16, 16, 16],
        encoder_in_channels=[16, 32, 64],
        encoder_attention_heads=2,
        encoder_dim_feedforward=32,
        decoder_hidden_dim=16,
        decoder_num_heads=2,
        decoder_num_layers=1,
        decoder_dim_feedforward=32,
        decoder_num_points=2,
    )
    torch.manual_seed(0)
    OmDetTurboForObjectDetection(config).save_pretrained(path)
    image_processor = DetrImageProcessor(size={"height": 64, "width": 64}, do_pad=False)
    OmDetTurboProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path


def build_grounding_dino(path: Path, model_type: str = "grounding-dino") -> Path:
    """A Grounding DINO (``"grounding-dino"``) or MM-Grounding-DINO (``"mm-grounding-dino"``):
    64x64 input, 10 boxes, ``max_text_len`` :data:`GROUNDING_MAX_TEXT_LEN`. Its BERT vocabulary
    knows ``cat``, ``dog`` and :data:`WORDS`; any other word is one ``[UNK]`` token."""
    import transformers
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )

    prefix = {"grounding-dino": "GroundingDino", "mm-grounding-dino": "MMGroundingDino"}
    config_class = getattr(transformers, f"{prefix[model_type]}Config")
    model_class = getattr(transformers, f"{prefix[model_type]}ForObjectDetection")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "cat", "dog", *WORDS]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    text = BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    config = config_class(
        backbone_config=_tiny_swin(),
        text_config=text,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=10,
        num_feature_levels=3,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=GROUNDING_MAX_TEXT_LEN,
        use_timm_backbone=False,
        use_pretrained_backbone=False,
    )
    torch.manual_seed(0)
    model_class(config).save_pretrained(path)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 64})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(
        path
    )
    return path
