"""The search's results: every trial, the Pareto front (metric up, objective down), and the chosen model.

Decisions on validation, numbers on test: every trial is scored on the validation split, the front and the choice are
made there, and only then are the chosen model and the baseline scored on the test split, once, for the reported
result (``selection_split`` and ``reported_split`` say so in results.json).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sizewise.core.budget import Budget, points, quality_drop
from sizewise.core.units import format_bytes, format_flops
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
    size_bytes: float | None = None  # bytes on disk: the tie-break after accuracy among equally fast candidates


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


def within_noise(c: Candidate, best: Candidate) -> bool:
    """``c``'s objective cannot be told apart from ``best``'s: their (widened) intervals overlap. Exact objectives
    (bytes, FLOPs) are within noise only when equal."""
    c_lo, c_hi = _bounds(c)
    b_lo, b_hi = _bounds(best)
    return c_lo <= b_hi and b_lo <= c_hi


def choose(candidates: list[Candidate]) -> tuple[Candidate | None, str]:
    """Among the candidates meeting the budget, the best objective; but a faster latency that is only noise buys
    nothing, so among those within the measured run-to-run noise of the best, the more accurate wins, then the
    smaller. Without a candidate in budget, the one closest to it, said plainly."""
    passing = [c for c in candidates if c.meets_budget]
    if passing:
        fastest = min(passing, key=lambda c: (c.objective, -c.metric))
        tied = [c for c in passing if within_noise(c, fastest)]
        best = max(tied, key=lambda c: (c.metric, -(c.size_bytes if c.size_bytes is not None else float("inf")),
                                         -c.objective))
        why = "with the best objective"
        if best is not fastest:
            why = (f"with an objective within the measured noise of the best (trial {fastest.trial}), "
                   f"and {'more accurate' if best.metric > fastest.metric else 'smaller'}")
        return best, f"trial {best.trial} meets the budget on the validation split {why}"
    if not candidates:
        return None, "no trial finished: nothing to choose"
    closest = min(candidates, key=lambda c: (c.drop_points, c.objective))
    return closest, (f"NO trial met the budget; the closest is trial {closest.trial}, which loses "
                     f"{closest.drop_points:.2f} points")


def trial_note(trial: dict[str, Any]) -> str:
    """A trials table's note: why the search ran the plan (designed start, line search, sampler), then what happened
    to it beyond its score (stopped early, skipped, failed)."""
    return "; ".join(part for part in (trial.get("origin"), trial.get("message")) if part)


def format_objective(objective: str, value: float | None) -> str:
    """An objective as a person reads it: ``0.074 ms``, ``45.1 KiB``, ``1.2 MFLOP``, ``0.31 J / 1k``."""
    if value is None:
        return ""
    if objective == "latency":
        return f"{value:.3g} ms"
    if objective == "size":
        return format_bytes(value)
    if objective == "flops":
        return format_flops(value)
    return f"{value:.3g} J / 1k"


# The instruction sets that decide how fast kernels of a number format run on a CPU (the registry's Method.kernel).
_KERNEL_ISAS = {"int8": ("avx512_vnni", "avx_vnni", "amx_int8"), "int4": ("avx512_vnni", "avx_vnni", "amx_int8"),
                "bfloat16": ("avx512_bf16", "amx_bf16"), "float16": ("avx512_fp16", "f16c"),
                "float32": ("avx2", "fma", "avx512f")}


def deciding_isas(plan: dict[str, Any] | None, cpu_flags: dict[str, bool]) -> dict[str, list[str]]:
    """Which of the CPU's instruction sets the kernels of the chosen plan's result depend on, present and absent, so a
    reader on another machine knows whether the result should carry over (int8 speed needs VNNI/AMX, bf16 needs
    AVX512-BF16/AMX). The format is the last step's that sets one (``Method.kernel``); float32 otherwise."""
    from sizewise.compress.registry import get_method

    kinds = [k for step in (plan or {}).get("steps", []) if (k := get_method(step["method"]).kernel)]
    kernel = kinds[-1] if kinds else "float32"
    present = [isa for isa in _KERNEL_ISAS.get(kernel, ()) if cpu_flags.get(isa)]
    absent = [isa for isa in _KERNEL_ISAS.get(kernel, ()) if not cpu_flags.get(isa)]
    return {"kernels": [kernel], "present": present, "absent": absent}


def hardware_note(hardware: dict[str, Any]) -> str:
    """"int8 kernels: this CPU has avx512_vnni, amx_int8; lacks avx_vnni" (what decided the speed here)."""
    have = ", ".join(hardware["present"]) or "none of them"
    lacks = f"; lacks {', '.join(hardware['absent'])}" if hardware["absent"] else ""
    return f"{'/'.join(hardware['kernels'])} kernels: this CPU has {have}{lacks}"


def headline(objective: str, runtime: str, speedups: dict[str, dict], base: dict[str, Any],
             chosen: dict[str, Any]) -> str:
    """One sentence a user can trust: a speed-up only when its interleaved interval (widened by run-to-run spread)
    clears 1.0x, otherwise "no speed-up beyond noise" and what was gained instead (bytes, FLOPs)."""
    parts = []
    same = speedups.get("runtime_fp32")
    eager = speedups.get("torch_fp32")
    if same is not None:
        lo, hi = same["speedup_ci95"]
        if same["outcome"] == "faster":
            parts.append(f"{_floor2(same['speedup'])}x faster than fp32 on {runtime} (95% CI {lo:.2f}-{hi:.2f}, "
                         f"interleaved)")
        elif same["outcome"] == "slower":
            parts.append(f"slower than fp32 on {runtime}: {same['speedup']:.2f}x its speed (95% CI {lo:.2f}-{hi:.2f})")
        else:
            parts.append(f"no speed-up beyond noise on {runtime} ({same['speedup']:.2f}x, 95% CI {lo:.2f}-{hi:.2f})")
    if eager is not None and eager["outcome"] == "faster":
        parts.append(f"{_floor2(eager['speedup'])}x torch fp32 eager")
    size_ratio = base["size"]["disk_bytes"] / max(1, chosen["size"]["disk_bytes"])
    if size_ratio > 1.01:
        parts.append(f"{size_ratio:.2f}x fewer bytes ({format_bytes(base['size']['disk_bytes'])} -> "
                     f"{format_bytes(chosen['size']['disk_bytes'])})")
    flops_ratio = base["flops"]["total"] / max(1, chosen["flops"]["total"])
    if flops_ratio > 1.01:
        parts.append(f"{flops_ratio:.2f}x fewer FLOPs")
    if len(parts) == 1 and same is not None and same["outcome"] != "faster":
        parts.append("nothing else gained")
    return "; ".join(parts)


def _floor2(x: float) -> str:
    """Rounded down: a speed-up is never shown larger than measured."""
    import math

    return f"{math.floor(x * 100 + 1e-9) / 100:.2f}"


def latency_of(card: dict[str, Any]) -> tuple[float, tuple[float, float]]:
    """(median ms, its 95% interval) of what a user waits for: a forward of the example inputs, or for a causal LM
    one decoded token at batch 1 (its card's decode steps), not the prompt's forward."""
    generation = (card.get("llm") or {}).get("generation") or []
    if generation:
        decode = generation[0]["decode"]
        return decode["p50_ms"], tuple(decode["ci95_p50_ms"])
    return card["latency"]["p50_ms"], tuple(card["latency"]["ci95_median_ms"])


def objectives_of(card: dict[str, Any]) -> dict[str, float]:
    """The four objectives a search can minimise, read from a card (as a dict)."""
    return {"latency": latency_of(card)[0], "size": float(card["size"]["disk_bytes"]),
            "energy": card["energy"]["joules_per_1k"], "flops": float(card["flops"]["total"])}


def _interval(objective: str, card: dict[str, Any] | None) -> tuple[float, float] | None:
    if objective == "latency" and card and card.get("latency"):
        lo, hi = latency_of(card)[1]
        return lo * (1 - RUN_TO_RUN_TOLERANCE), hi * (1 + RUN_TO_RUN_TOLERANCE)
    return None


def baseline_candidate(card: dict[str, Any], metric: str, objective: str, artifact: str) -> Candidate:
    """The uncompressed model on the runtime, as a point of the front: what every trade-off is measured against.

    It is never *chosen* (a search hands back a compressed model or says none met the budget), but it belongs on the
    front when no trial is both as accurate and faster, which is exactly when a user should see it there.
    """
    return Candidate("baseline", "uncompressed (fp32)", card["metrics"][metric], objectives_of(card)[objective], 0.0,
                     True, artifact, None, _interval(objective, card), float(card["size"]["disk_bytes"]))


def candidate_from(outcome, metric: str, baseline: float, budget: Budget, objective: str,
                   card: dict[str, Any] | None = None) -> Candidate:
    drop = quality_drop(metric, baseline, outcome.metric)
    return Candidate(outcome.number, outcome.description, outcome.metric, outcome.objectives[objective], drop,
                     budget.allows(metric, baseline, outcome.metric), outcome.artifact, card,
                     _interval(objective, card), outcome.objectives.get("size"))


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

    meets_budget: bool = False  # on the reported split once scored there (test), else on validation


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
    # On test, once the search finished: the chosen model timed interleaved with the baseline on the runtime
    # ("runtime_fp32") and on torch eager ("torch_fp32"), as sizewise.measure.compare Comparisons
    speedups: dict[str, Any] = field(default_factory=dict)
    headline: str = ""  # what the search gained, in one sentence (see :func:`headline`)
    hardware: dict[str, Any] = field(default_factory=dict)  # the instruction sets the chosen plan's speed depends on
    selection_split: str = SELECTION_SPLIT
    reported_split: str = REPORTED_SPLIT
    schema: str = SCHEMA
    kind: str = "shrink"
