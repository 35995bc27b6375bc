"""The embedded demo SAM on scenes of another generator: the zero-shot floors.

Scenes come from the test split of :mod:`composeseg.synthetic.independent` (other shapes,
looks, layouts and aspect ratios, written by other code than the training generators, never
trained or tuned on). Figures measured on new seeds of the training generator are
in-distribution (``test_demo_quality.py``); these say what a user meets on scenes the model was
not built around. The floors are the generalisation issue's and must not be lowered.

The shipped demo SAM meets the video, edge and one-point floors (its edges come from probability
maps refitted to the image; its masks are refitted and corrected by its learned mask refiner);
it does not reach the others yet (README, "The demo model"). Each of those still runs and
asserts its floor, marked ``xfail(strict=True)``: pytest reports it as an expected failure,
never as a pass, and the day a model meets a floor the test XPASSes, which fails the suite until
the marker is removed.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from composeseg import load_sam
from composeseg.evaluation.points import PointPromptMetrics, point_prompt_miou, scene_instances
from composeseg.loading import DEMO_MODEL_DIR
from composeseg.sam import Sam
from composeseg.synthetic.independent import generate_independent_scene, independent_seeds

SCENES = 40
FLOORS = {"box": 0.80, "box_fit": 0.80, "one_point_oracle": 0.72, "interactive": 0.80}
MET = {"one_point_oracle"}  # since the learned mask refiner; the others run as expected failures
INSTANCE_AP_FLOOR = 0.55  # simulated detector: 10 % jitter, 10 % dropped
INSTANCE_SCENES = 30
EDGE_SCENES = 4
BELOW_FLOOR = pytest.mark.xfail(  # only a missed floor counts: any other error fails
    strict=True,
    raises=AssertionError,
    reason="the shipped demo SAM is below this zero-shot floor (issue 19, open)",
)
VIDEOS, FRAMES, VIDEO_FLOOR = 5, 60, 0.80  # as quality_video.py --family independent


@pytest.fixture(scope="module")
def sam() -> Sam:
    if not (DEMO_MODEL_DIR / "config.json").is_file():
        pytest.fail(f"the embedded demo model is missing from {DEMO_MODEL_DIR}")
    return load_sam(device="cpu")


@pytest.fixture(scope="module")
def metrics(sam: Sam) -> PointPromptMetrics:
    samples = scene_instances(independent_seeds("test", SCENES), family="independent")
    return point_prompt_miou(sam, samples, interactive_points=3)


@pytest.mark.parametrize(
    "protocol",
    [pytest.param(p, marks=() if p in MET else BELOW_FLOOR) for p in sorted(FLOORS)],
)
def test_demo_model_meets_the_zero_shot_floor(metrics: PointPromptMetrics, protocol: str) -> None:
    value = getattr(metrics, protocol)
    assert value >= FLOORS[protocol], (
        f"demo model {protocol} mIoU {value:.3f} < floor {FLOORS[protocol]} on the independent "
        f"family ({metrics.instances} instances, {metrics.images} scenes): {metrics.as_dict()}"
    )


@BELOW_FLOOR
def test_instance_ap_with_a_noisy_detector(sam: Sam) -> None:
    from composeseg.adapters import CocoBoxes
    from composeseg.evaluation import evaluate_instances, simulated_detections
    from composeseg.pipelines import InstanceSegmentation
    from composeseg.synthetic import write_coco

    seeds = independent_seeds("test", INSTANCE_SCENES)
    with tempfile.TemporaryDirectory() as tmp:
        gt_path = write_coco([generate_independent_scene(s) for s in seeds], Path(tmp))
        gt = json.loads(gt_path.read_text())
        boxes = CocoBoxes(simulated_detections(gt, jitter=0.1, drop=0.1, seed=1), dataset=gt)
        result = evaluate_instances(
            InstanceSegmentation(sam, boxes), gt, gt_path.parent / "images", progress=False
        )
    assert result.ap >= INSTANCE_AP_FLOOR, f"mask AP {result.ap:.3f} < {INSTANCE_AP_FLOOR}"


def test_sam_edges_beat_gradient_detectors(sam: Sam) -> None:
    from composeseg.evaluation import edge_f_measure
    from composeseg.pipelines.edges import EdgeDetection, canny_edges, sobel_edges

    scenes = [generate_independent_scene(s) for s in independent_seeds("test", EDGE_SCENES)]
    truths = [s.boundaries() for s in scenes]
    sam_ods = edge_f_measure([EdgeDetection(sam)(s.image) for s in scenes], truths).ods
    sobel = edge_f_measure([sobel_edges(s.image) for s in scenes], truths).ods
    canny = edge_f_measure([canny_edges(s.image) for s in scenes], truths, thresholds=16).ods
    assert sam_ods > max(sobel, canny), (
        f"ODS: SAM {sam_ods:.3f}, Sobel {sobel:.3f}, Canny {canny:.3f}"
    )


def test_video_mask_iou_with_a_noisy_detector(sam: Sam) -> None:
    # quality_video.py --family independent's defaults: 6 % jitter, 15 % missed detections.
    # Met since the demo SAM draws guided masks (0.877 with its learned mask refiner, guided
    # 0.860; stage 5's weights: 0.852, stage 4's: 0.846, bilinear 0.778).
    from composeseg.evaluation.tracking import TrackingEvaluator
    from composeseg.pipelines.video import VideoSegmentation
    from composeseg.pipelines.video_sim import SimulatedDetector, SimulatedDetectorConfig
    from composeseg.synthetic.independent_video import iter_independent_video_frames

    evaluator = TrackingEvaluator()
    noise = SimulatedDetectorConfig(jitter=0.06, miss_rate=0.15)
    for k, seed in enumerate(independent_seeds("test", VIDEOS)):
        evaluator.new_sequence()
        detector = SimulatedDetector(iter_independent_video_frames(seed, FRAMES), noise, seed=k)
        pipe = VideoSegmentation(sam, detector, "bytetrack")
        clip = iter_independent_video_frames(seed, FRAMES)
        for truth, found in zip(
            clip, pipe(iter_independent_video_frames(seed, FRAMES)), strict=True
        ):
            evaluator.add(truth, found)
    iou = evaluator.compute().mask_iou
    assert iou >= VIDEO_FLOOR, f"video mask IoU {iou:.3f} < {VIDEO_FLOOR}"
