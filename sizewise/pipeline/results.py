"""The search's results: every trial, the Pareto front (metric up, objective down), and the chosen model.

Decisions on validation, numbers on test: every trial is scored on the validation split, the front and the choice are
made there, and only then are the chosen model and the baseline scored on the test split, once, for the reported
result (``selection_split`` and ``reported_split`` say so in results.json).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sizewise.core.budget import Budget, points, quality_drop
from sizewise.measure.latency import RUN_TO_RUN_TOLERANCE

SCHEMA = "sizewise.shrink/2"
SELECTION_SPLIT, REPORTED_SPLIT = "validation", "test"


@dataclass(frozen=True)
class Candidate:
    trial: int | str
    description: str
    metric: float
    objective: float
    drop_points: float
    meets_budget: bool
    artifact: str | None
    card: dict[str, Any] | None = None
    objective_ci: tuple[float, float] | None = None  # 95% interval of a measured objective (latency); else exact


def _bounds(c: Candidate) -> tuple[float, float]:
    return c.objective_ci if c.objective_ci else (c.objective, c.objective)


def dominates(o: Candidate, c: Candidate) -> bool:
    """``o`` is at least as accurate and not slower/larger, and strictly better in one of the two.

    A measured objective is compared by its 95% interval: lower only when the intervals separate, no worse while
    they overlap. Without this a trial that is fastest by noise alone would push every other point off the front.
    """
    o_lo, o_hi = _bounds(o)
    c_lo, c_hi = _bounds(c)
    better = o_hi < c_lo
    no_worse = o_lo <= c_hi
    return o.metric >= c.metric and no_worse and (o.metric > c.metric or better)


def pareto_front(candidates: list[Candidate]) -> list[Candidate]:
    """Candidates no other dominates on the metric (higher) and the objective (lower)."""
    front = [c for c in candidates if not any(dominates(o, c) for o in candidates if o is not c)]
    return sorted(front, key=lambda c: c.objective)


def choose(candidates: list[Candidate]) -> tuple[Candidate | None, str]:
    """The best objective among those meeting the budget; otherwise the one closest to the budget, said plainly."""
    passing = [c for c in candidates if c.meets_budget]
    if passing:
        best = min(passing, key=lambda c: (c.objective, -c.metric))
        return best, f"trial {best.trial} meets the budget on the validation split with the best objective"
    if not candidates:
        return None, "no trial finished: nothing to choose"
    closest = min(candidates, key=lambda c: (c.drop_points, c.objective))
    return closest, (f"NO trial met the budget; the closest is trial {closest.trial}, which loses "
                     f"{closest.drop_points:.2f} points")


def objectives_of(card: dict[str, Any]) -> dict[str, float]:
    """The four objectives a search can minimise, read from a card (as a dict)."""
    return {"latency": card["latency"]["p50_ms"], "size": float(card["size"]["disk_bytes"]),
            "energy": card["energy"]["joules_per_1k"], "flops": float(card["flops"]["total"])}


def _interval(objective: str, card: dict[str, Any] | None) -> tuple[float, float] | None:
    if objective == "latency" and card and card.get("latency"):
        lo, hi = card["latency"]["ci95_median_ms"]
        return lo * (1 - RUN_TO_RUN_TOLERANCE), hi * (1 + RUN_TO_RUN_TOLERANCE)
    return None


def baseline_candidate(card: dict[str, Any], metric: str, objective: str, artifact: str) -> Candidate:
    """The uncompressed model on the runtime, as a point of the front: what every trade-off is measured against.

    It is never *chosen* (a search hands back a compressed model or says none met the budget), but it belongs on the
    front when no trial is both as accurate and faster, which is exactly when a user should see it there.
    """
    return Candidate("baseline", "uncompressed (fp32)", card["metrics"][metric], objectives_of(card)[objective], 0.0,
                     True, artifact, None, _interval(objective, card))


def candidate_from(outcome, metric: str, baseline: float, budget: Budget, objective: str,
                   card: dict[str, Any] | None = None) -> Candidate:
    drop = quality_drop(metric, baseline, outcome.metric)
    return Candidate(outcome.number, outcome.description, outcome.metric, outcome.objectives[objective], drop,
                     budget.allows(metric, baseline, outcome.metric), outcome.artifact, card,
                     _interval(objective, card))


@dataclass(frozen=True)
class Score:
    """The chosen model against the baseline on one split, and whether the budget holds there."""

    split: str
    metric: float
    baseline: float
    drop_points: float
    allowed_points: float
    meets_budget: bool
    card: dict[str, Any] | None = None  # the chosen model's card on this split (the test card: the reported one)


def score(split: str, metric: str, baseline: float, value: float, budget: Budget,
          card: dict[str, Any] | None = None) -> Score:
    return Score(split, value, baseline, quality_drop(metric, baseline, value),
                 budget.allowed_drop(metric, baseline), budget.allows(metric, baseline, value), card)


@dataclass(frozen=True)
class Chosen:
    trial: int
    description: str
    artifact: str | None  # the trial's run directory (sizewise.load takes it)
    objective: float  # measured in its trial
    validation: Score  # what it was chosen on
    test: Score | None = None  # the reported result; None until the search finishes (or when it was interrupted)


def verdict_on_test(metric: str, test: Score) -> str:
    text = (f"on the test split {metric} {points(metric, test.metric):.2f} vs {points(metric, test.baseline):.2f} "
            f"(drop {test.drop_points:.2f} points, allowed {test.allowed_points:.2f})")
    return text if test.meets_budget else f"{text}: it does NOT meet the budget on test"


@dataclass
class ShrinkResults:
    command: str
    config: dict[str, Any]
    metric: str
    objective: str
    # cards of the uncompressed model: "validation" (on the runtime, what trials are compared to), and on test
    # "torch_fp32" (torch eager) and "runtime_fp32" (the runtime), measured with the chosen one once the search ends
    baseline: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)
    pareto: list[Candidate] = field(default_factory=list)  # on the validation split
    chosen: Chosen | None = None
    verdict: str = ""
    environment: dict[str, Any] = field(default_factory=dict)
    sensitivity: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    methods: dict[str, list[str]] = field(default_factory=dict)  # per slot, the methods the search could pick
    left_out: list[str] = field(default_factory=list)  # selected methods that do not apply to this model, and why
    selection_split: str = SELECTION_SPLIT
    reported_split: str = REPORTED_SPLIT
    schema: str = SCHEMA
    kind: str = "shrink"
