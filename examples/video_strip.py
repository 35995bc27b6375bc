"""Draw ``video_strip.jpg``: one generated clip, per-frame segmentation against the default
consistency features, around an occlusion where per-frame ids swap.

    python examples/video_strip.py   # about 30 s on a CPU; writes examples/video_strip.jpg
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import supervision as sv

from composeseg import load_sam
from composeseg.pipelines.video import VideoSegmentation
from composeseg.pipelines.video_config import PER_FRAME
from composeseg.pipelines.video_sim import SimulatedDetector, SimulatedDetectorConfig
from composeseg.pipelines.visualize import annotate
from composeseg.synthetic import VideoConfig, iter_video_frames

SEED, FRAMES = 4, range(35, 41)  # benchmarks/quality_video.py's clip 4
X0, Y0, X1, Y1, ZOOM = 40, 150, 190, 256, 2  # the square going behind the heart
VIDEO = VideoConfig(height=256, width=256, n_frames=max(FRAMES) + 1)
NOISE = SimulatedDetectorConfig(jitter=0.06, miss_rate=0.15)


FONT = cv2.FONT_HERSHEY_SIMPLEX


def zoom(image: np.ndarray, found: sv.Detections) -> tuple[np.ndarray, sv.Detections]:
    """The region of interest, enlarged ``ZOOM`` times (masks nearest-neighbour)."""
    crop = image[Y0:Y1, X0:X1].repeat(ZOOM, 0).repeat(ZOOM, 1)
    found = found[found.mask[:, Y0:Y1, X0:X1].any(axis=(1, 2))]  # type: ignore[index]
    masks = found.mask[:, Y0:Y1, X0:X1].repeat(ZOOM, 1).repeat(ZOOM, 2)  # type: ignore[index]
    boxes = (found.xyxy - [X0, Y0, X0, Y0]).clip(0) * ZOOM
    return crop, sv.Detections(xyxy=boxes, mask=masks, tracker_id=found.tracker_id)


def row(sam: object, options: dict, title: str) -> np.ndarray:
    detector = SimulatedDetector(iter_video_frames(SEED, VIDEO), NOISE, seed=SEED)
    pipe = VideoSegmentation(sam, detector, "bytetrack", **options)  # type: ignore[arg-type]
    tiles = []
    for t, (frame, found) in enumerate(pipe.frames(iter_video_frames(SEED, VIDEO))):
        if t in FRAMES:
            crop, shown = zoom(frame.image, found)
            tile = annotate(crop, shown, labels=[f"id {i}" for i in shown.tracker_id], opacity=0.75)
            cv2.putText(tile, f"frame {t}", (6, tile.shape[0] - 8), FONT, 0.5, (255,) * 3)
            tiles.append(tile)
    strip = np.concatenate(tiles, axis=1)
    header = np.full((26, strip.shape[1], 3), 255, np.uint8)
    cv2.putText(header, title, (6, 18), FONT, 0.6, (0, 0, 0), 1)
    return np.concatenate([header, strip])


def main() -> None:
    sam = load_sam()
    picture = np.concatenate(
        [
            row(
                sam,
                PER_FRAME,
                "per-frame segmentation: both masks take the heart, which is id 2 at frame 39",
            ),
            row(
                sam, {}, "consistency features on (default): masks exclusive, the heart stays id 5"
            ),
        ]
    )
    out = Path(__file__).with_name("video_strip.jpg")
    cv2.imwrite(str(out), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
