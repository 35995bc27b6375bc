"""LVIS (federated) AP of evaluate_instances and `composeseg eval instances --protocol lvis`,
on tiny ground truths built here."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from composeseg.evaluation import InstanceMetrics, LvisMetrics, evaluate_instances
from composeseg.evaluation.lvis import cap_per_image, looks_like_lvis, resolve_protocol
from composeseg.pipelines.cli import main
from composeseg.rle import encode_mask as mask_to_rle

H, W = 64, 80
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 pixels


def _rle(box: Box) -> dict[str, Any]:
    mask = np.zeros((H, W), bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = True
    return mask_to_rle(mask)


def _gt(
    objects: dict[int, list[tuple[int, Box]]],
    neg: dict[int, list[int]] | None = None,
    not_exhaustive: dict[int, list[int]] | None = None,
    frequencies: str = "rcf",
) -> dict[str, Any]:
    """An LVIS dataset: ``objects[image_id] = [(category_id, box), ...]``; category ``i + 1``
    has frequency ``frequencies[i]``."""
    neg, not_exhaustive = neg or {}, not_exhaustive or {}
    images = [
        {
            "id": i,
            "coco_url": f"http://images.cocodataset.org/val2017/{i:012d}.jpg",
            "height": H,
            "width": W,
            "neg_category_ids": neg.get(i, []),
            "not_exhaustive_category_ids": not_exhaustive.get(i, []),
        }
        for i in sorted(objects)
    ]
    annotations: list[dict[str, Any]] = []
    for image_id, items in sorted(objects.items()):
        for category_id, (x0, y0, x1, y1) in items:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_id,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "segmentation": _rle((x0, y0, x1, y1)),
                }
            )
    categories = [
        {"id": i + 1, "name": f"thing{i + 1}", "frequency": f} for i, f in enumerate(frequencies)
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


def _det(image_id: int, category_id: int, box: Box, score: float) -> dict[str, Any]:
    return {
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": _rle(box),
        "score": score,
    }


def _perfect(gt: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "segmentation": a["segmentation"],
            "score": 1.0,
        }
        for a in gt["annotations"]
    ]


# image 1: a rare and a frequent object, category 2 verified absent; image 2: a common and a
# frequent object, category 3 not exhaustively annotated
OBJECTS = {
    1: [(1, (2, 2, 22, 22)), (3, (40, 10, 70, 40))],
    2: [(2, (5, 30, 35, 60)), (3, (50, 0, 75, 20))],
}
GT = _gt(OBJECTS, neg={1: [2]}, not_exhaustive={2: [3]})


def test_perfect_predictions_score_one(tmp_path: Path) -> None:
    before = copy.deepcopy(GT)
    metrics = evaluate_instances(_perfect(GT), GT, out_dir=tmp_path)
    assert isinstance(metrics, LvisMetrics) and metrics.protocol == "lvis"
    assert metrics.ap == pytest.approx(1.0) and metrics.ap50 == pytest.approx(1.0)
    assert (metrics.ap_rare, metrics.ap_common, metrics.ap_frequent) == pytest.approx((1, 1, 1))
    assert metrics.ar == pytest.approx(1.0) and metrics.max_dets == 300
    assert metrics.num_images == 2 and metrics.num_predictions == 4
    assert before == GT  # the caller's ground truth is not modified
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["protocol"] == "lvis" and saved["ap_rare"] == pytest.approx(1.0)
    assert len(json.loads((tmp_path / "predictions.json").read_text())) == 4
    table = metrics.table()
    assert "| AP | AP50 | AP75 | APs | APm | APl | APr | APc | APf | AR300 |" in table


def test_hand_checked_precision_recall() -> None:
    # category 3 (frequent), two objects: hit (0.9), miss (0.8), hit (0.7) ->
    # precision 1 up to recall 0.5 (51 of COCO's 101 recall points), 2/3 up to recall 1 (50)
    gt = _gt({1: [(3, (0, 0, 20, 20)), (3, (40, 30, 70, 60))]}, frequencies="fff")
    dets = [
        _det(1, 3, (0, 0, 20, 20), 0.9),
        _det(1, 3, (25, 0, 35, 10), 0.8),
        _det(1, 3, (40, 30, 70, 60), 0.7),
    ]
    expected = (51 + 50 * 2 / 3) / 101
    metrics = evaluate_instances(dets, gt, protocol="lvis")
    assert metrics.ap == pytest.approx(expected) and metrics.ap_frequent == pytest.approx(expected)
    assert isinstance(metrics, LvisMetrics)
    assert metrics.ap_rare == -1 and metrics.ap_common == -1  # no such categories: not measured


@pytest.mark.parametrize(
    ("extra", "expected_ap", "why"),
    [
        # category 3 on image 1 is present, so a top-scored miss counts: precision 1/2 at
        # recall 1/2 and 2/3 at recall 1, interpolated to 2/3 throughout
        (_det(1, 3, (0, 40, 10, 60), 2.0), (1 + 1 + 2 / 3) / 3, "present category"),
        # category 2 on image 1 is verified absent (neg_category_ids): a false positive
        (_det(1, 2, (0, 40, 10, 60), 2.0), (1 + 0.5 + 1) / 3, "negative category"),
        # category 1 on image 2: neither present nor negative, so not evaluated
        (_det(2, 1, (40, 30, 60, 50), 2.0), 1.0, "unverified category"),
        # category 3 on image 2 is not exhaustively annotated: an unmatched detection is ignored
        (_det(2, 3, (0, 0, 10, 10), 2.0), 1.0, "not exhaustive"),
    ],
)
def test_federated_rules(extra: dict[str, Any], expected_ap: float, why: str) -> None:
    metrics = evaluate_instances([*_perfect(GT), extra], GT)
    assert metrics.ap == pytest.approx(expected_ap), why


def test_frequency_groups_are_separate() -> None:
    # a false positive on the common category lowers APc alone
    dets = [*_perfect(GT), _det(1, 2, (0, 40, 10, 60), 2.0)]
    metrics = evaluate_instances(dets, GT)
    assert isinstance(metrics, LvisMetrics)
    assert metrics.ap_rare == pytest.approx(1.0) and metrics.ap_frequent == pytest.approx(1.0)
    assert metrics.ap_common == pytest.approx(0.5)


def test_matches_coco_ap_when_annotations_are_exhaustive() -> None:
    rng = np.random.default_rng(0)
    objects: dict[int, list[tuple[int, Box]]] = {}
    for image_id in range(1, 5):
        items = []
        for _ in range(int(rng.integers(2, 5))):
            x0, y0 = int(rng.integers(0, W - 45)), int(rng.integers(0, H - 45))
            w, h = int(rng.integers(8, 45)), int(rng.integers(8, 45))  # small and medium
            items.append((int(rng.integers(1, 4)), (x0, y0, x0 + w, y0 + h)))
        objects[image_id] = items
    # every category not on an image is verified absent there: nothing is left unscored
    neg = {i: sorted({1, 2, 3} - {c for c, _ in items}) for i, items in objects.items()}
    gt = _gt(objects, neg=neg)
    dets = []
    for image_id, items in objects.items():
        for category_id, (x0, y0, x1, y1) in items:
            dx, dy = (int(v) for v in rng.integers(-4, 5, 2))
            box = (max(x0 + dx, 0), max(y0 + dy, 0), min(x1 + dx, W), min(y1 + dy, H))
            # right category mostly, sometimes a wrong one (a false positive)
            category = category_id if rng.random() < 0.8 else int(rng.integers(1, 4))
            dets.append(_det(image_id, category, box, float(rng.random())))
    lvis = evaluate_instances(dets, gt, protocol="lvis")
    coco = evaluate_instances(dets, gt, protocol="coco")
    assert isinstance(coco, InstanceMetrics) and coco.protocol == "coco"
    assert 0.1 < coco.ap < 0.95 and coco.ap_medium > 0  # non-trivial values: the check can fail
    for name in ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large"):
        assert getattr(lvis, name) == pytest.approx(getattr(coco, name)), name


def test_at_most_300_detections_per_image() -> None:
    gt = _gt({1: [(3, (0, 0, 20, 20))]}, frequencies="fff")
    # 300 higher-scored misses push the one hit out of the scored set
    misses = [_det(1, 3, (60, 40, 70, 50), 0.5 + i / 1000) for i in range(300)]
    hit = _det(1, 3, (0, 0, 20, 20), 0.1)
    metrics = evaluate_instances([hit, *misses], gt)
    assert metrics.ap == 0.0 and metrics.num_predictions == 300
    assert evaluate_instances([hit, *misses[:299]], gt).ap > 0.0
    kept = cap_per_image([hit, *misses, {**hit, "image_id": 2}], 300)
    assert len(kept) == 301 and kept[-1]["image_id"] == 2


def test_protocol_detection_and_bad_input() -> None:
    coco_gt = {"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1}]}
    assert looks_like_lvis(GT) and not looks_like_lvis(coco_gt)
    assert resolve_protocol("auto", GT) == "lvis" and resolve_protocol("auto", coco_gt) == "coco"
    assert resolve_protocol("coco", GT) == "coco"
    with pytest.raises(ValueError, match="protocol"):
        resolve_protocol("voc", GT)
    with pytest.raises(ValueError, match="frequency"):
        resolve_protocol("lvis", coco_gt)
    with pytest.raises(ValueError, match="no score"):
        cap_per_image([{"image_id": 1, "category_id": 1}])
    assert evaluate_instances([], GT).ap == 0.0
    # an LVIS ground truth scored as COCO: absent categories count everywhere
    assert isinstance(evaluate_instances(_perfect(GT), GT, protocol="coco"), InstanceMetrics)


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)  # import raises ImportError
    with pytest.raises(ImportError, match=r"composeseg\[lvis\]"):
        evaluate_instances(_perfect(GT), GT)


def test_cli_protocol_lvis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt_path, dets_path = tmp_path / "lvis_val.json", tmp_path / "dets.json"
    gt_path.write_text(json.dumps(GT))
    dets_path.write_text(json.dumps([*_perfect(GT), _det(1, 2, (0, 40, 10, 60), 2.0)]))
    out = tmp_path / "ev"
    args = ["eval", "instances", "--gt", str(gt_path), "--detections", str(dets_path)]
    assert main([*args, "--protocol", "lvis", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| APr | APc | APf |" in printed and "5 predictions on 2 images" in printed
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["protocol"] == "lvis" and saved["ap_common"] == pytest.approx(0.5)
    assert len(json.loads((out / "predictions.json").read_text())) == 5
    assert main([*args, "--protocol", "coco"]) == 0
    assert "APr" not in capsys.readouterr().out


def test_predictions_matched_to_lvis_images_by_coco_url_name() -> None:
    # LVIS images have no file_name: a predictions dataset names them by their COCO file
    images = [{"id": 10 + i["id"], "file_name": i["coco_url"].split("/")[-1]} for i in GT["images"]]
    records = [{**r, "image_id": 10 + r["image_id"]} for r in _perfect(GT)]
    metrics = evaluate_instances({"images": images, "annotations": records}, GT)
    assert metrics.ap == pytest.approx(1.0) and metrics.num_predictions == 4
