"""Every command that reads a COCO file answers a broken one with one line and exit 2
(issue 20, item 10): no KeyError or TypeError from inside pycocotools or the adapters."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from composeseg.pipelines.cli import main

IMAGE = {"id": 1, "file_name": "a.png", "width": 50, "height": 40}
ANNOTATION = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10], "area": 100}
CATEGORIES = [{"id": 1, "name": "thing"}]


def _without(record: dict, key: str) -> dict:
    return {k: v for k, v in record.items() if k != key}


BAD_FILES = {
    "not JSON": ("{images: [", "is not valid JSON"),
    "no category_id": (
        {"images": [IMAGE], "annotations": [_without(ANNOTATION, "category_id")]},
        r"annotations\[0\] has no valid category_id",
    ),
    "no image id": (
        {"images": [_without(IMAGE, "id")], "annotations": [], "categories": CATEGORIES},
        r"images\[0\] has no valid id",
    ),
    "annotations not a list": (
        {"images": [IMAGE], "annotations": {"0": ANNOTATION}, "categories": CATEGORIES},
        "'annotations' must be a list",
    ),
    "unknown image_id": (
        {"images": [IMAGE], "annotations": [{**ANNOTATION, "image_id": 7}]},
        "image_id 7 is not in",
    ),
}
COMMANDS = {
    "segment": ["segment", "{image}", "--detector", "{coco}", "-o", "{out}", "--device", "cpu"],
    "eval points": ["eval", "points", "--gt", "{coco}", "--images", "{images}"],
    "eval proposals": ["eval", "proposals", "--gt", "{coco}", "--images", "{images}"],
    "eval instances": ["eval", "instances", "--gt", "{coco}", "--detections", "{coco}"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_broken_coco_file_is_one_line_and_exit_2(
    case: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    content, message = BAD_FILES[case]
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "a.png")
    coco = tmp_path / "bad.json"
    coco.write_text(content if isinstance(content, str) else json.dumps(content))
    names = {"image": tmp_path / "a.png", "coco": coco, "images": tmp_path, "out": tmp_path / "o"}
    argv = [a.format(**names) for a in COMMANDS[command]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith(f"composeseg {argv[0]}: error: "), err
    assert "bad.json" in err[-1] and re.search(message, err[-1]), err
