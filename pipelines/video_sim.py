"""A simulated detector for generated videos: ground-truth boxes, jittered, sometimes missed.

For demos, tests and the quality benchmark: it lets the tracking pipeline be measured without a
trained detector, with controlled detection noise. Deterministic given ``seed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from composeseg.geometry import clip_boxes
from composeseg.prompts import Prompts


@dataclass(frozen=True)
class SimulatedDetectorConfig:
    """Detection noise.

    Attributes:
        jitter: standard deviation of each box edge's displacement, as a fraction of the
            box's width (x edges) or height (y edges).
        miss_rate: chance that an object is not detected in a frame.
        min_visible: objects whose visible fraction is below this are never detected.
        score_range: detection scores are uniform in this ``(low, high)`` range.
    """

    jitter: float = 0.05
    miss_rate: float = 0.1
    min_visible: float = 0.2
    score_range: tuple[float, float] = (0.7, 0.95)

    def __post_init__(self) -> None:
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be in [0, 1], got {self.jitter}")
        if not 0.0 <= self.miss_rate <= 1.0:
            raise ValueError(f"miss_rate must be in [0, 1], got {self.miss_rate}")
        low, high = self.score_range
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(
                f"score_range must satisfy 0 <= low <= high <= 1, got {self.score_range}"
            )


class SimulatedDetector:
    """``image -> Prompts`` built from the ground truth of a generated video.

    Each call consumes the next ground-truth frame, so the detector must be called once per
    frame, in order (as :class:`~composeseg.pipelines.VideoSegmentation` does). Boxes are
    ``(N, 4)`` xyxy pixels; ``class_id`` is the shape's ``category_id``; ``data["class_name"]``
    its kind; ``data["gt_track_id"]`` the true identity (for analysis only, never used for
    tracking).

    Args:
        frames: the ground truth, e.g. ``composeseg.synthetic.iter_video_frames(seed, config)``
            (objects with ``.image`` and ``.instances``, each with ``box``, ``category_id``,
            ``kind``, ``track_id``, ``visible_fraction``); iterated lazily.
        config: the noise; ``seed`` its random stream.
    """

    def __init__(
        self,
        frames: Iterable[Any],
        config: SimulatedDetectorConfig | None = None,
        *,
        seed: int = 0,
    ) -> None:
        self.config = config or SimulatedDetectorConfig()
        self._frames: Iterator[Any] = iter(frames)
        self._rng = np.random.default_rng(seed)
        self.calls = 0

    def __repr__(self) -> str:
        return f"SimulatedDetector({self.config})"

    def __call__(self, image: Any) -> Prompts:
        """Detections for the next frame; ``image`` is checked against the truth's size only."""
        try:
            truth = next(self._frames)
        except StopIteration:
            raise ValueError(
                f"SimulatedDetector was called {self.calls + 1} times but the ground truth has "
                f"only {self.calls} frames"
            ) from None
        self.calls += 1
        shape = getattr(image, "shape", None)
        if shape is not None and tuple(shape[:2]) != tuple(truth.image.shape[:2]):
            raise ValueError(
                f"frame {self.calls - 1} is {tuple(shape[:2])} but the ground truth is "
                f"{tuple(truth.image.shape[:2])}: is the detector following another video?"
            )
        return self._detect(truth)

    def _detect(self, truth: Any) -> Prompts:
        cfg, rng = self.config, self._rng
        height, width = truth.image.shape[:2]
        boxes, classes, names, ids = [], [], [], []
        for inst in truth.instances:
            # draw every random number for every object so one object's miss does not shift
            # the noise of the others
            missed = rng.random() < cfg.miss_rate
            noise = rng.normal(0.0, cfg.jitter, 4)
            if missed or inst.visible_fraction < cfg.min_visible:
                continue
            x0, y0, x1, y1 = (float(v) for v in inst.box)
            w, h = x1 - x0, y1 - y0
            box = np.array([x0, y0, x1, y1]) + noise * np.array([w, h, w, h])
            box = clip_boxes(box, (height, width))
            if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                continue
            boxes.append(box)
            classes.append(inst.category_id)
            names.append(inst.kind)
            ids.append(inst.track_id)
        n = len(boxes)
        scores = rng.uniform(*cfg.score_range, n)
        return Prompts(
            boxes=np.asarray(boxes, np.float32).reshape(n, 4),
            class_id=np.asarray(classes, np.int64),
            confidence=scores.astype(np.float32),
            data={"class_name": np.asarray(names, dtype=object).astype(str).reshape(n),
                  "gt_track_id": np.asarray(ids, np.int64)},
        )  # fmt: skip
