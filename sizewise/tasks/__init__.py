"""Evaluators: a loaded model + a dataset split -> metrics on held-out data."""

from sizewise.tasks.evaluate import check_compatible, evaluate, mean_pool, model_outputs, primary_metric

__all__ = ["check_compatible", "evaluate", "mean_pool", "model_outputs", "primary_metric"]
