"""``engine="ray"``: same records as the local engine, a killed actor loses and repeats
nothing, a local Ray listens on loopback only, and a missing ray names the extra.

One local Ray (2 CPUs, loopback, its own temp folder) serves the module: a start costs seconds.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from composeseg.extras import MissingExtraError
from composeseg.pipelines.amg import AutomaticMaskGenerator
from composeseg.pipelines.cli import main
from composeseg.pipelines.runner import Job, chunks, run_job
from composeseg.pipelines.runner_ray import run_on_ray
from composeseg.pipelines.sources import Item, resolve_items
from composeseg.synthetic.scenes import SceneConfig, generate_scene

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")

AMG = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
N_IMAGES = 20


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 small synthetic scenes, in a subfolder for half of them (keys with a folder)."""
    root = tmp_path_factory.mktemp("ray_images")
    config = SceneConfig(height=48, width=64)
    for seed in range(N_IMAGES):
        path = root / ("sub" if seed % 2 else "") / f"scene_{seed:02d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(generate_scene(seed, config).image).save(path)
    return root


@pytest.fixture(scope="module")
def local_out(images: Path, tiny_sam, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("local_out")
    job = AutomaticMaskGenerator(tiny_sam, **AMG).job()
    run_job(job, images, write_to=out, batch_size=2, save_images=True, progress=False)
    return out


@pytest.fixture(scope="module")
def ray_session() -> Iterator[object]:
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    from composeseg.pipelines.runner_ray import _init

    if ray.is_initialized():
        pytest.skip("a Ray is already running in this process")
    temp = short_temp_dir()
    # the test module is not importable in Ray's workers: send its functions by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    _init(ray, None, num_cpus=2, _temp_dir=temp)
    try:
        yield ray
    finally:
        ray.shutdown()
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        shutil.rmtree(temp, ignore_errors=True)


def short_temp_dir() -> str:
    """A folder for Ray's session files, on a short path: its unix sockets live there
    (108-byte limit, which pytest's tmp_path can exceed)."""
    return tempfile.mkdtemp(prefix="ray-", dir="/tmp")


def files(root: Path) -> dict[str, bytes]:
    """Every record and picture under ``root``, by relative path."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for folder in ("records", "images")
        for p in sorted((root / folder).rglob("*"))
        if p.is_file()
    }


def ray_processes() -> list[object]:
    psutil = pytest.importorskip("psutil")
    names = ("raylet", "gcs_server", "ray::")
    children = psutil.Process().children(recursive=True)
    return [p for p in children if p.is_running() and p.name().startswith(names)]


def test_a_run_starts_and_stops_its_own_ray(
    tiny_sam, images, local_out, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """The CLI's path: no Ray in the process, so the run starts one and shuts it down.
    (First in the module: the other tests share one Ray.)"""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    if ray.is_initialized():
        pytest.skip("a Ray is already running in this process")
    # the folder's first two encoder batches: a record depends on its batch's company, and
    # on torch's thread count (2 actors on 2 CPUs get 1 thread each, as the tests' process)
    paths = [images / f"scene_{seed:02d}.png" for seed in (0, 2, 4, 6)]
    job = AutomaticMaskGenerator(tiny_sam, **AMG).job()
    temp = short_temp_dir()
    monkeypatch.setenv("RAY_TMPDIR", temp)  # Ray's session folder, removed below
    try:
        summary = run_job(job, paths, write_to=tmp_path, engine="ray", workers=2, batch_size=2,
                          progress=False)  # fmt: skip
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert summary.done == 4
    assert not ray.is_initialized()
    for path in paths:
        record = f"records/{path.name}.json"
        assert (tmp_path / record).read_bytes() == (local_out / record).read_bytes()
    import psutil

    psutil.wait_procs(ray_processes(), timeout=10)  # type: ignore[arg-type]
    assert ray_processes() == []


def test_ray_writes_the_local_records(ray_session, tiny_sam, images, local_out, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "ray"
    job = AutomaticMaskGenerator(tiny_sam, **AMG).job()
    summary = run_job(job, images, write_to=out, engine="ray", workers=2, batch_size=2,
                      save_images=True, progress=False)  # fmt: skip
    assert (summary.done, summary.skipped, summary.failed) == (N_IMAGES, 0, [])
    expected = files(local_out)
    assert len(expected) == 2 * N_IMAGES and "records/sub/scene_01.png.json" in expected
    assert files(out) == expected
    assert (out / "predictions.json").read_bytes() == (local_out / "predictions.json").read_bytes()
    # a finished folder starts no actor: nothing left to do
    again = run_job(job, images, write_to=out, engine="ray", batch_size=2, progress=False)
    assert (again.done, again.skipped) == (0, N_IMAGES)


def test_a_local_ray_listens_on_loopback_only(ray_session) -> None:  # type: ignore[no-untyped-def]
    psutil = pytest.importorskip("psutil")
    ours = {os.getpid()} | {p.pid for p in psutil.Process().children(recursive=True)}
    listening = [
        c.laddr.ip
        for c in psutil.net_connections("inet")
        if c.status == psutil.CONN_LISTEN and c.pid in ours
    ]
    assert listening, "no Ray socket found"
    for ip in listening:
        address = ipaddress.ip_address(ip.split("%")[0])
        mapped = getattr(address, "ipv4_mapped", None)
        assert (mapped or address).is_loopback, f"Ray listens on {ip}"


def crashing_job(sam_dir: Path, marker: Path, victim: str) -> Job:
    """The AMG job, whose process dies (no exception, no cleanup) the first time it
    reaches ``victim``: an OOM kill or a preempted node, as far as Ray can tell."""
    from composeseg import load_sam

    job = AutomaticMaskGenerator(load_sam(sam_dir, device="cpu"), **AMG).job()
    predict = job.predict

    def predict_or_die(rgb: np.ndarray, path: Path | None, embedding: object) -> object:
        if path is not None and path.name == victim and not marker.exists():
            marker.touch()
            os._exit(1)
        return predict(rgb, path, embedding)  # type: ignore[arg-type]

    job.predict = predict_or_die
    return job


def test_a_killed_actor_loses_and_repeats_nothing(  # type: ignore[no-untyped-def]
    ray_session, tiny_sam_dir, images, local_out, tmp_path
) -> None:
    """A resumed run (some records there) whose actor dies mid-batch: the actor is restarted
    and the batch retried, every missing image is recorded once, as the local engine does."""
    out = tmp_path / "ray"
    done = {"scene_00.png", "scene_10.png", "scene_12.png", "sub/scene_19.png"}
    for key in done:  # an earlier run's files; [10, 12] is a whole batch, skipped
        for name in (f"records/{key}.json", f"images/{key}"):
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(local_out / name, out / name)
    marker = tmp_path / "killed-once"
    items = resolve_items(images)
    # the victim is the second image of its batch [sub/scene_05, sub/scene_07]: the first
    # one's record is written, then the process dies; the retry writes it again, same bytes
    factory = partial(crashing_job, tiny_sam_dir, marker, "scene_07.png")
    batches = chunks(items, 2)
    outcomes = list(run_on_ray(factory, batches, out, done=done, workers=2, save_images=True))
    assert marker.exists(), "the actor was never killed"
    keys = sorted(o.key for o in outcomes)
    assert keys == sorted(i.key for i in items if i.key not in done)  # once each
    assert all(o.error is None for o in outcomes)
    assert files(out) == files(local_out)


def test_without_ray_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    job = Job("x", lambda rgb, path, embedding: None, None)
    with pytest.raises(MissingExtraError, match=r"composeseg\[ray\]"):
        run_on_ray(job, [[Item("a.png", tmp_path / "a.png")]], tmp_path)


def test_cli_without_ray_exits_2_naming_the_extra(  # type: ignore[no-untyped-def]
    monkeypatch, tiny_sam_dir, images, tmp_path, capsys
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    argv = ["everything", str(images), "-o", str(tmp_path / "out"), "--engine", "ray"]
    argv += ["--points-per-side", "4", "--sam", str(tiny_sam_dir), "--device", "cpu"]
    assert main(argv) == 2
    # one error line (the runner's progress bar may have drawn itself before it)
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1, errors
    message = errors[0][errors[0].index("composeseg everything: error:") :]
    assert message == (
        'composeseg everything: error: --engine ray needs ray: pip install "composeseg[ray]"'
    )


def test_in_memory_images_cannot_go_to_ray(tmp_path: Path) -> None:
    job = Job("x", lambda rgb, path, embedding: None, None)
    items = [Item("a.png", tmp_path / "a.png"), Item("image_000001", image=np.zeros((4, 4, 3)))]
    with pytest.raises(ValueError, match="in memory"):
        run_on_ray(job, [items], tmp_path)
