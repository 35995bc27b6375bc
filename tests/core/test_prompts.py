from __future__ import annotations

import numpy as np
import pytest

from composeseg import PADDING, Prompts
from composeseg.prompts import as_prompts, text_prompts

BOX = [10.0, 20.0, 50.0, 60.0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"boxes": [[10, 20, 5, 60]]}, r"boxes\[0\] = \[10.0, 20.0, 5.0, 60.0\] is inverted"),
        ({"boxes": [BOX, [1, 1, 1, 9]]}, r"boxes\[1\] .* inverted or empty"),
        ({"boxes": [[np.nan, 0, 1, 1]]}, r"boxes\[0\] .* not finite"),
        ({"boxes": [[0, 0, 1]]}, r"boxes must have shape \(N, 4\)"),
        ({"boxes": [0, 0, 1, 1]}, r"boxes must have 2 dimensions"),
        ({"points": [[[1, 2]]]}, r"point_labels is missing"),
        ({"point_labels": [[1]]}, r"points is missing"),
        (
            {"points": [[[1, 2]]], "point_labels": [[1, 1]]},
            r"point_labels must have shape \(1, 1\)",
        ),
        ({"points": [[[1, 2]]], "point_labels": [[2]]}, r"point_labels\[0, 0\] = 2"),
        ({"points": [[[np.nan, 2]]], "point_labels": [[1]]}, r"points\[0, 0\] .* not finite"),
        ({"points": [[[1, 2]]], "point_labels": [[PADDING]]}, r"object 0 has only padding"),
        ({"boxes": [BOX], "class_id": [1, 2]}, r"disagree on the number of objects"),
        ({"boxes": [BOX], "confidence": [np.nan]}, r"confidence\[0\] = nan"),
        ({"mask_input": np.zeros((1, 4, 5))}, r"mask_input must be square"),
        ({"boxes": [BOX], "data": {"name": ["a", "b"]}}, r"disagree"),
        ({"boxes": "abc"}, r"boxes could not be read"),
    ],
)
def test_invalid_prompts_name_the_problem(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Prompts(**kwargs)


def test_fields_are_typed_and_sliceable() -> None:
    prompts = Prompts(
        boxes=[BOX, [0, 0, 5, 5], [1, 1, 9, 9]],
        class_id=[3, 4, 5],
        confidence=[0.9, 0.8, 0.7],
        data={"class_name": ["cat", "dog", "eel"]},
    )
    assert prompts.boxes is not None and prompts.boxes.dtype == np.float32
    assert prompts.class_id is not None and prompts.class_id.dtype == np.int64
    assert len(prompts) == 3
    one = prompts[1]
    assert len(one) == 1 and one.data["class_name"].tolist() == ["dog"]
    picked = prompts[np.array([True, False, True])]
    assert picked.class_id is not None and picked.class_id.tolist() == [3, 5]
    assert prompts[1:].confidence is not None and len(prompts[1:].confidence) == 2
    assert "boxes(3, 4)" in repr(prompts)


def test_concatenate_pads_points_of_different_counts() -> None:
    a = Prompts(points=[[[1, 1]]], point_labels=[[1]])
    b = Prompts(points=[[[2, 2], [3, 3], [4, 4]]], point_labels=[[1, 0, 1]])
    joined = Prompts.concatenate([a, b, Prompts()])
    assert joined.points is not None and joined.points.shape == (2, 3, 2)
    assert joined.point_labels is not None
    assert joined.point_labels.tolist() == [[1, PADDING, PADDING], [1, 0, 1]]


def test_concatenate_refuses_mismatched_fields() -> None:
    with pytest.raises(ValueError, match="some batches have class_id"):
        Prompts.concatenate([Prompts(boxes=[BOX], class_id=[1]), Prompts(boxes=[BOX])])
    with pytest.raises(ValueError, match="data keys differ"):
        Prompts.concatenate(
            [Prompts(boxes=[BOX], data={"a": [1]}), Prompts(boxes=[BOX], data={"b": [1]})]
        )


def test_prompts_are_not_mutated_by_replace() -> None:
    original = Prompts(boxes=[BOX])
    changed = original.replace(boxes=[[0, 0, 1, 1]])
    assert original.boxes is not None and original.boxes.tolist() == [BOX]
    assert changed.boxes is not None and changed.boxes.tolist() == [[0, 0, 1, 1]]


@pytest.mark.parametrize(
    ("kwargs", "n", "points_shape"),
    [
        ({"boxes": BOX}, 1, None),
        ({"boxes": [BOX, BOX]}, 2, None),
        ({"points": [[1, 2], [3, 4]], "point_labels": [1, 0]}, 1, (1, 2, 2)),
        ({"points": [[[1, 2]], [[3, 4]]], "point_labels": [[1], [1]]}, 2, (2, 1, 2)),
        ({"boxes": np.zeros((0, 4))}, 0, None),
    ],
)
def test_as_prompts_accepts_single_objects(kwargs: dict, n: int, points_shape: tuple) -> None:
    prompts = as_prompts(**kwargs)
    assert len(prompts) == n
    assert (None if prompts.points is None else prompts.points.shape) == points_shape


def test_as_prompts_rejects_ambiguous_input() -> None:
    with pytest.raises(ValueError, match="without point_labels"):
        as_prompts(points=[[1, 2]])
    with pytest.raises(ValueError, match="either a Prompts object"):
        as_prompts(Prompts(boxes=[BOX]), boxes=[BOX])
    with pytest.raises(TypeError, match="composeseg.Prompts"):
        as_prompts({"boxes": [BOX]})  # type: ignore[arg-type]


def test_text_prompts_accept_one_or_many_and_name_the_bad_entry() -> None:
    assert text_prompts("a red car") == ["a red car"]
    assert text_prompts(("cat", "cat")) == ["cat", "cat"]  # repeats allowed unless unique
    with pytest.raises(ValueError, match="queries is empty"):
        text_prompts([], "queries")
    with pytest.raises(ValueError, match=r"texts\[1\] is blank or not a string: None"):
        text_prompts(["cat", None])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"concepts\[2\] 'cat' repeats concepts\[0\]"):
        text_prompts(["cat", "dog", "cat"], "concepts", unique=True)
