"""Shared by the ``sizewise shrink`` benchmarks: a markdown section per search, built from its ``results.json``.

``benchmarks/results/shrink.md`` holds one section per benchmark run between ``<!-- section:KEY -->`` markers, so each
script rewrites only its own section and re-running one benchmark never drops another's numbers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from _common import RESULTS, md_table
from sizewise.core.budget import points

SHRINK_MD = RESULTS / "shrink.md"
TITLE = "# `sizewise shrink` benchmarks"


def replace_section(key: str, text: str, path: Path = SHRINK_MD) -> None:
    begin, end = f"<!-- section:{key} -->", f"<!-- end:{key} -->"
    body = path.read_text() if path.is_file() else TITLE + "\n"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    body = pattern.sub(lambda _: block, body) if pattern.search(body) else body.rstrip() + "\n\n" + block + "\n"
    path.write_text(body)


def card_of(trial: dict[str, Any]) -> dict[str, Any]:
    return trial.get("card") or json.loads((Path(trial["artifact"]) / "card.json").read_text())


def row(name: str, card: dict, metric: str, torch_ms: float, runtime_ms: float, fp32_bytes: int) -> list[str]:
    lat = card["latency"]
    return [name, f"{points(metric, card['metrics'][metric]):.2f}", f"{card['size']['disk_bytes']:,}",
            f"{card['size']['disk_bytes'] / fp32_bytes:.1%}", f"{card['flops']['total']:,}",
            f"{lat['p50_ms']:.3f} [{lat['ci95_median_ms'][0]:.3f}-{lat['ci95_median_ms'][1]:.3f}]",
            f"{torch_ms / lat['p50_ms']:.2f}x", f"{runtime_ms / lat['p50_ms']:.2f}x",
            f"{lat.get('other_load_cores') or 0:.2f}"]


def describe(plan: dict[str, Any]) -> str:
    steps = [plan["prune"] and f"{plan['prune']} {plan['sparsity']:.0%}", plan["quantize"]]
    return " → ".join(filter(None, steps)) or "no compression"


def comparison(results: dict[str, Any]) -> list[str]:
    """The baselines, a plain dynamic-int8 trial if one ran, and the chosen model, measured in the same search."""
    metric = results["metric"]
    base_torch, base_rt = results["baseline"]["torch_fp32"], results["baseline"]["runtime_fp32"]
    torch_ms, rt_ms = base_torch["latency"]["p50_ms"], base_rt["latency"]["p50_ms"]
    fp32_bytes = base_torch["size"]["disk_bytes"]
    runtime = results["config"]["runtime"]
    rows = [row("torch fp32 eager", base_torch, metric, torch_ms, rt_ms, fp32_bytes),
            row(f"{runtime} fp32", base_rt, metric, torch_ms, rt_ms, fp32_bytes)]
    dyn = next((t for t in results["trials"] if t["state"] == "complete" and not t["plan"]["prune"]
                and t["plan"]["quantize"] == "int8-dynamic"), None)
    if dyn:
        rows.append(row(f"{runtime} dynamic int8 (trial {dyn['number']})", card_of(dyn), metric, torch_ms, rt_ms,
                        fp32_bytes))
    chosen = results.get("chosen")
    if chosen:
        rows.append(row(f"**chosen** (trial {chosen['trial']}: {chosen['description']})", chosen["card"], metric,
                        torch_ms, rt_ms, fp32_bytes))
    return md_table(rows, "lrrrrrrrr", columns=["model", metric, "bytes", "% of fp32", "FLOPs", "p50 ms [95% CI]",
                                                "vs torch fp32 eager", f"vs {runtime} fp32", "other load (cores)"])


def trials_table(results: dict[str, Any], objective: str) -> list[str]:
    pareto = {p["trial"] for p in results["pareto"]}
    chosen = (results.get("chosen") or {}).get("trial")
    rows = []
    for t in results["trials"]:
        value = "" if t.get("metric") is None else f"{points(results['metric'], t['metric']):.2f}"
        obj = f"{t['objectives'][objective]:,.4g}" if t.get("objectives") else ""
        mark = "chosen" if t["number"] == chosen else ("yes" if t["number"] in pareto else "")
        rows.append([t["number"], describe(t["plan"]), t["state"], value, obj, mark, t.get("message", "")])
    return md_table(rows, "rllrrcl", columns=["#", "what it did", "state", results["metric"], objective, "Pareto",
                                              "note"])
