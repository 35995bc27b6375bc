"""TextSegmentation's three routes on tiny random models: grounder -> SAM boxes, CLIP matcher
over proposals, SAM 3 natively; plus re-ranking, cross-concept dedupe and validation."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
import torch

from composeseg import Prompts, Sam
from composeseg.adapters import ClipMatcher, TransformersGrounder
from composeseg.concepts import ConceptSam, load_sam3
from composeseg.geometry import tight_boxes
from composeseg.pipelines.amg import AutomaticMaskGenerator
from composeseg.pipelines.text import TextConfig, TextSegmentation
from composeseg.train.clip import CLIP_MEAN, CLIP_STD, CROP_SIZE, demo_clip_config
from composeseg.train.clip_data import build_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tiny_sam3
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters"))  # tiny_detectors
from tiny_detectors import WORDS, build_owl
from tiny_sam3 import save_tiny_sam3

H, W = 90, 140
QUERIES = ["red square", "blue", "green star"]


def _image() -> np.ndarray:
    image = np.random.default_rng(0).integers(0, 60, (H, W, 3), dtype=np.uint8)
    image[20:60, 30:100] = (220, 40, 40)
    image[65:85, 100:130] = (40, 40, 220)
    return image


def _rect(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y0:y1, x0:x1] = True
    return mask


PROPOSALS = np.stack(
    [_rect(30, 20, 100, 60), _rect(100, 65, 130, 85), _rect(0, 0, 20, 20), _rect(5, 70, 40, 88)]
)


def _proposals(image: np.ndarray) -> sv.Detections:
    """A mask proposer with four fixed, disjoint masks (stands in for automatic generation)."""
    return sv.Detections(
        xyxy=tight_boxes(PROPOSALS),
        mask=PROPOSALS.copy(),
        confidence=np.array([0.9, 0.8, 0.7, 0.6], np.float32),
    )


@pytest.fixture(scope="module")
def owl(tmp_path_factory: pytest.TempPathFactory) -> TransformersGrounder:
    """A tiny OWLv2 at threshold 0: 16 boxes for any query."""
    path = build_owl(tmp_path_factory.mktemp("owlv2"), "owlv2")
    return TransformersGrounder(path, threshold=0.0, device="cpu")


@pytest.fixture(scope="module")
def matcher(tmp_path_factory: pytest.TempPathFactory) -> ClipMatcher:
    """A tiny random CLIP in the demo text model's shape, saved as train_clip saves it."""
    from transformers import CLIPImageProcessor, CLIPModel

    path = tmp_path_factory.mktemp("tiny_clip")
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    config = demo_clip_config(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id)
    CLIPModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    CLIPImageProcessor(
        size={"shortest_edge": CROP_SIZE},
        crop_size={"height": CROP_SIZE, "width": CROP_SIZE},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    ).save_pretrained(path)
    return ClipMatcher(path, device="cpu")


@pytest.fixture(scope="module")
def sam3(tmp_path_factory: pytest.TempPathFactory) -> ConceptSam:
    return load_sam3(save_tiny_sam3(tmp_path_factory.mktemp("tiny_sam3")), device="cpu")


def _check_detections(found: sv.Detections, queries: Sequence[str]) -> None:
    n = len(found)
    assert found.mask is not None and found.mask.shape == (n, H, W)
    assert found.mask.dtype == bool
    assert found.xyxy.shape == (n, 4) and found.xyxy.dtype == np.float32
    assert found.confidence is not None and found.confidence.shape == (n,)
    assert found.class_id is not None and found.class_id.dtype == np.int64
    assert ((found.class_id >= 0) & (found.class_id < len(queries))).all()
    assert list(found.data["class_name"]) == [queries[i] for i in found.class_id]


def _mask_index(mask: np.ndarray) -> int:
    (index,) = np.flatnonzero((mask == PROPOSALS).all(axis=(1, 2)))
    return int(index)


# ---------------------------------------------------------------- grounder route


def test_grounder_route(tiny_sam: Sam, owl: TransformersGrounder) -> None:
    queries = ["cat", "dog"]
    found = TextSegmentation(tiny_sam, grounder=owl, nms_iou=1.0)(_image(), queries)
    _check_detections(found, queries)
    grounded = owl(_image(), queries)
    assert len(found) == len(grounded) > 1  # one mask per grounded box (threshold 0), NMS off
    assert sorted(found.class_id.tolist()) == sorted(grounded.class_id.tolist())
    np.testing.assert_allclose(
        found.xyxy[np.lexsort(found.xyxy.T)], grounded.boxes[np.lexsort(grounded.boxes.T)]
    )
    assert (found.confidence <= 1).all() and "clip_similarity" not in found.data
    deduped = TextSegmentation(tiny_sam, grounder=owl)(_image(), queries)
    _check_detections(deduped, queries)
    assert 1 <= len(deduped) <= 16


def test_grounder_route_with_fifty_concepts(tiny_sam: Sam, owl: TransformersGrounder) -> None:
    found = TextSegmentation(tiny_sam, grounder=owl, nms_iou=1.0)(_image(), WORDS)
    _check_detections(found, WORDS)
    assert len(found) == len(owl(_image(), WORDS)) > 1


@pytest.mark.parametrize("where", ["grounder", "pipeline"])
def test_grounder_route_nothing_found(tiny_sam: Sam, owl: TransformersGrounder, where: str) -> None:
    if where == "grounder":  # the grounder finds nothing
        grounder = TransformersGrounder(owl.name, threshold=1.0, device="cpu")
        pipe = TextSegmentation(tiny_sam, grounder=grounder)
    else:  # everything is found, then thresholded away (confidence <= 1)
        pipe = TextSegmentation(tiny_sam, grounder=owl, threshold=1.5)
    found = pipe(_image(), ["cat", "dog"])
    assert len(found) == 0
    _check_detections(found, ["cat", "dog"])
    assert found.data["class_name"].shape == (0,)


def test_function_grounder_and_top_k(tiny_sam: Sam) -> None:
    calls: list[list[str]] = []

    def grounder(image: np.ndarray, queries: Sequence[str]) -> Prompts:
        calls.append(list(queries))
        assert image.shape == (H, W, 3) and image.dtype == np.uint8
        return Prompts(
            boxes=np.array([[30, 20, 100, 60], [100, 65, 130, 85], [0, 0, 20, 20]], np.float32),
            class_id=np.array([1, 0, 1]),
            confidence=np.array([0.9, 0.8, 0.3], np.float32),
        )

    queries = ["blue thing", "red thing"]
    found = TextSegmentation(tiny_sam, grounder=grounder, nms_iou=1.0)(_image(), queries)
    assert calls == [queries]
    _check_detections(found, queries)
    given = {(30, 20, 100, 60): (1, 0.9), (100, 65, 130, 85): (0, 0.8), (0, 0, 20, 20): (1, 0.3)}
    assert len(found) == 3
    for box, class_id, confidence in zip(found.xyxy, found.class_id, found.confidence, strict=True):
        want_class, detector_score = given[tuple(int(v) for v in box)]
        assert class_id == want_class
        assert 0 <= confidence <= detector_score  # detector score x SAM's mask score
    top = TextSegmentation(tiny_sam, grounder=grounder, top_k=1, nms_iou=1.0)(_image(), queries)
    assert sorted(top.class_id.tolist()) == [0, 1]
    red = top.confidence[top.class_id == 1][0]
    assert red == found.confidence[found.class_id == 1].max()  # the better of the two reds


def test_a_grounder_must_return_prompts(tiny_sam: Sam) -> None:
    def boxes_only(image: np.ndarray, queries: Sequence[str]) -> np.ndarray:
        return np.array([[0, 0, 10, 10]], np.float32)

    with pytest.raises(TypeError, match="ndarray, not Prompts"):
        TextSegmentation(tiny_sam, grounder=boxes_only)(_image(), ["cat"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("class_id", "shown"), [(None, "None"), ([2], r"\[2\]"), ([-1], r"\[-1\]")]
)
def test_grounder_class_ids_must_index_the_queries(
    tiny_sam: Sam, class_id: list[int] | None, shown: str
) -> None:
    def grounder(image: np.ndarray, queries: Sequence[str]) -> Prompts:
        ids = None if class_id is None else np.array(class_id)
        return Prompts(boxes=np.array([[0, 0, 40, 40]], np.float32), class_id=ids)

    with pytest.raises(ValueError, match=f"index the 2 queries, got {shown}"):
        TextSegmentation(tiny_sam, grounder=grounder)(_image(), ["cat", "dog"])


def test_same_box_for_two_queries_is_one_object(tiny_sam: Sam) -> None:
    def twice(image: np.ndarray, queries: Sequence[str]) -> Prompts:
        return Prompts(
            boxes=np.array([[30, 20, 100, 60]] * 2, np.float32),
            class_id=np.array([0, 1]),
            confidence=np.array([0.4, 0.8], np.float32),
        )

    queries = ["cat", "kitten"]
    kept = TextSegmentation(tiny_sam, grounder=twice)(_image(), queries)
    assert kept.class_id.tolist() == [1]  # the better-scored query keeps the object
    assert kept.data["class_name"].tolist() == ["kitten"]
    both = TextSegmentation(tiny_sam, grounder=twice, nms_iou=1.0)(_image(), queries)
    assert sorted(both.class_id.tolist()) == [0, 1]
    np.testing.assert_array_equal(both.mask[0], both.mask[1])


# ---------------------------------------------------------------- matcher route


def test_matcher_route_with_automatic_masks(tiny_sam: Sam, matcher: ClipMatcher) -> None:
    generator = AutomaticMaskGenerator(
        tiny_sam, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    pipe = TextSegmentation(tiny_sam, matcher=matcher, generator=generator)
    assert pipe.config.top_k == 1  # the matcher alone keeps one mask per concept by default
    found = pipe(_image(), QUERIES)
    _check_detections(found, QUERIES)
    assert 1 <= len(found) <= len(QUERIES)
    assert len(set(found.class_id.tolist())) == len(found)
    np.testing.assert_array_equal(found.data["clip_similarity"], found.confidence)


def test_default_generator_is_built_lazily(tiny_sam: Sam, matcher: ClipMatcher) -> None:
    pipe = TextSegmentation(tiny_sam, matcher=matcher)
    assert pipe._generator is None
    generator = pipe.generator
    assert isinstance(generator, AutomaticMaskGenerator) and pipe.generator is generator
    assert generator.config.points_per_side == 16


def _similarity(matcher: ClipMatcher) -> np.ndarray:
    return matcher(_image(), PROPOSALS, QUERIES, boxes=tight_boxes(PROPOSALS))


def _pairs(found: sv.Detections) -> set[tuple[int, int]]:
    return {(_mask_index(m), int(c)) for m, c in zip(found.mask, found.class_id, strict=True)}


def test_matcher_picks_the_best_mask_per_concept(tiny_sam: Sam, matcher: ClipMatcher) -> None:
    sim = _similarity(matcher)
    best = {(int(np.argmax(sim[:, c])), c) for c in range(len(QUERIES))}
    pipe = TextSegmentation(
        tiny_sam, matcher=matcher, generator=_proposals, nms_iou=1.0, quality_weight=0.0
    )
    found = pipe(_image(), QUERIES)
    assert _pairs(found) == best
    for m, c, s in zip(found.mask, found.class_id, found.confidence, strict=True):
        assert s == pytest.approx(sim[_mask_index(m), c], abs=1e-6)
    # with NMS, a mask two concepts picked stays once, for the concept it matches better
    deduped = TextSegmentation(tiny_sam, matcher=matcher, generator=_proposals, quality_weight=0.0)(
        _image(), QUERIES
    )
    winners = {}
    for m, c in best:
        if m not in winners or sim[m, c] > sim[m, winners[m]]:
            winners[m] = c
    assert _pairs(deduped) == set(winners.items())
    assert (np.diff(deduped.confidence) <= 0).all()


def test_matcher_top_k_and_threshold(tiny_sam: Sam, matcher: ClipMatcher) -> None:
    sim = _similarity(matcher)
    top2 = TextSegmentation(
        tiny_sam, matcher=matcher, generator=_proposals, top_k=2, nms_iou=1.0, quality_weight=0.0
    )
    want = {(int(m), c) for c in range(3) for m in np.argsort(-sim[:, c])[:2]}
    assert _pairs(top2(_image(), QUERIES)) == want
    cut = float(np.median(sim))
    above = TextSegmentation(
        tiny_sam,
        matcher=matcher,
        generator=_proposals,
        threshold=cut,
        nms_iou=1.0,
        quality_weight=0.0,
    )
    found = above(_image(), QUERIES)
    assert above.config.top_k is None  # a threshold alone keeps every mask above it
    assert _pairs(found) == {(int(m), int(c)) for m, c in zip(*np.nonzero(sim >= cut), strict=True)}
    assert (found.confidence >= cut).all()
    nothing = TextSegmentation(tiny_sam, matcher=matcher, generator=_proposals, threshold=0.99)
    empty = nothing(_image(), QUERIES)
    assert len(empty) == 0 and empty.mask.shape == (0, H, W)


def test_quality_weight_prefers_well_formed_masks(tiny_sam: Sam, matcher: ClipMatcher) -> None:
    # Proposal 0 has the best predicted IoU; weighted heavily enough, quality decides the pick
    # while the reported confidence stays the CLIP similarity.
    sim = _similarity(matcher)
    pipe = TextSegmentation(
        tiny_sam, matcher=matcher, generator=_proposals, nms_iou=1.0, quality_weight=100.0
    )
    found = pipe(_image(), QUERIES)
    assert _pairs(found) == {(0, c) for c in range(len(QUERIES))}
    assert np.allclose(found.confidence, sim[0, found.class_id], atol=1e-6)
    assert np.allclose(found.data["clip_similarity"], found.confidence)
    with pytest.raises(ValueError, match="quality_weight"):
        TextSegmentation(tiny_sam, matcher=matcher, quality_weight=-1.0)


def test_matcher_with_no_proposals(tiny_sam: Sam, matcher: ClipMatcher) -> None:
    def none(image: np.ndarray) -> sv.Detections:
        return sv.Detections.empty()

    found = TextSegmentation(tiny_sam, matcher=matcher, generator=none)(_image(), QUERIES)
    assert len(found) == 0 and found.mask.shape == (0, H, W)


def test_matcher_reranks_grounded_masks(tiny_sam: Sam, matcher: ClipMatcher) -> None:
    def grounder(image: np.ndarray, queries: Sequence[str]) -> Prompts:
        return Prompts(
            boxes=tight_boxes(PROPOSALS),
            class_id=np.array([0, 0, 1, 2]),
            confidence=np.array([0.9, 0.8, 0.7, 0.6], np.float32),
        )

    plain = TextSegmentation(tiny_sam, grounder=grounder, nms_iou=1.0)(_image(), QUERIES)
    ranked = TextSegmentation(tiny_sam, grounder=grounder, matcher=matcher, nms_iou=1.0)
    found = ranked(_image(), QUERIES)
    _check_detections(found, QUERIES)
    assert len(found) == 4 and "clip_similarity" in found.data
    # the confidence stays the grounder's x SAM's; the similarity is the mask's with its query
    np.testing.assert_allclose(np.sort(found.confidence), np.sort(plain.confidence), atol=1e-6)
    sim = matcher(_image(), found.mask, QUERIES, boxes=found.xyxy)
    np.testing.assert_allclose(
        found.data["clip_similarity"], sim[np.arange(4), found.class_id], atol=1e-5
    )
    # top_k=1 keeps, for query 0, the mask CLIP prefers, not the grounder's first
    one = TextSegmentation(tiny_sam, grounder=grounder, matcher=matcher, top_k=1, nms_iou=1.0)
    first = one(_image(), QUERIES)
    kept = first.data["clip_similarity"][first.class_id == 0]
    assert kept == pytest.approx(found.data["clip_similarity"][found.class_id == 0].max())


# ---------------------------------------------------------------- SAM 3 route


def test_sam3_route(sam3: ConceptSam) -> None:
    queries = ["cat", "red car"]
    found = TextSegmentation(sam3, threshold=0.0, nms_iou=1.0)(_image(), queries)
    _check_detections(found, queries)
    direct = sam3.segment_concepts(_image(), queries, threshold=0.0)
    assert len(found) == len(direct) > 0
    np.testing.assert_allclose(np.sort(found.confidence), np.sort(direct.scores), atol=1e-6)
    assert "clip_similarity" not in found.data


def test_sam3_threshold_reaches_the_model(sam3: ConceptSam) -> None:
    scores = sam3.segment_concepts(_image(), ["cat", "red car"], threshold=0.0).scores
    cut = float(np.median(scores))
    found = TextSegmentation(sam3, threshold=cut, nms_iou=1.0)(_image(), ["cat", "red car"])
    assert len(found) == (scores > cut).sum() > 0
    empty = TextSegmentation(sam3, threshold=1.0)(_image(), ["cat", "red car"])
    assert len(empty) == 0 and empty.mask.shape == (0, H, W)
    assert empty.class_id.shape == (0,) and empty.data["class_name"].shape == (0,)


def test_sam3_with_matcher_reranks(sam3: ConceptSam, matcher: ClipMatcher) -> None:
    found = TextSegmentation(sam3, matcher=matcher, threshold=0.0, top_k=1)(_image(), QUERIES)
    _check_detections(found, QUERIES)
    assert len(set(found.class_id.tolist())) == len(found) > 0
    assert "clip_similarity" in found.data


def test_route_choice_errors(tiny_sam: Sam, sam3: ConceptSam, owl: TransformersGrounder) -> None:
    with pytest.raises(ValueError, match="SAM 3 takes texts itself"):
        TextSegmentation(sam3, grounder=owl)
    with pytest.raises(ValueError, match="grounder .* or a matcher"):
        TextSegmentation(tiny_sam)
    assert "grounder" in repr(TextSegmentation(tiny_sam, grounder=owl))
    assert "sam3" in repr(TextSegmentation(sam3))


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("queries", "message"),
    [
        ([], "queries is empty"),
        ("  ", r"queries\[0\] is blank"),
        (["cat", ""], r"queries\[1\] is blank"),
        (["cat", "dog", "cat"], r"queries\[2\] 'cat' repeats queries\[0\]"),
    ],
)
def test_bad_queries(
    tiny_sam: Sam, owl: TransformersGrounder, queries: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        TextSegmentation(tiny_sam, grounder=owl)(_image(), queries)  # type: ignore[arg-type]


def test_a_single_string_query(tiny_sam: Sam, owl: TransformersGrounder) -> None:
    found = TextSegmentation(tiny_sam, grounder=owl, nms_iou=1.0)(_image(), "cat")
    assert set(found.data["class_name"].tolist()) == {"cat"}
    assert len(found) == len(owl(_image(), ["cat"]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_k": 0}, "top_k"),
        ({"threshold": float("nan")}, "threshold"),
        ({"nms_iou": 1.5}, "nms_iou"),
        ({"nms_containment": -0.1}, "nms_containment"),
        ({"nms_min_area_ratio": 2.0}, "nms_min_area_ratio"),
    ],
)
def test_bad_config(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TextConfig(**kwargs)
