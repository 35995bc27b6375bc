"""``composeseg track`` and ``composeseg eval tracking`` end to end on a tiny model."""

from __future__ import annotations

import json

from composeseg.pipelines.cli import main
from composeseg.pipelines.video_io import probe, read_frames


def test_track_writes_video_mot_and_json(tmp_path, tiny_sam_dir, capsys):
    out = tmp_path / "out.mp4"
    status = main(
        ["track", "synthetic:0:6", "--detector", "synthetic", "-o", str(out),
         "--mot", str(tmp_path / "r.txt"), "--json", str(tmp_path / "r.json"), "--fps", "12",
         "--sam", str(tiny_sam_dir), "--device", "cpu", "--no-progress"]
    )  # fmt: skip
    assert status == 0
    assert len(list(read_frames(out))) == 6 and probe(out).fps == 12
    assert (tmp_path / "r.txt").read_text().startswith("1,1,")
    assert json.loads((tmp_path / "r.json").read_text())["video"]["frames"] == 6
    assert "6 frames" in capsys.readouterr().out


def test_track_rejects_synthetic_detector_on_a_real_video(tmp_path, tiny_sam_dir, capsys):
    video = tmp_path / "in"
    video.mkdir()
    status = main(
        ["track", str(video), "--detector", "synthetic", "-o", str(tmp_path / "o.mp4"),
         "--sam", str(tiny_sam_dir), "--device", "cpu"]
    )  # fmt: skip
    assert status == 2 and "synthetic:SEED" in capsys.readouterr().err


def test_eval_tracking_compares_variants(tmp_path, tiny_sam_dir, capsys):
    status = main(
        ["eval", "tracking", "--synthetic", "0", "--frames", "4", "--size", "48", "--compare",
         "--sam", str(tiny_sam_dir), "--device", "cpu", "-o", str(tmp_path / "m.json")]
    )  # fmt: skip
    assert status == 0
    table = capsys.readouterr().out
    assert "consistent" in table and "per-frame" in table and "IDF1" in table
    assert set(json.loads((tmp_path / "m.json").read_text())) == {"consistent", "per-frame"}


def test_track_with_the_sam2_engine(tmp_path):
    import torch
    from transformers import Sam2VideoModel

    from composeseg.pipelines.video_sam2 import tiny_sam2_video_config

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        Sam2VideoModel(tiny_sam2_video_config()).save_pretrained(tmp_path / "sam2")
    out = tmp_path / "out.mp4"
    status = main(
        ["track", "synthetic:1:4", "--detector", "synthetic", "--engine", "sam2", "-o", str(out),
         "--detect-every", "2", "--sam", str(tmp_path / "sam2"), "--device", "cpu",
         "--no-progress"]
    )  # fmt: skip
    assert status == 0 and len(list(read_frames(out))) == 4
