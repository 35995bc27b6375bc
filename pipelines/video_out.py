"""Video and results out: an annotated MP4 (H.264), MOT-format text and COCO-style JSON.

Everything is written to a temporary file beside the target and renamed into place when
complete, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from fractions import Fraction
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from composeseg.io import temp_file_beside

if TYPE_CHECKING:
    import supervision as sv


class VideoWriter:
    """Write RGB frames to an MP4 file (H.264), atomically.

    Frames go to a temporary file beside ``path``, renamed into place by :meth:`close`; an
    exception inside a ``with`` block deletes it instead. H.264 needs even sizes for the usual
    4:2:0 chroma; odd-sized videos are written in 4:4:4 so that the size is kept exactly.

    Args:
        path: target ``.mp4`` file.
        fps: frames per second (> 0).
        codec: ``None`` picks ``libx264`` when PyAV has it, else ``mpeg4`` (with a warning).
        crf: H.264 quality (lower is better, 23 is ffmpeg's default).
    """

    def __init__(
        self, path: str | os.PathLike, fps: float, *, codec: str | None = None, crf: int = 23
    ) -> None:
        from composeseg.extras import require

        av = require("av", extra="video", purpose="writing MP4 video")
        if not fps or fps <= 0 or not np.isfinite(fps):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        self.path = Path(path)
        self.fps = float(fps)
        available = av.codecs_available
        if codec is None:
            codec = "libx264" if "libx264" in available else "mpeg4"
            if codec == "mpeg4":
                warnings.warn(
                    "PyAV has no libx264 encoder; writing MPEG-4 Part 2 instead of H.264",
                    stacklevel=2,
                )
        self.codec = codec
        self.crf = crf
        self.frames_written = 0
        self._container: Any = None
        self._stream: Any = None
        self._size = (0, 0)
        self._pad = (0, 0)
        self._tmp = temp_file_beside(self.path)  # av.open is told the format: any suffix works

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, image: np.ndarray) -> None:
        """Append one ``(H, W, 3) uint8`` RGB frame; every frame must have the first one's size."""
        import av

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"frames must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
        height, width = image.shape[:2]
        if self._stream is None:
            self._open(height, width)
        elif (height, width) != self._size:
            raise ValueError(
                f"frame {self.frames_written} is {width}x{height}; the video is "
                f"{self._size[1]}x{self._size[0]}"
            )
        if self._pad != (0, 0):
            image = np.pad(image, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def _open(self, height: int, width: int) -> None:
        import av

        self._container = av.open(str(self._tmp), mode="w", format="mp4")
        rate = Fraction(self.fps).limit_denominator(1001)
        stream = self._container.add_stream(self.codec, rate=rate)
        odd = bool(width % 2 or height % 2)
        self._size = (height, width)
        self._pad = (0, 0)
        if self.codec == "libx264":
            # 4:2:0 needs even sizes; 4:4:4 keeps an odd size exactly
            stream.pix_fmt = "yuv444p" if odd else "yuv420p"
            stream.options = {"crf": str(self.crf)}
        else:
            stream.pix_fmt = "yuv420p"
            if odd:
                self._pad = (height % 2, width % 2)
                warnings.warn(
                    f"{self.codec} needs even frame sizes: {width}x{height} frames are padded "
                    "by one pixel (edge copy)",
                    stacklevel=3,
                )
        stream.width, stream.height = width + self._pad[1], height + self._pad[0]
        self._stream = stream

    def close(self) -> Path:
        """Flush, close and move the file into place; returns its path."""
        if self._container is None:
            self._tmp.unlink(missing_ok=True)
            raise ValueError(f"no frames were written to {self.path}")
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file, leaving any earlier ``path`` untouched."""
        if self._container is not None:
            with contextlib.suppress(Exception):  # the file is discarded anyway
                self._container.close()
            self._container = None
        self._tmp.unlink(missing_ok=True)


class ResultsWriter:
    """Stream per-frame tracking results to a MOT-format ``.txt`` and/or a COCO-style ``.json``.

    MOT lines: ``frame (1-based), id, x, y, w, h, score, class_id, -1, -1`` (pixels). The JSON
    holds ``{"video": {...}, "categories": [...], "annotations": [...]}``, one annotation per
    object and frame with ``frame_index`` (0-based), ``track_id``, ``bbox`` (xywh),
    ``segmentation`` (COCO RLE), ``area``, ``score``, ``category_id`` and the detections'
    ``data`` columns. Annotations are written as they come (constant memory) to temporary
    files, renamed into place by :meth:`close`.
    """

    def __init__(
        self,
        *,
        mot_path: str | os.PathLike | None = None,
        json_path: str | os.PathLike | None = None,
        video_name: str = "video",
    ) -> None:
        self._files: list[tuple[IO[str], Path, Path]] = []
        self._mot = self._open(mot_path) if mot_path is not None else None
        self._json = self._open(json_path) if json_path is not None else None
        self._categories: dict[int, str] = {}
        self._count = 0
        self._size: tuple[int, int] | None = None
        self._frames = 0
        self._name = video_name
        if self._json is not None:
            self._json.write('{"annotations": [\n')

    def _open(self, path: str | os.PathLike) -> IO[str]:
        target = Path(path)
        tmp = temp_file_beside(target)
        handle = tmp.open("w")
        self._files.append((handle, tmp, target))
        return handle

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, frame_index: int, detections: sv.Detections, size: tuple[int, int]) -> None:
        """Add one frame's detections (``xyxy`` pixels, ``mask (N, H, W)``, ``tracker_id``)."""
        from composeseg.coco import detections_to_annotations

        self._size = size
        self._frames = max(self._frames, frame_index + 1)
        n = len(detections)
        ids = detections.tracker_id if detections.tracker_id is not None else -np.ones(n, int)
        scores = detections.confidence if detections.confidence is not None else np.ones(n)
        classes = detections.class_id if detections.class_id is not None else np.zeros(n, int)
        names = detections.data.get("class_name")
        records = (
            detections_to_annotations(detections, frame_index, first_id=self._count + 1)
            if self._json is not None
            else []
        )
        for i in range(n):
            x0, y0, x1, y1 = (float(v) for v in detections.xyxy[i])
            if names is not None:
                self._categories.setdefault(int(classes[i]), str(names[i]))
            if self._mot is not None:
                self._mot.write(
                    f"{frame_index + 1},{int(ids[i])},{x0:.2f},{y0:.2f},{x1 - x0:.2f},"
                    f"{y1 - y0:.2f},{float(scores[i]):.4f},{int(classes[i])},-1,-1\n"
                )
            if self._json is not None:
                # COCO records keyed by frame (image_id = frame index) with the track's id
                record = {"frame_index": frame_index, "track_id": int(ids[i]), **records[i]}
                prefix = ",\n" if self._count else ""
                self._json.write(prefix + json.dumps(record))
            self._count += 1

    def close(self) -> None:
        """Finish the files and move them into place."""
        if self._json is not None:
            height, width = self._size or (0, 0)
            video = {"name": self._name, "height": height, "width": width, "frames": self._frames}
            categories = [{"id": k, "name": v} for k, v in sorted(self._categories.items())]
            self._json.write(
                f'\n], "video": {json.dumps(video)}, "categories": {json.dumps(categories)}}}\n'
            )
        for handle, tmp, target in self._files:
            handle.close()
            os.replace(tmp, target)
        self._files = []

    def abort(self) -> None:
        """Delete the temporary files."""
        for handle, tmp, _ in self._files:
            handle.close()
            tmp.unlink(missing_ok=True)
        self._files = []
