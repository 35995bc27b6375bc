"""Video in: frames from files (PyAV), image folders or cameras (any iterable of frames).

Reading is lazy (one decoded frame at a time) so memory does not grow with video length.
A frame that cannot be decoded is reported with a :class:`BrokenFrameWarning` naming its index
and skipped; reading never stops silently. Writers live in :mod:`composeseg.pipelines.video_out`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

VideoSource = str | os.PathLike | Iterable[Any]
"""A video file, a folder of image files (sorted by name), or any iterable of frames (RGB
``(H, W, 3) uint8`` arrays, PIL images or :class:`Frame`)."""

DEFAULT_FPS = 30.0


class BrokenFrameWarning(UserWarning):
    """A frame could not be decoded or read and was skipped."""


@dataclass(frozen=True, eq=False)
class Frame:
    """One video frame.

    Attributes:
        index: 0-based position in the source; a frame that could not be read is skipped
            and leaves a gap, so every later frame keeps its own number.
        image: ``(H, W, 3) uint8`` RGB.
        timestamp: seconds from the start of the video (``None`` when unknown).
    """

    index: int
    image: np.ndarray
    timestamp: float | None = None


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a source before it is read (every field may be ``None``).

    Attributes:
        fps: frames per second.
        size: ``(H, W)`` pixels.
        frame_count: number of frames (files: the container's count, which may be an estimate).
    """

    fps: float | None
    size: tuple[int, int] | None
    frame_count: int | None


def probe(source: VideoSource) -> VideoInfo:
    """Frame rate, size and count of a video file or image folder without decoding it.

    Iterables give an all-``None`` :class:`VideoInfo` (a camera has no known length).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: a file that is not a readable video, naming it.
    """
    if not isinstance(source, (str, os.PathLike)):
        count = len(source) if isinstance(source, Sized) else None
        return VideoInfo(None, None, count)
    path = Path(source)
    if path.is_dir():
        from composeseg.pipelines.sources import list_images

        files = list_images(path, recursive=False)
        return VideoInfo(None, _first_readable_size(files), len(files))
    container = _open_container(path)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        count = int(stream.frames) or _estimated_count(container, stream, rate)
        return VideoInfo(float(rate) if rate else None, (stream.height, stream.width), count)
    finally:
        container.close()


def _first_readable_size(files: list[Path]) -> tuple[int, int] | None:
    """``(H, W)`` of the first frame file that opens; broken ones are skipped here as the
    reader skips them (with its warning, when it reaches them)."""
    from PIL import Image, UnidentifiedImageError

    for file in files:
        try:
            with Image.open(file) as image:
                return (image.height, image.width)
        except (OSError, UnidentifiedImageError, ValueError, ImportError):
            # ImportError: ultralytics patches Image.open to fetch a plugin for unknown files
            continue
    return None


def _estimated_count(container: Any, stream: Any, rate: Any) -> int | None:
    """Frames from duration x rate, for containers that do not store a count (some MP4s,
    WebM): enough for a progress bar's ETA."""
    if not rate:
        return None
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration:
        seconds = container.duration / 1_000_000  # av.time_base: microseconds
    else:
        return None
    return max(1, round(seconds * float(rate)))


def read_frames(source: VideoSource, *, fps: float | None = None) -> Iterator[Frame]:
    """Yield the frames of ``source`` lazily, in order.

    Args:
        source: see :data:`VideoSource`.
        fps: frame rate used for timestamps of image folders and iterables (files carry
            their own timestamps); ``None`` leaves their timestamps ``None``.

    Yields:
        :class:`Frame` with ``image (H, W, 3) uint8`` RGB.

    Warns:
        BrokenFrameWarning: a frame that could not be decoded (files), read (folders) or
            understood (iterables: ``None``, wrong shape); it is skipped.

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: a file that is not a readable video, naming it.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            return _read_folder(path, fps)
        return _read_file(path)
    if isinstance(source, np.ndarray) and source.ndim == 3:
        raise ValueError(
            f"got one image of shape {source.shape}, not a video; pass a list of frames"
        )
    return _read_iterable(source, fps)


def _open_container(path: Path) -> Any:
    from composeseg.extras import require

    av = require("av", extra="video", purpose="reading video files")

    if not path.exists():
        raise FileNotFoundError(f"video not found: {path}")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a readable video: {error}") from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path} has no video stream")
    return container


def _read_file(path: Path) -> Iterator[Frame]:
    container = _open_container(path)  # fails here, before the first next(), if not a video
    import av  # present: _open_container checked

    return _decode_file(container, path, av)


def _decode_file(container: Any, path: Path, av: Any) -> Iterator[Frame]:
    index = 0  # the next frame's number when timestamps cannot tell
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        position = _frame_position(stream)
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.FFmpegError as error:
                warnings.warn(
                    f"{path}: demuxing failed after frame {index - 1}: {error}; stopping",
                    BrokenFrameWarning,
                    stacklevel=2,
                )
                break
            try:
                decoded = packet.decode()
            except av.FFmpegError as error:
                near = position(packet.pts, index)
                warnings.warn(
                    f"{path}: a packet near frame {near} (pts {packet.pts}) could not be "
                    f"decoded and was skipped: {error}",
                    BrokenFrameWarning,
                    stacklevel=2,
                )
                continue
            for frame in decoded:
                image = frame.to_ndarray(format="rgb24")
                timestamp = float(frame.time) if frame.time is not None else None
                number = max(index, position(frame.pts, index))  # never backwards
                yield Frame(number, image, timestamp)
                index = number + 1
    finally:
        container.close()


def _frame_position(stream: Any) -> Callable[[int | None, int], int]:
    """``position(pts, fallback)``: the frame number a presentation timestamp falls on, from
    the stream's start, time base and frame rate; ``fallback`` where those are unknown."""
    rate = stream.average_rate or stream.guessed_rate
    base, start = stream.time_base, stream.start_time or 0

    def position(pts: int | None, fallback: int) -> int:
        if pts is None or not rate or not base:
            return fallback
        return max(0, round(float((pts - start) * base * rate)))

    return position


def _read_folder(path: Path, fps: float | None) -> Iterator[Frame]:
    from composeseg.image import load_image
    from composeseg.pipelines.sources import list_images

    for position, file in enumerate(list_images(path, recursive=False)):
        try:
            image = load_image(file)
        except (OSError, ValueError) as error:
            warnings.warn(
                f"{file} (frame {position} of {path}) could not be read and was skipped: {error}",
                BrokenFrameWarning,
                stacklevel=2,
            )
            continue
        yield Frame(position, image, None if fps is None else position / fps)


def _read_iterable(frames: Iterable[Any], fps: float | None) -> Iterator[Frame]:
    from composeseg.image import load_image

    for position, item in enumerate(frames):
        if isinstance(item, Frame):  # already numbered by its own source
            yield item
            continue
        image = getattr(item, "image", item)  # e.g. composeseg.synthetic.VideoFrame
        try:
            if image is None:
                raise ValueError("got None")
            rgb = load_image(image)
        except (OSError, ValueError, TypeError) as error:
            warnings.warn(
                f"frame {position} of the input could not be used and was skipped: {error}",
                BrokenFrameWarning,
                stacklevel=2,
            )
            continue
        yield Frame(position, rgb, None if fps is None else position / fps)
