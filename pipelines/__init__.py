"""Pipelines that compose SAM with other systems; each returns ``supervision.Detections``.

Installed as ``composeseg.pipelines``. Names are resolved lazily so that importing the package
stays cheap.
"""

from __future__ import annotations

from composeseg._lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "annotate": "composeseg.pipelines.visualize",
    "InstanceSegmentation": "composeseg.pipelines.instance",
    "InstanceConfig": "composeseg.pipelines.instance",
    "ImageResult": "composeseg.pipelines.instance",
    "AutomaticMaskGenerator": "composeseg.pipelines.amg",
    "ObjectProposals": "composeseg.pipelines.proposals",
    "EdgeDetection": "composeseg.pipelines.edges",
    "VideoSegmentation": "composeseg.pipelines.video",
    "VideoSegmentationConfig": "composeseg.pipelines.video_config",
    "SimulatedDetector": "composeseg.pipelines.video_sim",
    "SimulatedDetectorConfig": "composeseg.pipelines.video_sim",
    "read_frames": "composeseg.pipelines.video_io",
    "VideoWriter": "composeseg.pipelines.video_out",
    "ResultsWriter": "composeseg.pipelines.video_out",
    "Sam2Propagation": "composeseg.pipelines.video_sam2",
    "PropagationConfig": "composeseg.pipelines.video_sam2",
    "TextSegmentation": "composeseg.pipelines.text",
    "TextConfig": "composeseg.pipelines.text",
    "mask_nms": "composeseg.pipelines.mask_nms",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
