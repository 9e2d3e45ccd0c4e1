"""The one run record: every command that changes a model writes ``OUT/card.json`` in this schema, and ``sizewise
report`` renders any of them from it.

``sizewise.run/1``: ``schema``, ``kind`` (the command: prune, quantize, recipe, distill, finetune, train, ...),
``command``, ``model`` (the input reference), ``plan`` (name, source, fingerprint), ``data`` (name, split sizes, which
split decided and which was reported, how validation was made), ``steps`` (each with its method, config, training
settings, details, seconds, validation metrics and artifact), ``roles`` (what ``before`` and ``after`` are: input and
result, or teacher and student), ``before`` and ``after`` cards (``sizewise.card/1``, their ``metrics.split`` naming the
split), ``references`` (more cards of the input, e.g. fp32 on torch eager beside fp32 on onnxruntime), ``verdict``,
``model_dir`` and ``environment``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sizewise.core.budget import Budget, points, quality_drop
from sizewise.core.errors import ConfigError
from sizewise.core.metrics import primary_metric

SCHEMA = "sizewise.run/1"


@dataclass(frozen=True)
class Verdict:
    metric: str | None
    split: str | None
    baseline: float | None
    value: float | None
    drop_points: float | None
    allowed_points: float | None
    meets_budget: bool | None  # None when no budget or no data was given
    message: str


def verdict_for(before: dict[str, Any], after: dict[str, Any], budget: Budget | None,
                before_name: str = "before") -> Verdict:
    """The accuracy verdict from two cards' metrics (the reported split): by how much, and whether the budget holds."""
    metric = primary_metric(after) or primary_metric(before)
    split = after.get("split")
    if metric is None or metric not in after:
        return Verdict(None, split, None, None, None, None, None, "no data: accuracy was not checked")
    value = after[metric]
    if metric not in before:
        return Verdict(metric, split, None, value, None, None, None,
                       f"{metric} {points(metric, value):.2f} on the {split} split (the {before_name} model has no "
                       f"{metric} on this data)")
    baseline = before[metric]
    drop = quality_drop(metric, baseline, value)
    text = f"{metric} {points(metric, value):.2f} vs {points(metric, baseline):.2f} on the {split} split"
    if budget is None:
        return Verdict(metric, split, baseline, value, drop, None, None, f"{text} ({-drop:+.2f} points)")
    allowed = budget.allowed_drop(metric, baseline)
    ok = drop <= allowed + 1e-9
    return Verdict(metric, split, baseline, value, drop, allowed, ok,
                   f"{'meets' if ok else 'does NOT meet'} the budget: {text} (drop {drop:.2f} points, "
                   f"allowed {allowed:.2f})")


def read_record(path: str | Path) -> dict[str, Any]:
    """A run record from ``DIR/card.json`` or the file itself; refuses anything that is not ``sizewise.run/1``."""
    path = Path(path)
    if path.is_dir():
        path = path / "card.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or UTF-8, an int of 4,300+ digits
        raise ConfigError(f"cannot read the run record {path}: {exc}") from exc
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise ConfigError(f"{path} is not a sizewise run record (schema {record.get('schema') if isinstance(record, dict) else None!r})",
                          hint=f"expected {SCHEMA}; re-run the command with this version of sizewise")
    return record
