"""Evaluation of any policy per UE count (docs/SPEC.md §1.5, paper Fig. 3)."""

from jaxmac.evaluation.metrics import METRICS, episode_metrics
from jaxmac.evaluation.runner import EvaluationTable, evaluate, run_episodes

__all__ = ["METRICS", "EvaluationTable", "episode_metrics", "evaluate", "run_episodes"]
