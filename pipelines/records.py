"""A dataset run's output folder: one record per image, a lock, failures, the merged files.

Layout (``OUT``)::

    OUT/.lock                 held (flock) by the one run writing here
    OUT/records/<key>.json    one image's result (COCO-style, RLE masks): the commit point
    OUT/edges/<key>.png       an edge map instead, for EdgeDetection (8-bit, 255 = strongest)
    OUT/images/<key>          the annotated picture (save_images)
    OUT/predictions.json      all records merged (COCO results, file_name = key)
    OUT/failures.json         images that could not be read, with the reason
    OUT/yolo/, OUT/voc/       exports (formats)

A record is written atomically (temp file + rename) after everything else of its image, so
an image either has a complete record or is computed again: a run killed at any moment and
started again finishes with the same files as an uninterrupted one, each image done once.
Records hold nothing about the run (no time, no host), so recomputing one gives the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from composeseg.io import check_output_folder, remove_temporaries, write_image, write_json
from composeseg.pipelines.detections import ImageResult
from composeseg.pipelines.sources import Item

if TYPE_CHECKING:
    import supervision as sv


class RecordFormat(Protocol):
    """How one kind of pipeline output is stored, read back and merged."""

    directory: str
    suffix: str
    unit: str

    def write(self, path: Path, item: Item, output: Any, image_size: tuple[int, int]) -> int:
        """Write ``output`` atomically to ``path``; returns how many objects it holds."""

    def read(self, path: Path, item: Item) -> Any:
        """The result of one image from its record."""

    def merge(self, folder: OutputFolder, items: Sequence[Item]) -> list[Path]:
        """Write the run-wide files from the records of ``items``; returns their paths."""


class DetectionRecords:
    """``supervision.Detections`` outputs: COCO-style JSON records, merged into
    ``predictions.json`` (and YOLO-seg / VOC on request)."""

    directory = "records"
    suffix = ".json"
    unit = "masks"

    def __init__(self, formats: Sequence[str] = ()) -> None:
        unknown = sorted(set(formats) - {"yolo", "voc"})
        if unknown:
            raise ValueError(f"unknown export format {unknown[0]!r}: choose from yolo, voc")
        self.formats = tuple(formats)

    def check_export_names(self, items: Sequence[Item]) -> None:
        """YOLO and VOC name each image's label file by its stem alone: refuse, before any
        work, sources where two images would share one (``x.jpg`` / ``x.png``, ``a/x.jpg`` /
        ``b/x.jpg``)."""
        if not self.formats:
            return
        seen: dict[str, str] = {}
        for item in items:
            stem = PurePosixPath(item.key).stem
            if stem in seen:
                raise ValueError(
                    f"{' and '.join(self.formats)} export names label files by image stem: "
                    f"{seen[stem]!r} and {item.key!r} would share one; export from "
                    "predictions.json instead, or run the folders apart"
                )
            seen[stem] = item.key

    def write(
        self, path: Path, item: Item, output: sv.Detections, image_size: tuple[int, int]
    ) -> int:
        from composeseg.pipelines.export import write_image_result

        write_image_result(path, ImageResult(item.key, output, image_size, item.path))
        return len(output)

    def read(self, path: Path, item: Item) -> ImageResult:
        from composeseg.pipelines.export import read_image_result

        return read_image_result(path, item.path)

    def merge(self, folder: OutputFolder, items: Sequence[Item]) -> list[Path]:
        from composeseg.coco import merge_image_records

        records = []
        for item in items:
            path = folder.record_path(item.key, self)
            if path.is_file():
                payload = json.loads(path.read_text())
                if item.image_id is not None:
                    payload["image"]["id"] = item.image_id
                records.append((payload["image"], payload["annotations"]))
        written = [write_json(folder.root / "predictions.json", merge_image_records(records))]
        if self.formats:
            written += self._export(folder, items)
        return written

    def _export(self, folder: OutputFolder, items: Sequence[Item]) -> list[Path]:
        from composeseg.pipelines.export import write_pascal_voc, write_yolo_seg

        results = [
            self.read(folder.record_path(item.key, self), item)
            for item in items
            if folder.record_path(item.key, self).is_file()
        ]
        writers = {"yolo": write_yolo_seg, "voc": write_pascal_voc}
        return [writers[name](folder.root / name, results) for name in self.formats]


class EdgeRecords:
    """``(H, W) float32`` edge maps in [0, 1]: one 8-bit PNG per image, nothing merged."""

    directory = "edges"
    suffix = ".png"
    unit = "edge maps"

    def write(self, path: Path, item: Item, output: np.ndarray, image_size: tuple[int, int]) -> int:
        write_image(path, np.round(np.clip(output, 0, 1) * 255).astype(np.uint8))
        return 1

    def read(self, path: Path, item: Item) -> np.ndarray:
        from PIL import Image

        return np.asarray(Image.open(path), np.float32) / 255.0

    def merge(self, folder: OutputFolder, items: Sequence[Item]) -> list[Path]:
        return []


class FolderInUseError(RuntimeError):
    """Another run holds the output folder's lock."""


class OutputFolder:
    """The folder a run writes to. Use as ``with OutputFolder(out) as folder:`` to hold its
    lock for the run.

    Raises:
        ValueError: ``root`` is a file, or cannot be written to.
        FolderInUseError: another run holds the folder's lock (on entering).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = check_output_folder(root)
        self._lock: Any = None

    @classmethod
    def held_elsewhere(cls, root: str | os.PathLike) -> OutputFolder:
        """The folder whose lock another process holds (a Ray actor writing records for the
        driver's run): no lock, no probe, nothing created."""
        folder = cls.__new__(cls)
        folder.root, folder._lock = Path(root), None
        return folder

    def __enter__(self) -> OutputFolder:
        import fcntl

        handle = open(self.root / ".lock", "a+")
        try:
            # flock is released by the kernel when the process dies, SIGKILL included: a
            # killed run never leaves a stale lock behind
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise FolderInUseError(
                f"{self.root} is in use by another run (pid {owner}); wait for it to finish "
                "or write to another folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock = handle
        # with the lock held no one else writes here: temp files are a killed run's leftovers
        remove_temporaries(self.root)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def record_path(self, key: str, records: RecordFormat) -> Path:
        """Where the record of the image keyed ``key`` lives."""
        return self.root / records.directory / f"{key}{records.suffix}"

    def image_path(self, key: str) -> Path:
        """Where the annotated picture of ``key`` goes (same format as the source)."""
        return self.root / "images" / key

    def write_failures(self, failures: Sequence[tuple[str, str]]) -> Path:
        """``failures.json``: ``[{"file_name": key, "error": reason}, ...]`` of this run;
        removed when nothing failed, so a clean rerun leaves no stale list."""
        path = self.root / "failures.json"
        if not failures:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return path
        return write_json(path, [{"file_name": k, "error": e} for k, e in failures])


def read_records(
    folder: OutputFolder, records: RecordFormat, items: Sequence[Item]
) -> Iterator[Any]:
    """The stored result of every item that has a record, in ``items`` order."""
    for item in items:
        path = folder.record_path(item.key, records)
        if path.is_file():
            yield records.read(path, item)


__all__ = [
    "DetectionRecords",
    "EdgeRecords",
    "FolderInUseError",
    "OutputFolder",
    "RecordFormat",
    "read_records",
]
