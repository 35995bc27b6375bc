"""``composeseg serve``: what it prints, where it listens, what it says without the extra."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason='the app extra: pip install "composeseg[app]"')
pytest.importorskip("uvicorn", reason='the app extra: pip install "composeseg[app]"')

from fastapi.testclient import TestClient

from composeseg.pipelines.cli import main


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Catches the app ``uvicorn.run`` would serve, instead of serving it."""
    import uvicorn

    calls: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.update(app=app, **kwargs))
    return calls


@pytest.mark.parametrize(
    ("host", "warned", "foreign_host_status"),
    [("127.0.0.1", False, 400), ("0.0.0.0", True, 200)],
)
def test_serve_prints_the_url_and_warns_off_loopback(
    served: dict[str, Any],
    write_scenes: Any,
    tmp_path: Path,
    capsys: Any,
    host: str,
    warned: bool,
    foreign_host_status: int,
) -> None:
    scenes = write_scenes([0])
    args = ["serve", str(scenes.path), "-o", str(tmp_path), "--host", host, "--port", "8123"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert f"http://{host}:8123/" in out and "1 image(s)" in out
    assert ("not the loopback interface" in err) is warned
    assert (served["host"], served["port"]) == (host, 8123)
    # on loopback, a page reaching the server under another name (DNS rebinding) is refused
    foreign = TestClient(served["app"], base_url="http://attacker.example")
    assert foreign.get("/api/config").status_code == foreign_host_status
    config = TestClient(served["app"], base_url=f"http://{host}").get("/api/config").json()
    assert config["text"] is True  # the demo CLIP matcher by default


def test_a_missing_app_extra_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    real = importlib.import_module

    def without_app(name: str, *args: Any) -> Any:
        if name.split(".")[0] in ("fastapi", "uvicorn"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args)

    monkeypatch.setattr("composeseg.extras.importlib.import_module", without_app)
    assert main(["serve", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "composeseg[app]"' in err


@pytest.mark.parametrize(("flags", "selection"), [([], "score"), (["--box-fit"], "box_fit")])
def test_detector_mask_options_reach_the_workspace(
    write_scenes: Any, tmp_path: Path, flags: list[str], selection: str
) -> None:
    from composeseg.pipelines.cli import build_parser
    from composeseg.pipelines.cli.serve import build_workspace

    scenes = write_scenes([0])
    args = build_parser().parse_args(["serve", str(scenes.path), "-o", str(tmp_path), *flags])
    workspace = build_workspace(args)
    assert workspace.instance_options["mask_selection"] == selection
    assert workspace.instance_options["refine"] is True
