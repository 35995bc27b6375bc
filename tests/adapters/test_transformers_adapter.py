"""transformers detectors: tiny random RT-DETR, OWLv2 and Grounding DINO saved to a temp dir and
loaded back through ``TransformersDetector``, plus their post-processed outputs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from composeseg.adapters import TransformersDetector, from_transformers, load_detector

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tiny_detectors: shared builders
from tiny_detectors import LABELS, build_grounding_dino, build_owl, build_rtdetr

IMAGE = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def rtdetr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_rtdetr(tmp_path_factory.mktemp("rtdetr"))


@pytest.fixture(scope="module")
def owlv2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_owl(tmp_path_factory.mktemp("owlv2"), "owlv2")


@pytest.fixture(scope="module")
def grounding_dino_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_grounding_dino(tmp_path_factory.mktemp("grounding_dino"))


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
    # each box is labelled with the query whose tokens score highest: never unmatched
    assert set(prompts.class_id.tolist()) <= {0, 1}
    assert [detector.names[i] for i in prompts.class_id] == list(prompts.data["class_name"])


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
