"""Evaluators: a loaded model + a dataset split -> metrics on held-out data."""

from sizewise.tasks.evaluate import check_compatible, evaluate, model_outputs

__all__ = ["check_compatible", "evaluate", "model_outputs"]
