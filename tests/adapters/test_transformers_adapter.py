"""transformers detectors: tiny random RT-DETR, OWLv2 and Grounding DINO saved to a temp dir and
loaded back through ``TransformersDetector``, plus their post-processed outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from composeseg.adapters import TransformersDetector, from_transformers, load_detector

IMAGE = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
LABELS = {0: "cat", 1: "dog"}


@pytest.fixture(scope="module")
def rtdetr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
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
    path = tmp_path_factory.mktemp("rtdetr")
    RTDetrForObjectDetection(config).save_pretrained(path)
    RTDetrImageProcessor(size={"height": 64, "width": 64}).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def owlv2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import (
        CLIPTokenizer,
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )

    # OWL masks a query whose first token id is 0: keep the start token off id 0
    vocab = {"!": 0, "<|startoftext|>": 1, "<|endoftext|>": 2}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[f"{c}</w>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    text = dict(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=16,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    vision = dict(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    torch.manual_seed(0)
    model = Owlv2ForObjectDetection(
        Owlv2Config(text_config=text, vision_config=vision, projection_dim=16)
    )
    path = tmp_path_factory.mktemp("owlv2")
    model.save_pretrained(path)
    image_processor = Owlv2ImageProcessor(size={"height": 32, "width": 32})
    Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def grounding_dino_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "cat", "dog"]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    backbone = SwinConfig(
        embed_dim=8,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=2,
        image_size=64,
        patch_size=4,
        out_indices=[2, 3, 4],
    )
    text = BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    config = GroundingDinoConfig(
        backbone_config=backbone,
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
        max_text_len=16,
        use_timm_backbone=False,
        use_pretrained_backbone=False,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("grounding_dino")
    GroundingDinoForObjectDetection(config).save_pretrained(path)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 64})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(
        path
    )
    return path


def test_closed_set_detector(rtdetr_dir: Path) -> None:
    detector = TransformersDetector(rtdetr_dir, threshold=0.0, device="cpu")
    assert not detector.zero_shot and detector.names == LABELS
    prompts = detector(IMAGE)
    assert len(prompts) == 12  # every query passes threshold 0
    assert set(prompts.data["class_name"]) <= {"cat", "dog"}
    assert (prompts.boxes[:, 2] <= 70).all() and (prompts.boxes[:, 3] <= 50).all()
    assert (np.diff(prompts.confidence) <= 0).all()
    only = TransformersDetector(rtdetr_dir, labels=["dog"], threshold=0.0, device="cpu")
    assert set(only(IMAGE).data["class_name"]) <= {"dog"}
    with pytest.raises(ValueError, match="unknown class name 'cow'"):
        TransformersDetector(rtdetr_dir, labels=["cow"], device="cpu")
    only.threshold = 1.0
    assert len(only(IMAGE)) == 0  # zero detections: empty prompts, no exception
    assert isinstance(load_detector(str(rtdetr_dir), threshold=0.5), TransformersDetector)


def test_owlv2_zero_shot(owlv2_dir: Path) -> None:
    with pytest.raises(ValueError, match="pass labels"):
        TransformersDetector(owlv2_dir, device="cpu")
    detector = TransformersDetector(
        owlv2_dir, labels=["cat", "dog"], threshold=0.0, device="cpu", top_k=2
    )
    assert detector.zero_shot
    prompts = detector(IMAGE)
    assert 1 <= len(prompts) <= 2  # random boxes: zero-area ones are dropped
    names = prompts.data["class_name"]
    assert set(names) <= {"cat", "dog"}
    assert [detector.names[i] for i in prompts.class_id] == list(names)


def test_grounding_dino_zero_shot(grounding_dino_dir: Path) -> None:
    detector = TransformersDetector(
        grounding_dino_dir, labels=["cat", "dog"], threshold=0.0, text_threshold=0.0, device="cpu"
    )
    prompts = detector(IMAGE)
    assert len(prompts) == 10
    # phrases are mapped back to the query they contain; -1 when none
    assert set(prompts.class_id.tolist()) <= {-1, 0, 1}
    assert len(prompts.data["class_name"]) == 10


@pytest.mark.parametrize(
    ("result", "labels", "ids", "names"),
    [
        (
            {
                "scores": torch.tensor([0.9]),
                "labels": torch.tensor([1]),
                "boxes": torch.tensor([[1.0, 2, 30, 40]]),
            },
            LABELS,
            [1],
            ["dog"],
        ),
        (
            {
                "scores": torch.tensor([0.9]),
                "labels": torch.tensor([0]),
                "boxes": torch.tensor([[1.0, 2, 30, 40]]),
                "text_labels": ["a cat"],
            },
            ["a cat", "a dog"],
            [0],
            ["a cat"],
        ),
        (
            {
                "scores": torch.tensor([0.9, 0.5]),
                "labels": ["dog", "bird"],
                "boxes": torch.tensor([[1.0, 2, 30, 40], [0, 0, 5, 5]]),
            },
            ["cat", "dog"],
            [1, -1],
            ["dog", "bird"],
        ),
    ],
)
def test_post_processed_results(result: dict, labels: object, ids: list, names: list) -> None:
    prompts = from_transformers(result, labels=labels, image_size=(50, 70))  # type: ignore[arg-type]
    assert prompts.class_id.tolist() == ids
    assert prompts.data["class_name"].tolist() == names


def test_bad_results() -> None:
    with pytest.raises(ValueError, match="no 'scores'"):
        from_transformers({"boxes": torch.zeros(0, 4)})
    nan = {
        "scores": torch.tensor([float("nan")]),
        "labels": torch.tensor([0]),
        "boxes": torch.tensor([[1.0, 2, 30, 40]]),
    }
    with pytest.raises(ValueError, match="nan"):
        from_transformers(nan)
    empty = {
        "scores": torch.zeros(0),
        "labels": torch.zeros(0, dtype=torch.long),
        "boxes": torch.zeros(0, 4),
    }
    assert len(from_transformers(empty, labels=LABELS)) == 0
