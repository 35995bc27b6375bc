"""Interpolate two SAM models' weights: keep a fine-tune's gains without all of its losses.

Fine-tuning on a new distribution trades some of what the starting model did well for what
the new data teaches. Averaging the two sets of weights (WiSE-FT, Wortsman et al. 2022) often
keeps most of the gain and most of what was lost, at no inference cost: the result has the
starting model's architecture and speed. It works when both models share one training
lineage (the fine-tune started from the other); two models trained apart do not average.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
from transformers import SamModel


def interpolate_weights(start: SamModel, tuned: SamModel, alpha: float) -> SamModel:
    """A float32 copy of ``start`` whose weights are ``(1 - alpha) * start + alpha * tuned``.

    Args:
        start: the model the fine-tune began from; its config (input frame included) is kept.
        tuned: the same architecture at the same input frame (move a model fine-tuned at
            another frame first, with :func:`composeseg.train.resize.resize_input`).
        alpha: 0 gives ``start``, 1 gives ``tuned``.

    Raises:
        ValueError: ``alpha`` outside [0, 1]; the two models' weights differ in names or shapes.
    """
    _check_alpha(alpha)
    ours, theirs = start.state_dict(), tuned.state_dict()
    if ours.keys() != theirs.keys():
        differ = sorted(ours.keys() ^ theirs.keys())
        raise ValueError(f"the models' weights differ in names, e.g. {differ[:3]}")
    mixed: dict[str, torch.Tensor] = {}
    for name, weight in ours.items():
        other = theirs[name]
        if weight.shape != other.shape:
            raise ValueError(
                f"{name}: shape {tuple(weight.shape)} against {tuple(other.shape)}; "
                "move both models to one input frame first (resize_input)"
            )
        if weight.is_floating_point():
            mixed[name] = torch.lerp(weight.float(), other.float(), alpha)
        else:  # integer buffers (indices) are the architecture's, equal in both
            mixed[name] = weight.clone()
    model = SamModel(copy.deepcopy(start.config))  # float32, as resize_input returns
    model.load_state_dict(mixed)
    return model.eval()


def _check_alpha(alpha: float) -> None:
    if not 0.0 <= alpha <= 1.0:  # NaN fails too
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")


def blend_checkpoints(
    start: str | Path, tuned: str | Path, alpha: float, out: str | Path, dtype: str = "float16"
) -> Path:
    """Write ``interpolate_weights`` of two saved models into ``out`` (atomically).

    ``tuned`` is moved to ``start``'s input frame first, so a fine-tune at another frame
    blends as is; the result keeps ``start``'s config (its frame and upsampling included).
    ``dtype="float16"`` stores the weights as the demo model ships them.

    Raises:
        ValueError: as :func:`interpolate_weights`. TypeError: a model that is not a
            transformers ``SamModel`` (SAM 2, SAM-HQ).
    """
    from composeseg.loading import load_sam
    from composeseg.train.loop import export_model
    from composeseg.train.model import check_trainable, frame_size
    from composeseg.train.resize import resize_input

    _check_alpha(alpha)  # before two models are loaded
    first = check_trainable(load_sam(str(start), device="cpu").model)
    second = check_trainable(load_sam(str(tuned), device="cpu").model)
    second = resize_input(second, frame_size(first))
    return export_model(interpolate_weights(first, second, alpha), Path(out), dtype)


def main(argv: list[str] | None = None) -> None:
    """``python -m composeseg.train.interpolate START TUNED ALPHA OUT``: one blend, saved."""
    parser = argparse.ArgumentParser(description="Blend a model with its fine-tune (WiSE-FT).")
    parser.add_argument("start", help="the model the fine-tune began from (its frame is kept)")
    parser.add_argument("tuned", help="the fine-tuned model")
    parser.add_argument("alpha", type=float, help="the fine-tune's share, in [0, 1]")
    parser.add_argument("out", type=Path, help="where the blend is saved")
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    args = parser.parse_args(argv)
    path = blend_checkpoints(args.start, args.tuned, args.alpha, args.out, args.dtype)
    print(f"blend {1 - args.alpha:g} x {args.start} + {args.alpha:g} x {args.tuned} -> {path}")


if __name__ == "__main__":
    main()
