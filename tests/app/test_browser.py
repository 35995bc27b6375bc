"""The page in a real headless Chromium (Playwright), on a generated scene and the demo SAM.

The browser is Debian's ``chromium`` (``playwright install`` cannot download one on the
machines this project is built on; ``.ci/run`` installs it). Without it the test fails and says
so: a skipped browser test would let a broken page through. Set ``COMPOSESEG_APP_SCREENSHOT``
to a path to keep the picture the README shows (``examples/app.png``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from composeseg.pipelines.app.editor import png_mask

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.fail("the browser test needs Chromium: apt-get install -y chromium (CI does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail('the browser test needs playwright: pip install -e ".[dev]"')
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def test_click_box_undo_accept_save(
    browser: Any, demo_sam: Any, write_scenes: Any, tmp_path: Path, helpers: Any
) -> None:
    from composeseg.geometry import tight_boxes
    from composeseg.pipelines.app.server import create_app, running
    from composeseg.pipelines.app.workspace import Workspace
    from composeseg.prompts import Prompts

    scenes = write_scenes([0], height=720, width=960)
    truth = scenes.masks["scene0.png"]
    kinds = np.array(scenes.kinds["scene0.png"])
    boxes = tight_boxes(truth)

    def detector(rgb: np.ndarray) -> Prompts:  # the ground truth's boxes and shape names
        return Prompts(boxes=boxes, data={"class_name": kinds})

    def grounder(rgb: np.ndarray, queries: list[str]) -> Prompts:  # shapes named in a query
        rows = [i for i, kind in enumerate(kinds) if kind in queries[0]]
        return Prompts(
            boxes=boxes[rows],
            class_id=np.zeros(len(rows), np.int64),
            confidence=np.ones(len(rows), np.float32),
            data={"class_name": np.array(queries[:1] * len(rows))},
        )

    out = tmp_path / "out"
    workspace = Workspace(demo_sam, scenes.path, out, detector=detector, grounder=grounder)
    with running(create_app(workspace)) as url:
        # bypass_csp: the page's policy forbids eval, which Playwright's evaluate() uses; what
        # the policy guards (no request leaves the origin) is checked on the requests below
        page = browser.new_page(viewport={"width": 1280, "height": 720}, bypass_csp=True)
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("response", lambda r: None if r.ok else problems.append(f"{r.status} {r.url}"))
        page.on(
            "request",
            lambda r: None if r.url.startswith(("data:", url)) else problems.append(r.url),
        )
        page.goto(url)
        page.wait_for_function("window.app && window.app.state.ready", timeout=30_000)
        canvas = page.locator("#canvas")
        frame = page.evaluate(
            "() => { const c = document.getElementById('canvas'); return {width: c.width, "
            "height: c.height, shown: c.clientWidth, shownHeight: c.clientHeight, "
            "left: c.clientLeft, top: c.clientTop}; }"
        )
        scale = frame["shown"] / frame["width"]
        assert frame["width"] == 960 and scale < 0.95  # the picture is scaled down by CSS

        def at(x: float, y: float) -> dict[str, float]:
            """Image pixels -> a position from the canvas' border box (what click() takes)."""
            return {"x": frame["left"] + x * scale, "y": frame["top"] + y * scale}

        def answer(action: Any, path: str) -> dict[str, Any]:
            with page.expect_response(lambda r: r.url.endswith(path)) as info:
                action()
            response = info.value
            assert response.ok, response.text()
            body: dict[str, Any] = response.json()
            page.evaluate("window.app.idle()")
            return body

        # a click on the ellipse: the returned mask (not the screenshot's pixels) is checked
        x, y = helpers.inner(truth[0])
        clicked = answer(lambda: canvas.click(position=at(x, y)), "/prompt")["editor"]
        ((px, py, label),) = clicked["points"]
        assert abs(px - x) < 1.5 and abs(py - y) < 1.5 and label == 1
        mask = png_mask(clicked["candidates"][clicked["selected"]]["mask"])
        assert mask.shape == truth[0].shape and helpers.iou(mask, truth[0]) >= 0.8
        assert page.locator("#candidates button").count() == 3

        # a drag: a box around the ellipse
        x0, y0, x1, y1 = np.clip(tight_boxes(truth[:1])[0] + [-6, -6, 6, 6], 0, [960, 720] * 2)
        box = canvas.bounding_box()
        assert box is not None
        start, end = at(x0, y0), at(x1, y1)

        def drag() -> None:
            page.mouse.move(box["x"] + start["x"], box["y"] + start["y"])
            page.mouse.down()
            page.mouse.move(box["x"] + end["x"], box["y"] + end["y"], steps=6)
            page.mouse.up()

        boxed = answer(drag, "/prompt")["editor"]
        assert np.allclose(boxed["box"], [x0, y0, x1, y1], atol=1.5)
        assert len(boxed["points"]) == 1 and boxed["can_undo"]

        undone = answer(lambda: page.click("#undo"), "/editor/undo")["editor"]
        assert undone["box"] is None and undone["candidates"] == clicked["candidates"]

        page.fill("#class", "ellipse")
        accepted = answer(lambda: page.click("#accept"), "/accept")
        assert accepted["object"]["class_name"] == "ellipse"
        assert page.locator("#objects li").count() == 1
        page.hover("#objects li")
        assert page.evaluate("window.app.state.hover") == accepted["object"]["id"]

        saved = answer(lambda: page.click("#save"), "/save")
        assert saved["saved"] == 1
        record = json.loads((workspace.out / "annotations" / "scene0.png.json").read_text())
        (annotation,) = record["annotations"]
        assert record["images"][0]["file_name"] == "scene0.png"
        assert annotation["class_name"] == "ellipse"
        assert record["categories"] == [{"id": annotation["category_id"], "name": "ellipse"}]
        from composeseg import rle

        assert np.array_equal(rle.decode(annotation["segmentation"]), mask)
        assert annotation["area"] == int(mask.sum())

        # the pipeline buttons: proposals to accept, delete or leave
        found = answer(lambda: page.click("#detector"), "/pipelines/detector")
        assert found["added"] == len(kinds) == page.locator("#objects li.proposal").count()
        page.fill("#query", "the rectangle")
        texts = answer(lambda: page.click("#text"), "/pipelines/text")
        assert [o["class_name"] for o in texts["objects"][-texts["added"] :]] == ["the rectangle"]
        proposal = page.locator("#objects li.proposal").first
        answer(lambda: proposal.locator("button", has_text="✕").click(), "/objects/2")
        cross = page.locator("#objects li.proposal", has_text="cross")
        answer(lambda: cross.locator("button", has_text="✓").click(), f"/objects/{2 + 4}")
        assert page.locator("#objects li:not(.proposal)").count() == 2

        # a third object in progress, for the picture
        square = helpers.inner(truth[1])
        answer(lambda: canvas.click(position=at(*square)), "/prompt")
        page.mouse.move(0, 0)
        page.screenshot(path=str(tmp_path / "app.png"))
        target = os.environ.get("COMPOSESEG_APP_SCREENSHOT")
        if target:  # 128 colours: a sixth of the size in the repository, no visible change
            from PIL import Image

            shot = Image.open(tmp_path / "app.png").convert("RGB")
            octree, plain = Image.Quantize.FASTOCTREE, Image.Dither.NONE
            shot.quantize(128, method=octree, dither=plain).save(target, optimize=True)
        assert not problems, problems
