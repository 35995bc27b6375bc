"""The one dataset runner: every image pipeline over a folder, a list or a COCO file.

``pipeline.run(source, write_to=OUT)`` (or ``composeseg COMMAND FOLDER -o OUT``) goes through
:func:`run_job`: items keyed by their path relative to the source
(:mod:`composeseg.pipelines.sources`), one atomic record per image and exactly-once resume
(:mod:`composeseg.pipelines.records`), images decoded on background threads while the
encoder runs on batches of ``batch_size`` images, unreadable images listed in
``failures.json``, a progress bar and a one-line summary. ``engine="ray"`` maps the same work
over a Ray Data actor pool (:mod:`composeseg.pipelines.runner_ray`).

``pipeline.stream(source)`` gives the same batched, prefetched computation as an iterator of
results, with no files.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from composeseg.image import load_image
from composeseg.pipelines.records import (
    DetectionRecords,
    OutputFolder,
    RecordFormat,
    read_records,
)
from composeseg.pipelines.sources import Item, resolve_items

if TYPE_CHECKING:
    from composeseg.prediction import ImageEmbedding
    from composeseg.sam import Sam

Engine = Literal["local", "ray"]
Predict = Callable[[np.ndarray, "Path | None", "ImageEmbedding | None"], Any]


@dataclass
class Job:
    """What the runner needs from a pipeline.

    Attributes:
        name: the progress bar's label (``"segment"``, ``"everything"``, ...).
        predict: ``(rgb (H, W, 3) uint8, path or None, embedding or None) -> output``; given
            an embedding of ``rgb`` it must not encode the image again.
        sam: the model whose encoder the runner batches; None when ``predict`` cannot take
            an embedding (it then encodes on its own).
        records: how outputs are stored (:class:`~composeseg.pipelines.records.DetectionRecords`
            for ``supervision.Detections``).
        annotate: ``(rgb, output) -> (H, W, 3) uint8`` picture for ``save_images``; None when
            the output has no picture beyond its record.
    """

    name: str
    predict: Predict
    sam: Sam | None
    records: RecordFormat = field(default_factory=DetectionRecords)
    annotate: Callable[[np.ndarray, Any], np.ndarray] | None = None


@dataclass
class RunSummary:
    """What a run did. ``str(summary)`` is the one-line report the CLI prints.

    Attributes:
        output: the output folder.
        total: images in the source.
        done: images computed by this run.
        skipped: images whose record an earlier run had written (not recomputed).
        failed: ``(key, reason)`` of images that could not be read (``failures.json``).
        objects: masks (or edge maps) written by this run.
        seconds: wall time of this run.
        files: the merged files written at the end (``predictions.json``, exports).
    """

    output: Path
    total: int
    done: int
    skipped: int
    failed: list[tuple[str, str]]
    objects: int
    seconds: float
    files: list[Path]
    unit: str = "masks"
    _results: Callable[[], Iterator[Any]] | None = field(default=None, repr=False)

    def __str__(self) -> str:
        rate = self.done / self.seconds if self.seconds > 0 else 0.0
        failed = f"{len(self.failed)} failed (see {self.output / 'failures.json'}), "
        where = self.files[0] if self.files else self.output
        return (
            f"{self.total} images: {self.done} done, {self.skipped} done before, "
            f"{failed if self.failed else ''}{self.objects} {self.unit}, "
            f"{self.seconds:.1f} s ({rate:.2f} img/s) -> {where}"
        )

    def results(self) -> Iterator[Any]:
        """Every stored result, read back from the records in source order
        (:class:`~composeseg.pipelines.detections.ImageResult` for Detections pipelines)."""
        return self._results() if self._results is not None else iter(())


def run_job(
    job: Job | Callable[[], Job],
    source: str | os.PathLike | Iterable[Any],
    *,
    write_to: str | os.PathLike,
    batch_size: int = 1,
    glob: str | None = None,
    image_dir: str | os.PathLike | None = None,
    save_images: bool = False,
    formats: Sequence[str] = (),
    engine: Engine = "local",
    address: str | None = None,
    workers: int = 2,
    gpus_per_worker: float = 0.0,
    progress: bool = True,
) -> RunSummary:
    """Run a pipeline over every image of ``source`` and write one record per image.

    Args:
        job: the pipeline's :class:`Job` (``pipeline.job()``), or a picklable callable that
            builds it. Ray ships a :class:`Job` to its actors pickled, models included; a
            callable is called once in each actor instead, so models load there, on the
            actor's device (the CLI does this).
        source: see :func:`~composeseg.pipelines.sources.resolve_items`.
        write_to: the output folder (layout in :mod:`composeseg.pipelines.records`).
        batch_size: images per encoder pass.
        glob: folder sources: a pattern relative to the folder (``"**/*.jpg"``).
        image_dir: COCO-file sources: where the images are.
        save_images: also write an annotated picture per image.
        formats: exports written beside ``predictions.json``: ``"yolo"`` (YOLO-seg),
            ``"voc"`` (Pascal VOC).
        engine: ``"local"`` (this process) or ``"ray"`` (a Ray Data actor pool; extra
            ``[ray]``).
        address: Ray: the cluster to join (default: start a local one).
        workers: Ray: actors, each with its own copy of the models.
        gpus_per_worker: Ray: GPUs per actor (fractions share a GPU).
        progress: show a progress bar (images/s, ETA).

    Returns:
        A :class:`RunSummary`. Images whose record exists are not recomputed; images that
        cannot be read are listed in ``failures.json`` and retried by the next run.

    Raises:
        ValueError: bad options, an empty source, an output folder that is a file or cannot
            be written.
        FolderInUseError: another run is writing to ``write_to``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    items = resolve_items(source, glob=glob, image_dir=image_dir)
    start = time.perf_counter()
    with OutputFolder(write_to) as folder:
        built = job if isinstance(job, Job) else job()
        records = built.records
        if formats:
            if not isinstance(records, DetectionRecords):
                raise ValueError(f"{built.name} has no masks to export as {', '.join(formats)}")
            records = DetectionRecords(formats)
            records.check_export_names(items)
        done = {i.key for i in items if folder.record_path(i.key, records).is_file()}
        batches = chunks(items, batch_size)
        if engine == "ray":
            from composeseg.pipelines.runner_ray import run_on_ray

            outcomes: Iterable[Outcome] = run_on_ray(
                job,
                batches,
                folder.root,
                done=done,
                save_images=save_images,
                address=address,
                workers=workers,
                gpus_per_worker=gpus_per_worker,
            )
        else:
            outcomes = process_items(built, batches, folder, done=done, save_images=save_images)
        # after the engine: Ray's missing-extra error comes before any bar is drawn
        bar = _bar(built.name, len(items), len(done), progress)
        computed, objects, failed = 0, 0, []
        for outcome in outcomes:
            if outcome.error is not None:
                failed.append((outcome.key, outcome.error))
            else:
                computed, objects = computed + 1, objects + outcome.objects
            bar.update(1)
        bar.close()
        folder.write_failures(failed)
        files = records.merge(folder, items)
    return RunSummary(
        output=folder.root,
        total=len(items),
        done=computed,
        skipped=len(done),
        failed=failed,
        objects=objects,
        seconds=time.perf_counter() - start,
        files=files,
        unit=records.unit,
        _results=lambda: read_records(folder, records, items),
    )


@dataclass(frozen=True)
class Outcome:
    """One image's end: ``objects`` written, or the ``error`` that made it unreadable."""

    key: str
    objects: int = 0
    error: str | None = None


def process_items(
    job: Job,
    batches: Sequence[Sequence[Item]],
    folder: OutputFolder,
    *,
    done: Collection[str] = frozenset(),
    save_images: bool = False,
) -> Iterator[Outcome]:
    """Compute and record the items of ``batches`` (from :func:`chunks`) that are not in
    ``done``: the work of one engine worker. Yields one :class:`Outcome` per item."""
    for item, rgb, output in compute(job, batches, done=done):
        if isinstance(output, _Unreadable):
            yield Outcome(item.key, error=output.reason)
            continue
        record = folder.record_path(item.key, job.records)
        if save_images and job.annotate is not None:
            from composeseg.io import write_image

            write_image(folder.image_path(item.key), job.annotate(rgb, output))
        size = (int(rgb.shape[0]), int(rgb.shape[1]))
        # the record goes last: it is what marks the image as done
        yield Outcome(item.key, objects=job.records.write(record, item, output, size))


def chunks(items: Sequence[Item], batch_size: int) -> list[list[Item]]:
    """The encoder batches of a run: consecutive runs of ``batch_size`` items of the whole
    source, fixed by position, so a resumed run encodes every image in the same batch as an
    uninterrupted one (batched matrix products round differently in other company)."""
    return [list(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]


def compute(
    job: Job,
    batches: Sequence[Sequence[Item]],
    *,
    done: Collection[str] = frozenset(),
) -> Iterator[tuple[Item, np.ndarray, Any]]:
    """``(item, rgb, output)`` for each item not in ``done``, in order; an unreadable image's
    output is an ``_Unreadable`` carrying the reason (its ``rgb`` is an empty array).

    Each batch's readable images go through the encoder together; items in ``done`` are
    encoded with their batch (so its numbers do not change) but not predicted again. Images
    are decoded by two background threads, at most two batches ahead, so the memory held is
    bounded whatever the dataset's size.
    """
    batches = [b for b in batches if any(item.key not in done for item in b)]
    window = 2 * max((len(b) for b in batches), default=1)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="composeseg-load") as pool:
        pending: deque[Future[np.ndarray]] = deque()
        queue = (item for batch in batches for item in batch)

        def fill() -> None:
            while len(pending) < window:
                item = next(queue, None)
                if item is None:
                    return
                pending.append(pool.submit(_load, item))

        fill()
        for batch in batches:
            loaded: list[tuple[Item, np.ndarray]] = []
            for item in batch:
                future = pending.popleft()
                fill()
                try:
                    loaded.append((item, future.result()))
                except (OSError, ValueError, TypeError) as error:
                    yield item, np.zeros((0, 0, 3), np.uint8), _Unreadable(str(error))
            yield from _predict_batch(job, loaded, done)


def stream_job(
    job: Job,
    source: str | os.PathLike | Iterable[Any],
    *,
    batch_size: int = 1,
    glob: str | None = None,
    image_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> Iterator[Any]:
    """Results of ``job`` on every image of ``source``, lazily, in source order, with no
    files written. Unreadable images raise (there is no failures list to put them in)."""
    from composeseg.pipelines.detections import ImageResult

    items = resolve_items(source, glob=glob, image_dir=image_dir)
    bar = _bar(job.name, len(items), 0, progress)
    try:
        for item, rgb, output in compute(job, chunks(items, batch_size)):
            if isinstance(output, _Unreadable):
                raise ValueError(f"{item.key}: {output.reason}")
            bar.update(1)
            size = (int(rgb.shape[0]), int(rgb.shape[1]))
            if isinstance(job.records, DetectionRecords):
                yield ImageResult(item.key, output, size, item.path)
            else:
                yield output
    finally:
        bar.close()


class Runnable:
    """``run`` / ``stream`` for a pipeline that defines ``job() -> Job``."""

    def job(self) -> Job:
        raise NotImplementedError

    def run(
        self,
        source: str | os.PathLike | Iterable[Any],
        *,
        write_to: str | os.PathLike,
        **options: Any,
    ) -> RunSummary:
        """Run this pipeline over a dataset and write one record per image (exactly-once
        resume); options as :func:`~composeseg.pipelines.runner.run_job`."""
        return run_job(self.job(), source, write_to=write_to, **options)

    def stream(self, source: str | os.PathLike | Iterable[Any], **options: Any) -> Iterator[Any]:
        """Results image by image, batched and prefetched like :meth:`run`, no files;
        options as :func:`~composeseg.pipelines.runner.stream_job`."""
        return stream_job(self.job(), source, **options)


@dataclass(frozen=True)
class _Unreadable:
    reason: str


def _load(item: Item) -> np.ndarray:
    if item.path is not None:
        if item.path.is_file() and item.path.stat().st_size == 0:
            raise ValueError(f"{item.path} is empty (0 bytes)")
        return load_image(item.path)
    return load_image(item.image)


def _predict_batch(
    job: Job, batch: list[tuple[Item, np.ndarray]], done: Collection[str]
) -> Iterator[tuple[Item, np.ndarray, Any]]:
    embeddings: list[Any] = [None] * len(batch)
    if job.sam is not None and batch:
        embeddings = job.sam.embed_batch([rgb for _, rgb in batch])
    for (item, rgb), embedding in zip(batch, embeddings, strict=True):
        if item.key in done:
            continue
        try:
            output = job.predict(rgb, item.path, embedding)
        except Exception as error:
            error.add_note(f"while processing {item.key}")
            raise
        yield item, rgb, output


def _bar(name: str, total: int, initial: int, enabled: bool) -> Any:
    from composeseg.progress import progress

    bar = progress(total=total, desc=name, unit="img", enabled=enabled)
    bar.update(initial)
    return bar


__all__ = [
    "Job",
    "Outcome",
    "RunSummary",
    "Runnable",
    "chunks",
    "compute",
    "process_items",
    "run_job",
    "stream_job",
]
