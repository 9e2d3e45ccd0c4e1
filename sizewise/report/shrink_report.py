"""The shrink report: OUT/report.html (one self-contained file) and OUT/report.md, from OUT/results.json.

The before/after table holds the reported numbers (test split); the Pareto plot and the trials table hold what the
search decided on (validation split), and the report says which is which.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from sizewise.core.budget import points
from sizewise.core.units import format_bytes, format_flops
from sizewise.pipeline.results import format_objective, hardware_note, latency_of, trial_note
from sizewise.report.run_report import sensitivity_section
from sizewise.report.svg import Point, scatter_svg

_OBJECTIVE = {"latency": ("latency p50 (ms; per decoded token for a causal LM)", lambda c: latency_of(c)[0]),
              "size": ("bytes on disk", lambda c: c["size"]["disk_bytes"]),
              "energy": ("energy (J per 1,000 inferences)", lambda c: c["energy"]["joules_per_1k"]),
              "flops": ("FLOPs per forward", lambda c: c["flops"]["total"])}


def _get(results: Any, key: str) -> Any:
    return results[key] if isinstance(results, dict) else getattr(results, key)


def _as_dict(results: Any) -> dict:
    from sizewise.core.serialize import to_dict

    return results if isinstance(results, dict) else to_dict(results)


def comparison_rows(r: dict) -> list[tuple[str, dict | None]]:
    """The reported rows, on the test split (cards are None until the search finished)."""
    chosen = r.get("chosen") or {}
    return [("fp32, torch eager", r["baseline"].get("torch_fp32")),
            (f"fp32, {r['config']['runtime']}", r["baseline"].get("runtime_fp32")),
            (f"chosen: trial {chosen.get('trial')} ({chosen.get('description', '')})",
             (chosen.get("test") or {}).get("card"))]


def _meets_budget(r: dict) -> bool | None:
    """On test when it was scored there, else on validation (the search was interrupted)."""
    chosen = r.get("chosen") or {}
    return (chosen.get("test") or chosen.get("validation") or {}).get("meets_budget")


def _splits_note(r: dict) -> str:
    tested = ((r.get("chosen") or {}).get("test")) is not None
    note = (f"Trials were compared and the model chosen on the {r.get('selection_split', 'validation')} split; "
            f"the before/after numbers are on the {r.get('reported_split', 'test')} split, scored once.")
    return note if tested else note + " The test split was not scored: the search did not finish."


def _cells(metric: str, card: dict | None, base: dict | None) -> list[str]:
    if not card or not base:
        return ["–"] * 6
    speed = latency_of(base)[0] / latency_of(card)[0]
    return [f"{points(metric, card['metrics'][metric]):.2f}", format_bytes(card["size"]["disk_bytes"]),
            format_flops(card["flops"]["total"]), f"{latency_of(card)[0]:.3f} ms", f"{speed:.2f}×",
            f"{card['energy']['joules_per_1k']:.3g} J"]


def _plot(r: dict) -> str:
    label, of = _OBJECTIVE[r["objective"]]
    metric = r["metric"]
    pareto = {c["trial"] for c in r["pareto"]}
    chosen = (r.get("chosen") or {}).get("trial")
    pts = []
    for t in r["trials"]:
        if t["state"] != "complete":
            continue
        kind = "chosen" if t["number"] == chosen else ("pareto" if t["number"] in pareto else "trial")
        pts.append(Point(t["objectives"][r["objective"]], points(metric, t["metric"]),
                         f"trial {t['number']}: {t['description']}", kind))
    base = r["baseline"]["validation"]
    pts.append(Point(of(base), points(metric, base["metrics"][metric]), "baseline (fp32)", "baseline"))
    budget_line = points(metric, base["metrics"][metric]) - _allowed(r)
    return scatter_svg(pts, label, f"{metric} on validation (points)", hline=budget_line, hline_label="budget")


def _allowed(r: dict) -> float:
    from sizewise.core.budget import Budget

    b = r["config"]["max_drop"]
    base = r["baseline"]["validation"]["metrics"][r["metric"]]
    return Budget(b["value"], b["absolute"]).allowed_drop(r["metric"], base)


def _trial_row(t: dict, metric: str, objective: str) -> str:
    value = "" if t.get("metric") is None else f"{points(metric, t['metric']):.2f}"
    cost = format_objective(objective, t["objectives"][objective]) if t.get("objectives") else ""
    return (f"<tr><td>{t['number']}</td><td>{escape(t['description'])}</td><td>{t['state']}</td>"
            f"<td>{value}</td><td>{cost}</td><td>{t['seconds']:.1f}</td><td>{escape(trial_note(t))}</td></tr>")


def _speedup_lines(r: dict) -> list[str]:
    """The interleaved timings of the chosen model against each fp32 baseline (test split), one line each."""
    names = {"runtime_fp32": f"fp32 on {r['config']['runtime']}", "torch_fp32": "fp32 torch eager"}
    lines = []
    for key, comp in (r.get("speedups") or {}).items():
        verdict = comp["verdict"].replace("B is", "the chosen model is").replace("of A", "of the baseline")
        lines.append(f"against {names.get(key, key)}: {verdict} ({comp['rounds']} interleaved rounds, "
                     f"{comp['threads']} thread(s))")
    return lines


def render_html(r: dict) -> str:
    metric = r["metric"]
    ok = _meets_budget(r)
    banner = ("ok", "✔ ") if ok else ("bad", "✘ ")
    base = r["baseline"].get("torch_fp32")
    rows = "".join(f"<tr><th>{escape(name)}</th>{''.join(f'<td>{c}</td>' for c in _cells(metric, card, base))}</tr>"
                   for name, card in comparison_rows(r))
    trials = "".join(_trial_row(t, metric, r["objective"]) for t in r["trials"])
    sens = "".join(f"<tr><td>{escape(s['node'])}</td><td>{escape(s['op_type'])}</td>"
                   f"<td>{s['output_error']:.3g}</td></tr>" for s in r.get("sensitivity", []))
    env = r.get("environment", {})
    flags = " ".join(k for k, v in env.get("cpu_flags", {}).items() if v)
    libs = ", ".join(f"{k} {v}" for k, v in env.get("libraries", {}).items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sizewise shrink report</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:980px;color:#24292f;
padding:0 1rem}} h1{{font-size:1.6rem}} h2{{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7de}}
table{{border-collapse:collapse;width:100%;font-size:.9rem}} th,td{{border-bottom:1px solid #eaeef2;padding:.35rem .5rem;
text-align:right}} th:first-child,td:nth-child(2){{text-align:left}} .verdict{{padding:.8rem 1rem;border-radius:6px}}
.ok{{background:#dafbe1}} .bad{{background:#ffebe9}} code{{background:#f6f8fa;padding:.1rem .3rem;border-radius:4px}}
.muted{{color:#57606a;font-size:.85rem}}
</style></head><body>
<h1>sizewise shrink report</h1>
<p class="verdict {banner[0]}"><strong>{banner[1]}{escape(r.get('headline') or r['verdict'])}</strong>
{('<br>' + escape(r['verdict'])) if r.get('headline') else ''}
{'<br>The search was interrupted; re-run the same command to resume.' if r.get('interrupted') else ''}</p>
<p>Objective: <strong>{escape(r['objective'])}</strong> on <strong>{escape(r['config']['runtime'])}</strong>,
accuracy budget: at most {_allowed(r):.2f} points of {escape(metric)} lost.</p>
<p class="muted">{escape(_splits_note(r))}</p>
<h2>Before and after (test split)</h2>
<table><tr><th></th><th>{escape(metric)}</th><th>disk</th><th>FLOPs</th><th>latency p50</th>
<th>speed vs torch fp32</th><th>energy / 1k</th></tr>{rows}</table>
{"".join(f"<p>{escape(line)}</p>" for line in _speedup_lines(r))}
<p class="muted">All measured on this machine in this run; the speed column divides medians measured one after the
other; the lines above time the models interleaved, which is what a speed-up is claimed on. FLOP = 2 × multiply-accumulate.
Energy is {escape(((r['baseline'].get('torch_fp32') or {}).get('energy') or {}).get('method', 'n/a'))}.</p>
<h2>Pareto front (validation split)</h2>
<figure id="pareto">{_plot(r)}<figcaption class="muted">Grey: trials; blue: the Pareto front ({len(r['pareto'])} points{
", the baseline among them" if any(c["trial"] == "baseline" for c in r["pareto"]) else ""});
red star: chosen; black square: the fp32 baseline; dashed: the budget.</figcaption></figure>
<h2>Per-layer sensitivity to int8</h2>
{sensitivity_section(r.get("sensitivity", []), sens)}
<h2>Trials</h2>
<table><tr><th>#</th><th>what it did</th><th>state</th><th>{escape(metric)} (validation)</th><th>{escape(r['objective'])}</th>
<th>seconds</th><th>note</th></tr>{trials}</table>
<h2>Environment</h2>
<p>{escape(str(env.get('cpu')))} · {env.get('logical_cores')} logical cores · threads {env.get('threads')} ·
{'VM · ' if env.get('virtual_machine') else ''}{escape(flags)}<br>{escape(libs)}</p>
{f"<p>{escape(hardware_note(r['hardware']))}</p>" if r.get('hardware') else ''}
<p>Command: <code>{escape(r['command'])}</code></p>
</body></html>
"""


def render_markdown(r: dict) -> str:
    metric = r["metric"]
    base = r["baseline"].get("torch_fp32")
    lines = ["# sizewise shrink report", "", f"**{r.get('headline') or r['verdict']}**", "",
             *([r["verdict"], ""] if r.get("headline") else []),
             f"Objective: {r['objective']} on {r['config']['runtime']}; budget: at most {_allowed(r):.2f} points of "
             f"{metric} lost.", "", _splits_note(r), "", "## Before and after (test split)", "",
             f"| | {metric} | disk | FLOPs | latency p50 | speed vs torch fp32 | energy / 1k |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, card in comparison_rows(r):
        lines.append(f"| {name} | " + " | ".join(_cells(metric, card, base)) + " |")
    lines += ["", *(f"- {line}" for line in _speedup_lines(r))]
    if r.get("hardware"):
        lines += ["", hardware_note(r["hardware"])]
    lines += ["", "## Pareto front (validation split)", "", f"| trial | what it did | {metric} | {r['objective']} |",
              "|---:|---|---:|---:|"]
    lines += [f"| {c['trial']} | {c['description']} | {points(metric, c['metric']):.2f} | "
              f"{format_objective(r['objective'], c['objective'])} |" for c in r["pareto"]]
    lines += ["", "## Trials", "", f"| # | what it did | state | {metric} (validation) | seconds | note |",
              "|---:|---|---|---:|---:|---|"]
    for t in r["trials"]:
        value = "" if t.get("metric") is None else f"{points(metric, t['metric']):.2f}"
        lines.append(f"| {t['number']} | {t['description']} | {t['state']} | {value} | {t['seconds']:.1f} | "
                     f"{trial_note(t)} |")
    lines += ["", f"Command: `{r['command']}`", ""]
    return "\n".join(lines)


def render_reports(out: Path, results: Any) -> tuple[Path, Path]:
    r = _as_dict(results)
    from sizewise.core.serialize import write_text_atomic

    return (write_text_atomic(Path(out) / "report.html", render_html(r)),
            write_text_atomic(Path(out) / "report.md", render_markdown(r)))


def rerender(out: Path) -> tuple[Path, Path]:
    return render_reports(out, json.loads((Path(out) / "results.json").read_text(encoding="utf-8")))


def shrink(model: str, data: str, out: str | Path, config=None, **kwargs):
    """``sizewise.shrink``: the search (:func:`sizewise.pipeline.shrink`) plus OUT/report.html and OUT/report.md."""
    from sizewise.pipeline import shrink as search

    return search(model, data, out, config, finalize=render_reports, **kwargs)
