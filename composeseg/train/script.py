"""The command line shared by the demo-model training scripts (``python -m composeseg.train.X``)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def script_main(
    argv: list[str] | None, description: str, train: Callable[..., Any], **defaults: float | str
) -> int:
    """Parse ``-o OUTDIR``, ``--threads N`` and one ``--name VALUE`` per default, then run
    ``train(OUTDIR, **options)`` with that many torch threads and print its metrics as JSON."""
    import torch

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("-o", "--output", type=Path, required=True)
    for name, value in defaults.items():
        parser.add_argument(f"--{name}", type=type(value), default=value)
    parser.add_argument("--threads", type=int, default=1)
    options = vars(parser.parse_args(argv))
    torch.set_num_threads(options.pop("threads"))
    print(json.dumps(train(options.pop("output"), **options)))
    return 0
