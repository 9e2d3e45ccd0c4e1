"""Shared by the ``sizewise shrink`` benchmarks: a markdown section per search, built from its ``results.json``.

``benchmarks/results/shrink.md`` holds one section per benchmark run between ``<!-- section:KEY -->`` markers, so each
script rewrites only its own section and re-running one benchmark never drops another's numbers.

``results.json`` is schema ``sizewise.shrink/2``: every trial is scored on the validation split (its ``card.json`` is a
run record whose ``after`` card is on validation), the choice is made there, and only the baselines
(``baseline.torch_fp32`` / ``baseline.runtime_fp32``) and the chosen model (``chosen.test.card``) are measured on the
test split. Tables say which split each number is on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from _common import RESULTS, md_table
from sizewise.core.budget import points
from sizewise.pipeline.results import format_objective, trial_note

SHRINK_MD = RESULTS / "shrink.md"
TITLE = "# `sizewise shrink` benchmarks"


def replace_section(key: str, text: str, path: Path = SHRINK_MD) -> None:
    begin, end = f"<!-- section:{key} -->", f"<!-- end:{key} -->"
    body = path.read_text() if path.is_file() else TITLE + "\n"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    body = pattern.sub(lambda _: block, body) if pattern.search(body) else body.rstrip() + "\n\n" + block + "\n"
    path.write_text(body)


def card_of(trial: dict[str, Any]) -> dict[str, Any] | None:
    """A trial's card: the ``after`` card of its run record (on the validation split); None for a trial that wrote
    none (stopped by the proxy before its measurement, or failed)."""
    if trial.get("card"):
        return trial["card"]
    path = Path(trial["artifact"]) / "card.json" if trial.get("artifact") else None
    if path is None or not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record["after"] if "after" in record else record  # a bare card: a search made before the run record


def chosen_card(results: dict[str, Any]) -> dict[str, Any] | None:
    """The chosen model's card on the test split (the reported one); None when the search did not finish."""
    chosen = results.get("chosen") or {}
    return (chosen.get("test") or {}).get("card")


def row(name: str, card: dict, metric: str, torch_ms: float, runtime_ms: float, fp32_bytes: int,
        split: str = "test") -> list[str]:
    lat = card["latency"]
    value = f"{points(metric, card['metrics'][metric]):.2f}" + ("" if split == "test" else f" ({split})")
    return [name, value, f"{card['size']['disk_bytes']:,}",
            f"{card['size']['disk_bytes'] / fp32_bytes:.1%}", f"{card['flops']['total']:,}",
            f"{lat['p50_ms']:.3f} [{lat['ci95_median_ms'][0]:.3f}-{lat['ci95_median_ms'][1]:.3f}]",
            f"{torch_ms / lat['p50_ms']:.2f}x", f"{runtime_ms / lat['p50_ms']:.2f}x",
            f"{lat.get('other_load_cores') or 0:.2f}"]


def methods_of(plan: dict[str, Any] | None) -> list[str]:
    """The method names of a trial's plan (a ``Plan.to_dict()``; None when every slot sampled none)."""
    return [step["method"] for step in (plan or {}).get("steps", [])]


def describe(trial: dict[str, Any]) -> str:
    """What a trial did: its plan's description, as the search wrote it."""
    return trial.get("description") or " → ".join(methods_of(trial.get("plan"))) or "no compression"


def comparison(results: dict[str, Any]) -> list[str]:
    """The baselines, a plain dynamic-int8 trial if one ran, and the chosen model, measured in the same search.

    The baselines and the chosen model are on the test split, measured one after the other once the search ended;
    the dynamic-int8 trial's row is its own trial card (validation split, measured during the search)."""
    metric = results["metric"]
    base_torch, base_rt = results["baseline"]["torch_fp32"], results["baseline"]["runtime_fp32"]
    torch_ms, rt_ms = base_torch["latency"]["p50_ms"], base_rt["latency"]["p50_ms"]
    fp32_bytes = base_torch["size"]["disk_bytes"]
    runtime = results["config"]["runtime"]
    rows = [row("torch fp32 eager", base_torch, metric, torch_ms, rt_ms, fp32_bytes),
            row(f"{runtime} fp32", base_rt, metric, torch_ms, rt_ms, fp32_bytes)]
    dyn = next((t for t in results["trials"] if t["state"] == "complete" and methods_of(t["plan"]) == ["int8-dynamic"]),
               None)
    if dyn:
        rows.append(row(f"{runtime} dynamic int8 (trial {dyn['number']})", card_of(dyn), metric, torch_ms, rt_ms,
                        fp32_bytes, split=results.get("selection_split", "validation")))
    chosen, card = results.get("chosen"), chosen_card(results)
    if chosen and card:
        rows.append(row(f"**chosen** (trial {chosen['trial']}: {chosen['description']})", card, metric,
                        torch_ms, rt_ms, fp32_bytes))
    return md_table(rows, "lrrrrrrrr", columns=["model", metric, "bytes", "% of fp32", "FLOPs", "p50 ms [95% CI]",
                                                "vs torch fp32 eager", f"vs {runtime} fp32", "other load (cores)"])


def trials_table(results: dict[str, Any], objective: str) -> list[str]:
    pareto = {p["trial"] for p in results["pareto"]}
    chosen = (results.get("chosen") or {}).get("trial")
    rows = []
    for t in results["trials"]:
        value = "" if t.get("metric") is None else f"{points(results['metric'], t['metric']):.2f}"
        obj = format_objective(objective, t["objectives"][objective]) if t.get("objectives") else ""
        mark = "chosen" if t["number"] == chosen else ("yes" if t["number"] in pareto else "")
        rows.append([t["number"], describe(t), t["state"], value, obj, mark, trial_note(t)])
    split = results.get("selection_split", "validation")
    return md_table(rows, "rllrrcl", columns=["#", "what it did", "state", f"{results['metric']} ({split})",
                                              objective, f"Pareto ({split})", "note"])
