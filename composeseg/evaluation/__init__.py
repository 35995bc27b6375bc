"""Evaluation: metrics of composeseg pipelines against ground truth.

Names resolve lazily (PEP 562) so that importing the package imports no heavy dependency.
"""

from __future__ import annotations

from composeseg._lazy import lazy_attributes

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "evaluate_instances": "composeseg.evaluation.instances",
    "InstanceMetrics": "composeseg.evaluation.instances",
    "LvisMetrics": "composeseg.evaluation.lvis",
    "point_prompt_miou": "composeseg.evaluation.points",
    "PointPromptMetrics": "composeseg.evaluation.points",
    "proposal_recall": "composeseg.evaluation.proposals",
    "ProposalMetrics": "composeseg.evaluation.proposals",
    "simulated_detections": "composeseg.evaluation.simulated",
    "edge_f_measure": "composeseg.evaluation.edges",
    "EdgeMetrics": "composeseg.evaluation.edges",
    "TrackingMetrics": "composeseg.evaluation.tracking",
    "TrackingEvaluator": "composeseg.evaluation.tracking",
    "evaluate_tracking": "composeseg.evaluation.tracking",
    "evaluate_mot_files": "composeseg.evaluation.tracking",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
