"""Seeded synthetic scenes and videos of coloured shapes with exact ground truth.

Used to train a tiny SAM from scratch and to evaluate prompts, proposals, edges, text→mask
and tracking without downloads. Everything is a pure function of ``(seed, config)``.

Example:
    >>> from composeseg.synthetic import SceneConfig, generate_scene
    >>> scene = generate_scene(0, SceneConfig(height=128, width=128))
    >>> scene.image.shape, scene.masks().shape[1:]
    ((128, 128, 3), (128, 128))
"""

from composeseg.synthetic.coco import scenes_to_coco, write_coco
from composeseg.synthetic.scenes import (
    SIZE_NAMES,
    SIZE_THRESHOLDS,
    Instance,
    Scene,
    SceneConfig,
    generate_scene,
    generate_scenes,
)
from composeseg.synthetic.shapes import COLORS, KINDS, rasterize, shape_polygons
from composeseg.synthetic.textures import PATTERN_KINDS, Pattern
from composeseg.synthetic.video import (
    SyntheticVideo,
    TrackedInstance,
    VideoConfig,
    VideoFrame,
    generate_video,
    iter_video_frames,
)

__all__ = [
    "COLORS",
    "KINDS",
    "PATTERN_KINDS",
    "SIZE_NAMES",
    "SIZE_THRESHOLDS",
    "Instance",
    "Pattern",
    "Scene",
    "SceneConfig",
    "SyntheticVideo",
    "TrackedInstance",
    "VideoConfig",
    "VideoFrame",
    "generate_scene",
    "generate_scenes",
    "generate_video",
    "iter_video_frames",
    "rasterize",
    "scenes_to_coco",
    "shape_polygons",
    "write_coco",
]
