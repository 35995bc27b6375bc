"""``engine="ray"``: the dataset runner's work mapped over a Ray Data actor pool.

Each actor builds the job once (models loaded once per actor, not per batch) and runs the
local engine's own worker, :func:`~composeseg.pipelines.runner.process_items`, on batches of
items, so records are written exactly as the local engine writes them: atomically, by the
actor, straight into the output folder. The driver (:func:`~composeseg.pipelines.runner.run_job`)
holds the folder's lock, counts the outcomes streamed back and merges the records at the end.
On a cluster the images and the output folder must therefore be on a filesystem every node
sees at the same path.

Fault tolerance comes from records being idempotent: an actor that dies mid-batch is
restarted and its batch retried; images it had already recorded are computed again and give
the same bytes, and the outcomes of a failed attempt never reach the driver, so nothing is
lost or counted twice.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from composeseg.extras import require
from composeseg.pipelines.records import OutputFolder
from composeseg.pipelines.runner import Job, Outcome, process_items
from composeseg.pipelines.sources import Item


def run_on_ray(
    job: Job | Callable[[], Job],
    batches: Sequence[Sequence[Item]],
    root: str | os.PathLike,
    *,
    done: Collection[str] = frozenset(),
    save_images: bool = False,
    address: str | None = None,
    workers: int = 2,
    gpus_per_worker: float = 0.0,
) -> Iterator[Outcome]:
    """Compute and record the items of ``batches`` not in ``done`` on a pool of ``workers``
    Ray actors; yields one :class:`~composeseg.pipelines.runner.Outcome` per such item, in
    completion order.

    Each encoder batch (:func:`~composeseg.pipelines.runner.chunks`) travels whole, as one
    row of the Ray dataset, so every image is encoded in the same company as by the local
    engine and its record has the same bytes.

    Args:
        job: a :class:`Job`, pickled into the object store once and shared by the actors; or
            a picklable zero-argument callable that builds it, called once in each actor (so
            models load there, on the actor's GPU).
        batches: the run's encoder batches; their images must be files (actors read them).
        root: the output folder, created and locked by the caller.
        done: keys already recorded: encoded with their batch, not predicted again.
        save_images: also write the annotated pictures.
        address: the Ray cluster to join, unless this process already runs Ray (then that
            one is used); default: a local Ray on 127.0.0.1, shut down when the iterator ends.
        workers: actors in the pool, each with its own copy of the models.
        gpus_per_worker: GPUs per actor (fractions share a GPU).

    Raises:
        MissingExtraError: ray is not installed (extra ``[ray]``).
        ValueError: in-memory images, or bad pool options.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if gpus_per_worker < 0:
        raise ValueError(f"gpus_per_worker must be >= 0, got {gpus_per_worker}")
    todo = [list(b) for b in batches if any(item.key not in done for item in b)]
    in_memory = [item.key for batch in todo for item in batch if item.path is None]
    if in_memory:
        raise ValueError(
            f"engine 'ray' reads images from files, but {len(in_memory)} image(s) are in "
            f"memory ({in_memory[0]}, ...): save them to files or use engine 'local'"
        )
    ray = require("ray", extra="ray", purpose="--engine ray")
    # ray without its [data] dependencies (pyarrow, pandas) imports, but ray.data does not
    require("ray.data", extra="ray", purpose="--engine ray", package="ray[data]")
    if not todo:
        return iter(())
    rows = [
        {
            "keys": [item.key for item in batch],
            "paths": [str(item.path) for item in batch],
            "image_ids": [-1 if item.image_id is None else item.image_id for item in batch],
            "done": [item.key in done for item in batch],
        }
        for batch in todo
    ]
    return _stream(
        ray,
        job,
        rows,
        Path(root),
        save_images,
        address=address,
        workers=workers,
        gpus_per_worker=gpus_per_worker,
    )


def _stream(
    ray: ModuleType,
    job: Job | Callable[[], Job],
    rows: list[dict[str, list[Any]]],
    root: Path,
    save_images: bool,
    *,
    address: str | None,
    workers: int,
    gpus_per_worker: float,
) -> Iterator[Outcome]:
    started = not ray.is_initialized()
    if started:
        _init(ray, address)
    try:
        # resources are scheduling tokens, not limits: at most half a node's CPUs per actor
        # so the pool always fits beside Ray Data's own tasks (on 2 CPUs, 1 CPU per actor
        # would start only one of two actors); torch's threads are set apart, in the actor
        cpus = max(1.0, float(ray.cluster_resources().get("CPU", 1.0)))
        num_cpus = min(1.0, cpus / (2 * workers))
        threads = max(1, math.floor(cpus / workers))
        # a Job travels once through the object store; the ref stays alive here so a
        # restarted actor can fetch it again
        shipped = ray.put(job) if isinstance(job, Job) else job
        # Ray Data's actor pools restart a dead actor and retry its calls by default
        # (max_restarts=-1, max_task_retries=-1); exceptions raised by the pipeline are
        # not retried: they are bugs. (Setting those through map_batches' **ray_remote_args
        # is deprecated since Ray 2.60.)
        dataset = ray.data.from_items(rows).map_batches(
            _Worker,
            fn_constructor_args=(shipped, str(root), save_images, threads),
            compute=ray.data.ActorPoolStrategy(size=workers),
            batch_size=1,  # one encoder batch per call
            batch_format="numpy",
            num_cpus=num_cpus,
            num_gpus=gpus_per_worker or None,
        )
        # the runner draws its own progress bar; Ray Data's would fight it
        dataset.context.enable_progress_bars = False
        dataset.context.print_on_execution_start = False
        with contextlib.suppress(ImportError):  # its one "progress bars disabled" notice
            from ray.util.debug import log_once

            log_once("ray_data_progress_manager_disabled")
        for row in dataset.iter_rows():
            error = row["error"]
            yield Outcome(
                str(row["key"]), int(row["objects"]), None if error is None else str(error)
            )
    finally:
        if started:
            ray.shutdown()


def _init(ray: ModuleType, address: str | None, **options: Any) -> None:
    """Join ``address``, or start a local Ray whose every socket is on 127.0.0.1 (``options``:
    more ``ray.init`` arguments for it, e.g. ``num_cpus``).

    On Linux Ray binds its node to the machine's routable address (``_node_ip_address=
    "127.0.0.1"`` is turned back into it); only its Windows/macOS single-machine mode binds
    loopback. That mode is a module constant set when ``ray`` is imported, so both are switched
    for the start only: the constant for this process, the variable for the processes it
    starts. Joining a cluster keeps the routable address, which remote nodes need to reach
    this driver.
    """
    if address is not None:
        ray.init(address=address, logging_level=logging.WARNING)
        return
    variables = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    saved_env = {name: os.environ.get(name) for name in variables}
    constants: Any = None
    with contextlib.suppress(ImportError):
        from ray._private import ray_constants as constants
    saved_flag = getattr(constants, "ENABLE_RAY_CLUSTER", None)
    os.environ.update(variables)
    try:
        if saved_flag is not None:
            constants.ENABLE_RAY_CLUSTER = False
        ray.init(include_dashboard=False, logging_level=logging.WARNING, **options)
    finally:
        if saved_flag is not None:
            constants.ENABLE_RAY_CLUSTER = saved_flag
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _Worker:
    """One actor of the pool: the job built once, then ``process_items`` per encoder batch."""

    def __init__(self, job: Any, root: str, save_images: bool, threads: int) -> None:
        import ray
        import torch

        # Ray sets OMP_NUM_THREADS=1 for fractional-CPU actors: give torch this actor's
        # share of the cluster instead, capped by the cores of the node it landed on
        torch.set_num_threads(max(1, min(threads, os.cpu_count() or 1)))
        if isinstance(job, ray.ObjectRef):
            job = ray.get(job)
        self.job: Job = job if isinstance(job, Job) else job()
        if not Path(root).is_dir():
            raise RuntimeError(
                f"output folder {root} does not exist on this Ray node: with a cluster, "
                "write to a filesystem every node shares"
            )
        self.folder = OutputFolder.held_elsewhere(root)
        self.save_images = save_images

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batches, done = [], set()
        for keys, paths, ids, flags in zip(
            rows["keys"], rows["paths"], rows["image_ids"], rows["done"], strict=True
        ):
            batch = [
                Item(str(k), Path(str(p)), image_id=None if int(i) < 0 else int(i))
                for k, p, i in zip(keys, paths, ids, strict=True)
            ]
            batches.append(batch)
            done |= {item.key for item, flag in zip(batch, flags, strict=True) if flag}
        outcomes = list(
            process_items(self.job, batches, self.folder, done=done, save_images=self.save_images)
        )
        return {
            "key": np.array([o.key for o in outcomes], dtype=object),
            "objects": np.array([o.objects for o in outcomes], dtype=np.int64),
            "error": np.array([o.error for o in outcomes], dtype=object),
        }


__all__ = ["run_on_ray"]
