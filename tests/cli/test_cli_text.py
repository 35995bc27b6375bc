from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from composeseg.adapters.grounding import DEMO_GROUNDER, DEMO_GROUNDER_THRESHOLD
from composeseg.pipelines.cli import build_parser, main
from composeseg.pipelines.cli.text import build
from composeseg.rle import decode as rle_to_mask
from composeseg.synthetic import SceneConfig, generate_scene

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters"))
from tiny_detectors import build_owl

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "scene.png"
EXAMPLE_SEED = 2_000_000_006  # examples/README.md: how the bundled scene was generated


def test_text_on_the_bundled_scene_finds_the_named_objects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The README's command: demo SAM + demo text model, offline.
    out = tmp_path / "out"
    texts = ["the gray square", "the black ellipse"]
    assert main(["text", str(EXAMPLE), *texts, "-o", str(out), "--device", "cpu"]) == 0
    assert "2 masks" in capsys.readouterr().out
    payload = json.loads((out / "predictions.json").read_text())
    config = SceneConfig(
        height=360, width=480, min_objects=4, max_objects=6, distinct_attributes=True
    )
    scene = generate_scene(EXAMPLE_SEED, config)
    assert np.array_equal(np.asarray(Image.open(EXAMPLE).convert("RGB")), scene.image)
    truth = {f"the {i.color} {i.kind}": i.mask for i in scene.instances}
    assert sorted(a["class_name"] for a in payload["annotations"]) == sorted(texts)
    for annotation in payload["annotations"]:
        assert annotation["category_id"] == texts.index(annotation["class_name"])
        mask = rle_to_mask(annotation["segmentation"])
        target = truth[annotation["class_name"]]
        assert (mask & target).sum() / (mask | target).sum() > 0.7
    assert (out / "annotated.png").is_file()


def test_text_with_a_grounder(
    tmp_path: Path, tiny_sam_dir: Path, rgb_image: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "image.png"
    Image.fromarray(rgb_image).save(image)
    owl = build_owl(tmp_path / "owl", "owlv2")
    argv = ["text", str(image), "cat", "dog", "--grounder", str(owl), "--sam", str(tiny_sam_dir)]
    argv += ["--grounder-threshold", "0", "-o", str(tmp_path / "out"), "--device", "cpu"]
    assert main(argv) == 0
    payload = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert payload["annotations"], capsys.readouterr().out
    assert {a["category_id"] for a in payload["annotations"]} <= {0, 1}
    assert {a["class_name"] for a in payload["annotations"]} <= {"cat", "dog"}


def test_text_with_the_demo_grounder(tmp_path: Path) -> None:
    # --grounder demo: the embedded grounder at its own threshold, offline; its quality is
    # measured in tests/quality/test_demo_grounder_quality.py.
    texts = ["the gray square", "the black ellipse", "the magenta rectangle"]
    out = tmp_path / "out"
    argv = ["text", str(EXAMPLE), *texts, "--grounder", "demo", "--top-k", "1"]
    assert main([*argv, "-o", str(out), "--device", "cpu"]) == 0
    payload = json.loads((out / "predictions.json").read_text())
    names = [a["class_name"] for a in payload["annotations"]]
    assert len(names) == len(set(names)) and set(names) <= set(texts)
    assert all(a["category_id"] == texts.index(a["class_name"]) for a in payload["annotations"])
    pipe = build(build_parser().parse_args([*argv, "-o", str(out), "--device", "cpu"]))
    assert pipe.grounder.name == DEMO_GROUNDER
    assert pipe.grounder.threshold == DEMO_GROUNDER_THRESHOLD


def test_text_refuses_two_routes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["text", str(EXAMPLE), "cat", "--grounder", "x", "--sam3", "y", "-o", str(tmp_path)]
    assert main(argv) == 2
    assert "two routes" in capsys.readouterr().err
