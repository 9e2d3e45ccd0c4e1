"""What a metrics dict holds: scores (accuracy, spearman, ...) and their bookkeeping (how many examples, which split).

Here, at the bottom layer, so that the evaluators, the cards and the reports all read a metrics dict the same way.
"""

from __future__ import annotations

from typing import Any

METRIC_KEYS_NOT_SCORES = ("examples", "split", "tokens_scored")  # bookkeeping, not quality


def primary_metric(metrics: dict[str, Any]) -> str | None:
    """The score in a metrics dict (accuracy, spearman, ...), not its bookkeeping (examples, split)."""
    return next((k for k in metrics if k not in METRIC_KEYS_NOT_SCORES), None)


# Scores where less is better (perplexity): a "drop" in quality is a rise in these.
LOWER_IS_BETTER = frozenset({"perplexity", "word_perplexity", "bits_per_byte"})


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER
