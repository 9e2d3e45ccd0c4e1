"""One view of an estimate, three renderings: the terminal (rich), Markdown and a self-contained HTML page.

Everything renders from the JSON form (``Estimate.to_dict()`` or the file ``--json`` wrote), so ``sizewise report``
shows exactly what ``sizewise estimate`` printed without recomputing. The view is built once as plain
``(title, headers, rows)`` tables, which keeps the three renderings from drifting apart.
"""

from __future__ import annotations

import dataclasses
import html
import math
from typing import Any

from sizewise.core.units import format_bytes, format_count

PRECISIONS = ("fp32", "fp16", "int8", "int4")


@dataclasses.dataclass(frozen=True)
class ViewTable:
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""


@dataclasses.dataclass(frozen=True)
class View:
    title: str
    lines: tuple[str, ...]
    tables: tuple[ViewTable, ...]
    notes: tuple[str, ...]


def _na(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def sci(value: float | None, unit: str = "") -> str:
    if _na(value):
        return "n/a"
    mantissa, exponent = f"{value:.3e}".split("e")
    return f"{float(mantissa):.3g}e{int(exponent)} {unit}".rstrip()


def energy(kwh: float | None) -> str:
    if _na(kwh):
        return "n/a"
    return f"{kwh / 1000:,.4g} MWh" if kwh >= 1000 else f"{kwh:,.4g} kWh"


def mass(kg: float | None) -> str:
    if _na(kg):
        return "n/a"
    return f"{kg / 1000:,.4g} t CO2e" if kg >= 1000 else f"{kg:,.4g} kg CO2e"


def usd(value: float | None) -> str:
    if _na(value):
        return "n/a"
    if value >= 1e6:
        return f"${value / 1e6:,.3g}M"
    return f"${value:,.0f}" if value >= 100 else f"${value:,.2f}"


def duration(hours: float) -> str:
    if hours >= 24 * 365:
        return f"{hours / (24 * 365):,.3g} years"
    if hours >= 48:
        return f"{hours / 24:,.3g} days"
    if hours >= 1:
        return f"{hours:,.3g} h"
    return f"{hours * 60:,.3g} min" if hours >= 1 / 60 else f"{hours * 3600:,.3g} s"


def build_view(d: dict[str, Any]) -> View:
    p, mem, tr, inf = d["params"], d["memory"], d["training"], d["inference"]
    lines = [f"{format_count(p['total'])} parameters ({p['total']:,}), {p['method']}: {p['detail']}"]
    if p.get("non_embedding") is not None:
        lines.append(f"non-embedding {format_count(p['non_embedding'])} ({p['non_embedding']:,})")
    if p.get("published") is not None and p["method"] != "published":
        lines.append(f"published: {format_count(p['published'])} ({p['published_source']})")

    seq = mem.get("seq_len")
    kv = mem.get("kv_cache_bytes")
    memory_rows = tuple(
        (prec, format_bytes(mem["weights_bytes"][prec]), format_bytes(mem["inference_bytes"][prec]))
        for prec in PRECISIONS
    )
    if kv == 0:
        kv_text = "inference = weights (an encoder keeps no KV cache)"
    elif kv is None:
        kv_text = "inference = weights (KV cache n/a: the layer sizes are unknown)"
    else:
        kv_text = (f"inference = weights + KV cache ({'n/a' if kv is None else format_bytes(kv)} in fp16 at batch "
                   f"{mem['batch']} x {seq or 'n/a'} tokens)")
    memory_caption = (f"{kv_text}. Training: {format_bytes(mem['training_state_bytes'])} state (16 B/param) + "
                      f"{'n/a' if mem['activation_bytes'] is None else format_bytes(mem['activation_bytes'])} "
                      f"activations = {format_bytes(mem['training_bytes'])}")
    memory_table = ViewTable("Memory", ("precision", "weights", "inference"), memory_rows, memory_caption)

    fit_rows = tuple(
        (row["name"], format_bytes(row["memory_bytes"]), *("yes" if row["fits"][prec] else "no" for prec in PRECISIONS))
        for row in d["fits"]
    )
    fits_table = ViewTable("Fits on (inference)", ("device", "memory", *PRECISIONS), fit_rows,
                           f"fits = weights x {1 + d['fits_overhead']:.2g} <= device memory")

    unit = tr["tokens_unit"]
    power = tr["device_power_w"]
    training_rows = (
        ("data", f"{format_count(tr['tokens'])} {unit}s", tr["tokens_source"]),
        ("compute", sci(tr["flops"], "FLOP"), tr["flops_formula"]),
        ("hardware", f"{tr['devices']:,} x {tr['hardware']}",
         f"{tr['hardware_name']}, {tr['peak_flops_per_device'] / 1e12:,.4g} TFLOP/s peak each; "
         + (f"{tr['min_devices_for_memory']:,} needed to hold the training state" if tr["devices_source"] == "given"
            else "the fewest that hold the training state")),
        ("utilization", f"{tr['mfu']:.1%}", tr["mfu_source"]),
        ("time", duration(tr["hours"]), f"{tr['hours']:,.4g} wall-clock hours"),
        ("energy", energy(tr["energy_kwh"]),
         "n/a" if power is None else f"{tr['devices']:,} x {power:,.4g} W x {tr['hours']:,.4g} h x PUE {tr['pue']:g}"),
        ("CO2e", mass(tr["co2e_kg"]), f"{tr['grid_intensity_g_per_kwh']:,.4g} gCO2e/kWh ({tr['grid_source']})"),
        ("cost", usd(tr["cost_usd"]),
         "n/a" if tr["price_per_device_hour"] is None
         else f"{tr['devices']:,} x {tr['hours']:,.4g} h x ${tr['price_per_device_hour']:g}/device-hour "
              f"({tr['price_source']})"),
        ("inference", f"{sci(inf['flops_per_token'], 'FLOP')} per {inf['unit']}", inf["formula"]),
    )
    training_table = ViewTable("Training and serving", ("", "estimate", "basis"), training_rows)
    decode_table = _decode_table(d.get("decode"))  # absent in estimates written before it existed

    assumption_rows = tuple(
        (a["name"], _value(a["value"]), a["unit"], a["source"] + (f" ({a['year']})" if a.get("year") else ""))
        for a in d["assumptions"]
    )
    assumptions = ViewTable("Assumptions and constants used", ("name", "value", "unit", "source"), assumption_rows)
    tables = (memory_table, fits_table, training_table, *([decode_table] if decode_table else []), assumptions)
    return View(f"sizewise estimate: {d['model']}", tuple(lines), tables, tuple(d.get("notes", ())))


def rate(value: float | None) -> str:
    if _na(value):
        return "n/a"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _decode_table(dec: dict[str, Any] | None) -> ViewTable | None:
    """Decode tokens/s per precision, labelled as the upper bound it is; none for models that do not decode."""
    if not dec or not dec.get("applies"):
        return None
    bw = dec["bandwidth_bytes_per_s"]
    tokens = dec.get("tokens_per_s") or {}
    rows = tuple((prec, format_bytes(dec["bytes_per_step"][prec]),
                  rate(tokens.get(prec)) if bw is not None else "n/a (bandwidth unknown)") for prec in PRECISIONS)
    source = dec["bandwidth_source"]  # says "bandwidth unknown: ..." when there is none
    bandwidth = source if bw is None else f"bandwidth {bw / 1e9:,.4g} GB/s ({source})"
    kv = dec["kv_cache_bytes"]["fp16"]
    caption = (f"{bandwidth}. Upper-bound estimate, not a measurement: "
               f"tokens/s = batch x bandwidth / (weights + KV cache), every byte read once per step, at batch "
               f"{dec['batch']}, context {dec['context']:,} tokens, KV cache {format_bytes(kv)} in fp16 (fp32 for "
               "fp32); compute and overheads ignored, so real decoding reaches only part of it")
    return ViewTable("Decode (estimate: bandwidth roofline)", ("precision", "bytes per step", "tokens/s (upper bound)"),
                     rows, caption)


def _value(v: Any) -> str:
    if isinstance(v, float) and (abs(v) >= 1e6 or (v and abs(v) < 1e-3)):
        return sci(v)
    if isinstance(v, int) and abs(v) >= 1e6:
        return f"{v:,}"
    return "n/a" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def print_view(d: dict[str, Any], console: Any = None) -> None:
    """The compact terminal view: what fits where and a cost summary; assumptions in one dim table."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    view = build_view(d)
    console.print(f"[bold]{_escape(view.title)}[/]", highlight=False)
    for line in view.lines:
        console.print(f"  {_escape(line)}", highlight=False)
    for table in view.tables:
        is_assumptions = table is view.tables[-1]
        t = Table(title=table.title, title_justify="left", show_edge=False, expand=False,
                  style="dim" if is_assumptions else None)
        for header in table.headers:
            t.add_column(header, overflow="fold")
        for row in table.rows:
            t.add_row(*(_mark(c) for c in row))
        console.print(t)
        if table.caption:  # outside the table: a rich caption would wrap to the table's width
            console.print(f"[dim]{_escape(table.caption)}[/]", highlight=False)
    for note in view.notes:
        console.print(f"[yellow]note:[/] {_escape(note)}", highlight=False)


def _escape(text: str) -> str:
    return text.replace("[", r"\[")


def _mark(cell: str) -> str:
    return {"yes": "[green]yes[/]", "no": "[red]no[/]"}.get(cell, _escape(cell))


def _md_cell(cell: str) -> str:
    return cell.replace("|", r"\|").replace("\n", " ")


def to_markdown(d: dict[str, Any]) -> str:
    view = build_view(d)
    out = [f"# {view.title}", "", d.get("description", ""), ""]
    out += [f"- {line}" for line in view.lines]
    for table in view.tables:
        out += ["", f"## {table.title}", "", "| " + " | ".join(table.headers) + " |",
                "|" + "|".join("---" for _ in table.headers) + "|"]
        out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
        if table.caption:
            out += ["", table.caption]
    if view.notes:
        out += ["", "## Notes", ""] + [f"- {note}" for note in view.notes]
    out += ["", f"_{d.get('schema', '')}, created {d.get('created', '')}_", ""]
    return "\n".join(out)


_CSS = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:72rem;
padding:0 1rem;color:#1f2328}h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:1.8rem}
table{border-collapse:collapse;margin:.4rem 0}th,td{border:1px solid #d0d7de;padding:.25rem .6rem;text-align:left;
vertical-align:top}th{background:#f6f8fa}td.yes{background:#dafbe1}td.no{background:#ffebe9}
.caption,.meta{color:#59636e;font-size:.9rem}.note{color:#9a6700}"""


def to_html(d: dict[str, Any]) -> str:
    """A single file with inline CSS: no scripts, fonts or images fetched from anywhere."""
    view = build_view(d)
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{e(view.title)}</title>",
             f"<style>{_CSS}</style></head><body>", f"<h1>{e(view.title)}</h1>",
             f"<p>{e(d.get('description', ''))}</p>", "<ul>"]
    parts += [f"<li>{e(line)}</li>" for line in view.lines]
    parts.append("</ul>")
    for table in view.tables:
        parts.append(f"<h2>{e(table.title)}</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in table.headers)
                     + "</tr>")
        for row in table.rows:
            cells = "".join(f'<td class="{c}">{c}</td>' if c in ("yes", "no") else f"<td>{e(c)}</td>" for c in row)
            parts.append(f"<tr>{cells}</tr>")
        parts.append("</table>")
        if table.caption:
            parts.append(f'<p class="caption">{e(table.caption)}</p>')
    if view.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f'<li class="note">{e(n)}</li>' for n in view.notes) + "</ul>")
    parts.append(f'<p class="meta">{e(d.get("schema", ""))}, created {e(d.get("created", ""))}</p></body></html>')
    return "\n".join(parts) + "\n"
