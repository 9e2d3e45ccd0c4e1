"""Any run record (``sizewise.run/1``, :mod:`sizewise.pipeline.record`) in the terminal, as report.md, and as one
self-contained report.html: the before/after cards under their roles' names (input/result, teacher/student), the
reference cards, every step with its validation metrics, the verdict, and the per-layer sensitivity plot of a
quantization step that ranked its layers.

Every string that comes from the record (model references, method names, labels, layer names, the command) is
escaped on its way into HTML: a record is data a user may have received from someone else.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from sizewise.core.metrics import primary_metric
from sizewise.measure.card import ModelCard
from sizewise.report.card_view import compare_rows, compare_table, savings_line
from sizewise.report.svg import bars_svg

_STYLE = ("body{font-family:system-ui,-apple-system,\"Segoe UI\",sans-serif;margin:2rem auto;max-width:980px;"
          "color:#24292f;padding:0 1rem} h1{font-size:1.6rem} h2{font-size:1.2rem;margin-top:2rem;"
          "border-bottom:1px solid #d0d7de} table{border-collapse:collapse;width:100%;font-size:.9rem} "
          "th,td{border-bottom:1px solid #eaeef2;padding:.35rem .5rem;text-align:right} "
          "th:first-child,td:first-child{text-align:left} td.text{text-align:left} "
          ".verdict{padding:.8rem 1rem;border-radius:6px;background:#f6f8fa} .ok{background:#dafbe1} "
          ".bad{background:#ffebe9} code{background:#f6f8fa;padding:.1rem .3rem;border-radius:4px} "
          ".muted{color:#57606a;font-size:.85rem}")


def _roles(record: dict[str, Any]) -> tuple[str, str]:
    roles = record.get("roles") or {}
    return str(roles.get("before", "before")), str(roles.get("after", "after"))


def cards(record: dict[str, Any]) -> tuple[ModelCard, ModelCard]:
    return ModelCard.from_dict(record["before"]), ModelCard.from_dict(record["after"])


def title(record: dict[str, Any]) -> str:
    methods = " → ".join(str(s.get("method", "?")) for s in record.get("steps", []))
    return f"sizewise {record.get('kind', 'run')}: {record.get('model', '?')} · {methods}"


def format_metrics(metrics: dict[str, Any] | None) -> str:
    """``accuracy 97.33% (validation, 180 examples)``; empty when nothing was scored."""
    metrics = metrics or {}
    name = primary_metric(metrics)
    if name is None or metrics.get(name) is None:
        return ""
    value = metrics[name]
    shown = f"{value:.2%}" if name == "accuracy" else f"{value:.4g}"
    where = [str(metrics["split"])] if metrics.get("split") else []
    if metrics.get("examples") is not None:
        where.append(f"{int(metrics['examples']):,} examples")
    return f"{name} {shown}" + (f" ({', '.join(where)})" if where else "")


def step_rows(record: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(#, method, what it did, validation metrics, seconds) for every step of the run."""
    return [(str(int(s.get("index", i)) + 1), str(s.get("method", "")), str(s.get("description", "")),
             format_metrics(s.get("metrics")), f"{float(s.get('seconds') or 0):.1f}")
            for i, s in enumerate(record.get("steps", []))]


def sensitivity_of(record: dict[str, Any]) -> tuple[str, list[dict[str, Any]], list[str]]:
    """The step that ranked its layers (a quantization that fell back): its label, rows and kept-in-float layers."""
    for i, s in enumerate(record.get("steps", [])):
        details = s.get("details") or {}
        rows = details.get("sensitivity") or []
        if rows:
            return f"step {i + 1} ({s.get('method', '')})", rows, list(details.get("kept_in_float") or [])
    return "", [], []


def _warnings(record: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for card in (record.get("before") or {}, record.get("after") or {}, *(record.get("references") or {}).values()):
        found += [str(w) for w in card.get("warnings") or []]
    return list(dict.fromkeys(found))


def _reference_pairs(record: dict[str, Any]) -> list[tuple[str, ModelCard]]:
    before_name, _ = _roles(record)
    return [(f"{before_name} on {runtime}", ModelCard.from_dict(card))
            for runtime, card in (record.get("references") or {}).items()]


def _verdict(record: dict[str, Any]) -> tuple[str, bool | None]:
    verdict = record.get("verdict") or {}
    return str(verdict.get("message", "no verdict")), verdict.get("meets_budget")


# -- terminal -------------------------------------------------------------------------------------------------------

def print_record(record: dict[str, Any], console) -> None:
    """The run in the terminal: before/after, references, steps, verdict, warnings."""
    from rich.table import Table

    before, after = cards(record)
    before_name, after_name = _roles(record)
    console.print(compare_table(before, after, title=title(record), before_name=before_name, after_name=after_name))
    console.print(savings_line(before, after), highlight=False)
    for name, card in _reference_pairs(record):
        console.print(compare_table(card, after, title=f"{name} → {after_name}", before_name=name,
                                    after_name=after_name))
    steps = Table(title="steps (metrics on the validation split)", title_justify="left")
    for header in ("#", "method", "what it did", "validation", "seconds"):
        steps.add_column(header, justify="left" if header in ("method", "what it did", "validation") else "right")
    for row in step_rows(record):
        steps.add_row(*row)
    console.print(steps)
    label, rows, kept = sensitivity_of(record)
    if rows:
        table = Table(title=f"per-layer sensitivity, {label}, most sensitive first", title_justify="left")
        for col in ("layer", "op", "output error", "metric drop (points)"):
            table.add_column(col, justify="left" if col in ("layer", "op") else "right")
        for row in rows[:12]:
            drop = row.get("metric_drop")
            table.add_row(str(row.get("node", "")), str(row.get("op_type", "")), f"{row.get('output_error', 0):.3g}",
                          "" if drop is None else f"{drop:.2f}")
        console.print(table)
        if kept:
            console.print(f"kept in float: {', '.join(kept)}", highlight=False)
    message, ok = _verdict(record)
    style = {True: "green", False: "red"}.get(ok)
    console.print(f"[{style}]{message}[/]" if style else message, highlight=False)
    for warning in _warnings(record):
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


# -- Markdown ---------------------------------------------------------------------------------------------------------

def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(record: dict[str, Any]) -> str:
    before, after = cards(record)
    before_name, after_name = _roles(record)
    message, _ = _verdict(record)
    lines = [f"# {_md(title(record))}", "", f"**{_md(message)}**", "",
             f"Model: `{_md(record.get('model', ''))}` · result: `{_md(record.get('model_dir', ''))}`", "",
             f"| | {_md(before_name)} | {_md(after_name)} | ratio |", "|---|---:|---:|---:|"]
    lines += [f"| {' | '.join(_md(c) for c in row)} |" for row in compare_rows(before, after)]
    lines += ["", _md(savings_line(before, after))]
    for name, card in _reference_pairs(record):
        lines += ["", f"### {_md(name)} → {_md(after_name)}", "", f"| | {_md(name)} | {_md(after_name)} | ratio |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {' | '.join(_md(c) for c in row)} |" for row in compare_rows(card, after)]
    lines += ["", "## Steps", "", "| # | method | what it did | validation | seconds |", "|---:|---|---|---|---:|"]
    lines += [f"| {' | '.join(_md(c) for c in row)} |" for row in step_rows(record)]
    label, rows, kept = sensitivity_of(record)
    if rows:
        lines += ["", f"## Per-layer sensitivity ({_md(label)})", "", "| layer | op | output error | metric drop |",
                  "|---|---|---:|---:|"]
        lines += [f"| {_md(r.get('node', ''))} | {_md(r.get('op_type', ''))} | {r.get('output_error', 0):.3g} | "
                  f"{'' if r.get('metric_drop') is None else format(r['metric_drop'], '.2f')} |" for r in rows]
        lines += ["", f"Kept in float: {_md(', '.join(kept) or 'none')}"]
    lines += ["", *(f"- warning: {_md(w)}" for w in _warnings(record))]
    lines += ["", _environment_text(record), "", f"Command: `{_md(record.get('command', ''))}`", ""]
    return "\n".join(lines)


def _environment_text(record: dict[str, Any]) -> str:
    env = record.get("environment") or {}
    flags = " ".join(str(k) for k, v in (env.get("cpu_flags") or {}).items() if v)
    libs = ", ".join(f"{k} {v}" for k, v in (env.get("libraries") or {}).items())
    return (f"Measured on {env.get('cpu', 'this machine')} · {env.get('logical_cores', '?')} logical cores"
            f"{' · VM' if env.get('virtual_machine') else ''}{f' · {flags}' if flags else ''}"
            f"{f' · {libs}' if libs else ''}; both cards the same way, in the same run.")


# -- HTML -------------------------------------------------------------------------------------------------------------

def sensitivity_section(rows: list[dict], table_rows: str,
                        headers: tuple[str, ...] = ("layer", "op", "relative output error")) -> str:
    """The per-layer sensitivity plot and table (``table_rows``: escaped ``<tr>`` rows under ``headers``), or a line
    saying why there is none. Shared by the run report and the shrink report."""
    if not rows:
        return '<p class="muted">Not computed for this runtime.</p>'
    chart = bars_svg([(str(s["node"]), float(s["output_error"])) for s in rows],
                     "relative output error, this layer alone in int8")
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return (f'<figure id="sensitivity">{chart}<figcaption class="muted">Each layer quantized alone; the longest bars '
            f'are the layers the fallback keeps in float first.</figcaption></figure>'
            f'<table><tr>{head}</tr>{table_rows}</table>')


_SENSITIVITY_HEADERS = ("layer", "op", "relative output error", "metric drop (points)")


def _sensitivity_row(s: dict) -> str:
    drop = "" if s.get("metric_drop") is None else f"{s['metric_drop']:.2f}"
    return (f"<tr><td>{escape(str(s.get('node', '')))}</td><td class=text>{escape(str(s.get('op_type', '')))}</td>"
            f"<td>{float(s.get('output_error', 0)):.3g}</td><td>{drop}</td></tr>")


def _compare_html(a: ModelCard, b: ModelCard, a_name: str, b_name: str) -> str:
    rows = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in compare_rows(a, b))
    return (f"<table><tr><th></th><th>{escape(a_name)}</th><th>{escape(b_name)}</th><th>ratio</th></tr>{rows}"
            f"</table><p>{escape(savings_line(a, b))}</p>")


def to_html(record: dict[str, Any]) -> str:
    before, after = cards(record)
    before_name, after_name = _roles(record)
    message, ok = _verdict(record)
    banner = {True: "ok", False: "bad"}.get(ok, "")
    references = "".join(f"<h3>{escape(name)} → {escape(after_name)}</h3>"
                         f"{_compare_html(card, after, name, after_name)}" for name, card in _reference_pairs(record))
    steps = "".join("<tr>" + "".join(f"<td{' class=text' if 0 < i < 4 else ''}>{escape(c)}</td>"
                                     for i, c in enumerate(row)) + "</tr>" for row in step_rows(record))
    label, rows, kept = sensitivity_of(record)
    sensitivity = ""
    if rows:
        table_rows = "".join(_sensitivity_row(r) for r in rows)
        sensitivity = (f"<h2>Per-layer sensitivity ({escape(label)})</h2>"
                       f"{sensitivity_section(rows, table_rows, _SENSITIVITY_HEADERS)}"
                       f"<p>Kept in float: {escape(', '.join(kept) or 'none')}</p>")
    data = record.get("data") or {}
    data_line = "<p>No data: accuracy not checked.</p>"
    if data:
        data_line = (f"<p>Data: {escape(str(data.get('name', '')))} · decisions on the "
                     f"{escape(str(data.get('decisions', '')))} split, reported on the "
                     f"{escape(str(data.get('reported', '')))} split</p>")
    warnings = "".join(f"<li>{escape(w)}</li>" for w in _warnings(record))
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title(record))}</title>'
            f"<style>{_STYLE}</style></head><body>\n<h1>{escape(title(record))}</h1>\n"
            f'<p class="verdict {banner}"><strong>{escape(message)}</strong></p>\n'
            f"<p>Model: <code>{escape(str(record.get('model', '')))}</code> · result: "
            f"<code>{escape(str(record.get('model_dir', '')))}</code></p>{data_line}\n"
            f"<h2>{escape(before_name)} → {escape(after_name)}</h2>"
            f"{_compare_html(before, after, before_name, after_name)}"
            f"{references}\n<h2>Steps</h2><table><tr><th>#</th><th>method</th><th>what it did</th>"
            f"<th>validation</th><th>seconds</th></tr>{steps}</table>\n{sensitivity}\n"
            f"{f'<h2>Warnings</h2><ul>{warnings}</ul>' if warnings else ''}"
            f'<h2>Environment</h2><p class="muted">{escape(_environment_text(record))}</p>'
            f"<p>Command: <code>{escape(str(record.get('command', '')))}</code></p>\n</body></html>\n")


def write_reports(directory: str | Path, record: dict[str, Any]) -> list[Path]:
    """``DIR/report.md`` and ``DIR/report.html`` of the run record."""
    from sizewise.core.serialize import write_text_atomic

    directory = Path(directory)
    return [write_text_atomic(directory / "report.md", to_markdown(record)),
            write_text_atomic(directory / "report.html", to_html(record))]


__all__ = ["format_metrics", "print_record", "sensitivity_section", "to_html",
           "to_markdown", "write_reports"]
