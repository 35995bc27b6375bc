"""The embedded demo SAM + demo grounder (text -> boxes -> masks) on scenes they never saw.

As in ``test_demo_text_quality.py``: each scene has at least three objects, no two sharing
colour and kind, so "the green square" names exactly one object among distractors (picking an
object at random would score about 0.2). Seeds start at ``EVALUATION_SEED_START`` + 20 000:
above every training and validation seed of the models (see ``composeseg.train.grounder``).

The demo grounder is weak, and these floors are guards against a broken retrain, not quality
targets. The route measured mean mask IoU 0.58 on these scenes (0.66 and 0.76 on two
validation sets), below the 0.7 floor the issue sets for the matcher route, which its own test
asserts; the README reports both.
"""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from composeseg import load_sam
from composeseg.adapters import TransformersGrounder
from composeseg.loading import DEMO_GROUNDER_DIR
from composeseg.pipelines import TextSegmentation
from composeseg.synthetic import SceneConfig, generate_scene
from composeseg.train.config import EVALUATION_SEED_START

SCENES = 30
FLOOR = 0.5
FIRST_SEED = EVALUATION_SEED_START + 20_000
CONFIG = SceneConfig(min_objects=3, distinct_attributes=True)


@pytest.fixture(scope="module")
def grounder() -> TransformersGrounder:
    if not (DEMO_GROUNDER_DIR / "config.json").exists():
        pytest.fail(f"the demo grounder is missing from {DEMO_GROUNDER_DIR}")
    return TransformersGrounder(device="cpu")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_demo_grounder_route_segments_the_named_object(grounder: TransformersGrounder) -> None:
    pipe = TextSegmentation(load_sam(), grounder=grounder, top_k=1)
    ious = []
    for k in range(SCENES):
        scene = generate_scene(FIRST_SEED + k, CONFIG)
        target = scene.instances[k % len(scene.instances)]
        found = pipe(scene.image, f"the {target.color} {target.kind}")
        ious.append(_iou(found.mask[0], target.mask) if len(found) else 0.0)
    miou = float(np.mean(ious))
    print(f"grounder route: text -> mask mIoU over {SCENES} unseen scenes: {miou:.3f}")
    assert miou >= FLOOR, f"mean IoU {miou:.3f} < {FLOOR} (per scene: {np.round(ious, 2)})"


def test_demo_grounder_points_at_the_named_objects(grounder: TransformersGrounder) -> None:
    # The grounder alone, every object of a scene queried at once: the top box of a query must
    # overlap its object more than any other (measured 0.81 here; the boxes themselves are
    # rough, and SAM recovers masks from them).
    hits = total = 0
    for k in range(SCENES):
        scene = generate_scene(FIRST_SEED + 1_000 + k, CONFIG)
        texts = [f"the {inst.color} {inst.kind}" for inst in scene.instances]
        found = grounder(scene.image, texts, threshold=0.0)
        for q in range(len(texts)):
            mine = found.class_id == q
            if mine.any():
                box = found.boxes[mine][np.argmax(found.confidence[mine])]
                overlap = sv.box_iou_batch(box[None], scene.boxes())[0]
                hits += int(overlap.argmax() == q and overlap[q] > 0)
        total += len(texts)
    print(f"grounder: top box on the named object for {hits}/{total} ({hits / total:.3f})")
    assert hits / total >= 0.7, f"top box on the named object for only {hits}/{total}"
