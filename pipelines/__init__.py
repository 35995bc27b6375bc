"""Pipelines that compose SAM with other systems.

Installed as ``composeseg.pipelines``. Every pipeline has one shape: built as
``Pipeline(sam, <collaborators>, config=XConfig(...), **overrides)`` (keywords named like the
config's fields; any other keyword is an error) and called on one image (path, PIL image or
``(H, W, 3) uint8`` RGB array), or one video for the video pipelines. What a call returns:

- ``InstanceSegmentation``, ``AutomaticMaskGenerator``, ``ObjectProposals``,
  ``TextSegmentation``: ``supervision.Detections`` for the image, assembled by
  :func:`composeseg.detections.assemble` (one confidence rule, the prompts' data columns kept);
- ``VideoSegmentation``, ``Sam2Propagation``: one ``supervision.Detections`` per frame, with
  ``tracker_id``;
- ``EdgeDetection``: an ``(H, W) float32`` edge map in [0, 1], not detections: edges are a
  property of pixels, not objects (its masks are :meth:`AutomaticMaskGenerator.generate`'s).

Long work shows a bar with ``progress=True``. Names are resolved lazily so that importing the
package stays cheap.
"""

from __future__ import annotations

from composeseg._lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "annotate": "composeseg.pipelines.visualize",
    "InstanceSegmentation": "composeseg.pipelines.instance",
    "InstanceConfig": "composeseg.pipelines.instance",
    "ImageResult": "composeseg.pipelines.detections",
    "AutomaticMaskGenerator": "composeseg.pipelines.amg",
    "AmgConfig": "composeseg.pipelines.amg",
    "ObjectProposals": "composeseg.pipelines.proposals",
    "ProposalConfig": "composeseg.pipelines.proposals",
    "EdgeDetection": "composeseg.pipelines.edges",
    "EdgeConfig": "composeseg.pipelines.edges",
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
    "TiledInstanceSegmentation": "composeseg.pipelines.tiled",
    "TiledInstanceConfig": "composeseg.pipelines.tiled",
    "TiledMaskGenerator": "composeseg.pipelines.tiled_everything",
    "TiledMaskConfig": "composeseg.pipelines.tiled_everything",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
