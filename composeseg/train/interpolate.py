"""Interpolate two SAM models' weights: keep a fine-tune's gains without all of its losses.

Fine-tuning on a new distribution trades some of what the starting model did well for what
the new data teaches. Averaging the two sets of weights (WiSE-FT, Wortsman et al. 2022) often
keeps most of the gain and most of what was lost, at no inference cost: the result has the
starting model's architecture and speed. It works when both models share one training
lineage (the fine-tune started from the other); two models trained apart do not average.
"""

from __future__ import annotations

import copy

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
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
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
