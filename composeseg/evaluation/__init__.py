"""Evaluation: metrics of composeseg pipelines against ground truth.

Names resolve lazily (PEP 562) so that importing the package imports no heavy dependency.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "evaluate_instances": "composeseg.evaluation.instances",
    "InstanceMetrics": "composeseg.evaluation.instances",
    "point_prompt_miou": "composeseg.evaluation.points",
    "PointPromptMetrics": "composeseg.evaluation.points",
    "proposal_recall": "composeseg.evaluation.proposals",
    "ProposalMetrics": "composeseg.evaluation.proposals",
    "edge_f_measure": "composeseg.evaluation.edges",
    "EdgeMetrics": "composeseg.evaluation.edges",
    "TrackingMetrics": "composeseg.evaluation.tracking",
    "TrackingEvaluator": "composeseg.evaluation.tracking",
    "evaluate_tracking": "composeseg.evaluation.tracking",
    "evaluate_mot_files": "composeseg.evaluation.tracking",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'composeseg.evaluation' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
