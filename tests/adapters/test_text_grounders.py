"""Text grounders: tiny random OWLv2, OWL-ViT, Grounding DINO, MM-Grounding-DINO and OmDet-Turbo
saved to a temp dir and loaded back through ``TransformersGrounder``."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from composeseg import Prompts
from composeseg.adapters import TextGrounder, TransformersDetector, TransformersGrounder

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tiny_detectors: shared builders
from tiny_detectors import (
    GROUNDING_MAX_TEXT_LEN,
    WORDS,
    build_grounding_dino,
    build_omdet_turbo,
    build_owl,
    build_rtdetr,
)

IMAGE = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
BUILDERS: dict[str, Callable[[Path], Path]] = {
    "owlv2": lambda path: build_owl(path, "owlv2"),
    "owlvit": lambda path: build_owl(path, "owlvit"),
    "grounding-dino": build_grounding_dino,
    "mm-grounding-dino": lambda path: build_grounding_dino(path, "mm-grounding-dino"),
    "omdet-turbo": build_omdet_turbo,
}
JOINED_TEXT = ("grounding-dino", "mm-grounding-dino")


@pytest.fixture(scope="module")
def grounders(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], TransformersGrounder]:
    """``model_type -> TransformersGrounder`` (threshold 0: every box of the random model)."""
    built: dict[str, TransformersGrounder] = {}

    def get(model_type: str) -> TransformersGrounder:
        if model_type not in built:
            path = BUILDERS[model_type](tmp_path_factory.mktemp(model_type))
            built[model_type] = TransformersGrounder(
                path, threshold=0.0, text_threshold=0.0, device="cpu"
            )
        return built[model_type]

    return get


@contextmanager
def _passes(grounder: TransformersGrounder) -> Iterator[list[int]]:
    """Collects the text length of each forward pass the grounder makes inside the block."""
    lengths: list[int] = []

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", kwargs.get("classes_input_ids"))
        lengths.append(int(ids.shape[-1]))

    handle = grounder.model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield lengths
    finally:
        handle.remove()


@pytest.mark.parametrize("model_type", sorted(BUILDERS))
def test_grounder_output(grounders: Callable, model_type: str) -> None:
    grounder = grounders(model_type)
    assert grounder.model_type == model_type and isinstance(grounder, TextGrounder)
    queries = ["cat", "dog", "dog cat"]
    prompts = grounder(IMAGE, queries)
    assert isinstance(prompts, Prompts) and len(prompts) >= 1
    assert prompts.boxes.dtype == np.float32 and prompts.boxes.shape == (len(prompts), 4)
    assert prompts.class_id.dtype == np.int64 and prompts.confidence.dtype == np.float32
    assert ((prompts.class_id >= 0) & (prompts.class_id < len(queries))).all()
    assert list(prompts.data["class_name"]) == [queries[i] for i in prompts.class_id]
    assert (prompts.boxes >= 0).all() and (prompts.boxes[:, [0, 2]] <= 70).all()
    assert (prompts.boxes[:, [1, 3]] <= 50).all()
    assert (np.diff(prompts.confidence) <= 0).all()  # highest confidence first

    empty = grounder(IMAGE, queries, threshold=1.0)
    assert len(empty) == 0 and empty.boxes.shape == (0, 4)
    assert empty.class_id.shape == (0,) and empty.confidence.shape == (0,)
    assert empty.data["class_name"].shape == (0,)

    # queries change per call: nothing of the first call's vocabulary leaks into the next
    only = grounder(IMAGE, ["dog"])
    assert set(only.class_id.tolist()) <= {0} and set(only.data["class_name"]) <= {"dog"}


@pytest.mark.parametrize("model_type", sorted(BUILDERS))
def test_fifty_queries(grounders: Callable, model_type: str) -> None:
    grounder = grounders(model_type)
    with _passes(grounder) as lengths:
        prompts = grounder(IMAGE, WORDS)
    assert len(prompts) >= 1
    assert ((prompts.class_id >= 0) & (prompts.class_id < 50)).all()
    assert list(prompts.data["class_name"]) == [WORDS[i] for i in prompts.class_id]
    if model_type not in JOINED_TEXT:
        assert len(lengths) == 1  # every query in one forward pass
        return
    # 50 one-token queries + "." each, [CLS] and [SEP]: 7 per pass of 16 tokens
    per_pass = (GROUNDING_MAX_TEXT_LEN - 2) // 2
    assert len(lengths) == math.ceil(50 / per_pass) > 1
    assert max(lengths) <= GROUNDING_MAX_TEXT_LEN
    # every pass contributes boxes labelled with its own queries (threshold 0 keeps them all)
    assert set((prompts.class_id // per_pass).tolist()) == set(range(len(lengths)))


@pytest.mark.parametrize("model_type", ["owlv2", "owlvit", "omdet-turbo"])
def test_long_query_is_truncated(grounders: Callable, model_type: str) -> None:
    long_query = "a spotted dog sleeping on a striped sofa"  # > 16 CLIP tokens (OWL's limit)
    prompts = grounders(model_type)(IMAGE, ["cat", long_query])
    assert set(prompts.data["class_name"]) <= {"cat", long_query}


def test_grounding_dino_labels_follow_query_tokens(grounders: Callable) -> None:
    grounder = grounders("grounding-dino")
    captured = []
    handle = grounder.model.register_forward_hook(lambda m, args, output: captured.append(output))
    prompts = grounder(IMAGE, ["cat", "dog"])
    handle.remove()
    # "cat. dog." -> [CLS] cat . dog . [SEP]: the queries are tokens 1 and 3
    probs = captured[-1].logits[0].sigmoid()[:, [1, 3]]
    scores, ids = probs.max(dim=1)
    expected = sorted(zip(scores.tolist(), ids.tolist(), strict=True), reverse=True)
    got = list(zip(prompts.confidence.tolist(), prompts.class_id.tolist(), strict=True))
    assert len(got) == len(expected)  # no zero-area box among the 10
    for (score, index), (want_score, want_index) in zip(got, expected, strict=True):
        assert index == want_index and score == pytest.approx(want_score, abs=1e-6)


def test_max_queries_per_pass(grounders: Callable) -> None:
    owl = grounders("owlvit")  # OWL-ViT: no square padding, so all 16 boxes lie in the image
    chunked = TransformersGrounder(owl.name, threshold=0.0, max_queries_per_pass=2, device="cpu")
    with _passes(chunked) as lengths:
        prompts = chunked(IMAGE, ["cat", "dog", "ak", "bl", "cm"])
    assert len(lengths) == 3
    assert ((prompts.class_id >= 0) & (prompts.class_id < 5)).all()
    top = TransformersGrounder(
        owl.name, threshold=0.0, max_queries_per_pass=2, device="cpu", top_k=3
    )
    assert len(prompts) == 3 * 16  # 16 boxes per pass, each labelled with its pass's queries
    assert sorted(np.bincount(prompts.class_id // 2).tolist()) == [16, 16, 16]
    assert len(top(IMAGE, ["cat", "dog", "ak"])) == 3  # top_k counts across passes


@pytest.mark.parametrize(
    ("queries", "message"),
    [
        ([], "empty"),
        ((), "empty"),
        (["cat", " "], r"queries\[1\] is blank or not a string: ' '"),
        (["cat", 3], r"queries\[1\] is blank or not a string: 3"),
        ([" ".join(["cat"] * 15)], "tokens long"),  # 15 tokens + "." > 16 - [CLS] - [SEP]
    ],
)
def test_bad_queries(grounders: Callable, queries: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        grounders("grounding-dino")(IMAGE, queries)


def test_bad_arguments(grounders: Callable, tmp_path: Path) -> None:
    rtdetr = build_rtdetr(tmp_path / "rtdetr")
    with pytest.raises(ValueError, match="'rt_detr' model, not a zero-shot"):
        TransformersGrounder(rtdetr, device="cpu")
    owl = grounders("owlv2").name
    for kwargs in ({"threshold": 1.5}, {"text_threshold": -0.1}, {"max_queries_per_pass": 0}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            TransformersGrounder(owl, device="cpu", **kwargs)
    with pytest.raises(ValueError, match="threshold"):
        grounders("owlv2")(IMAGE, ["cat"], threshold=2.0)


def test_detector_shares_the_grounder(grounders: Callable) -> None:
    grounder = grounders("mm-grounding-dino")
    detector = TransformersDetector(
        grounder.name, labels=["cat", "dog"], threshold=0.0, text_threshold=0.0, device="cpu"
    )
    direct = grounder(IMAGE, ["cat", "dog"])
    via_detector = detector(IMAGE)
    np.testing.assert_allclose(via_detector.boxes, direct.boxes, atol=1e-4)
    assert via_detector.class_id.tolist() == direct.class_id.tolist()
    detector.threshold = 1.0  # read at each call
    assert len(detector(IMAGE)) == 0
