"""A model card as a rich table: the numbers people look for first, measured vs estimated always visible."""

from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from sizewise.core.units import format_bytes, format_count, format_flops
from sizewise.measure.card import ModelCard


def card_table(card: ModelCard, title: str | None = None) -> Table:
    t = Table(title=title or f"sizewise card · {card.model}", show_header=False, title_justify="left", expand=False)
    t.add_column("what", style="bold")
    t.add_column("value")
    p = card.params
    t.add_row("parameters", f"{p.total:,} ({format_count(p.total)}) · trainable {p.trainable:,} · non-zero "
                            f"{p.nonzero:,} ({p.nonzero / max(p.total, 1):.1%})"
                            + (f" · tied {p.tied:,} counted once" if p.tied else "")
                            + (f" · buffers {p.buffers:,}" if p.buffers else ""))
    s = card.size
    dtypes = ", ".join(f"{k} {format_bytes(v)}" for k, v in s.memory_by_dtype.items())
    t.add_row("size", f"disk {format_bytes(s.disk_bytes)} ({s.artifact}) · zipped {format_bytes(s.zip_bytes)} · "
                      f"memory {format_bytes(s.memory_bytes)} [{dtypes}]")
    if card.flops:
        f = card.flops
        shapes = ", ".join(f"{k} {tuple(v)}" for k, v in f.input_shape.items())
        t.add_row("FLOPs", f"{format_flops(f.total)} ({f.total:,}) per forward at {shapes} · effective "
                           f"{format_flops(f.effective)} · coverage {f.coverage:.2%}")
        t.add_row("", Text("FLOP = 2 × multiply-accumulate; elementwise ops not counted", style="dim"))
    if card.latency:
        lat = card.latency
        lo, hi = lat.ci95_median_ms
        style = "yellow" if lat.noisy else ""
        t.add_row("latency", Text(f"p50 {lat.p50_ms:.3f} ms (95% CI {lo:.3f}–{hi:.3f}) · p90 {lat.p90_ms:.3f} · "
                                  f"p99 {lat.p99_ms:.3f} · mean {lat.mean_ms:.3f} ± {lat.sd_ms:.3f} ms · "
                                  f"{lat.runs} runs · batch {lat.batch_size} · {lat.threads} thread(s) · "
                                  f"{lat.runtime}", style=style))
        if lat.throughput:
            t.add_row("throughput", " · ".join(f"b{p.batch_size}: {p.items_per_s:,.0f}/s" for p in lat.throughput))
    if card.memory and card.memory.peak_rss_delta_bytes is not None:
        t.add_row("peak memory", f"+{format_bytes(card.memory.peak_rss_delta_bytes)} RSS during inference "
                                 f"({card.memory.method})")
    if card.energy:
        e = card.energy
        label = "[green]measured[/]" if e.method.startswith("measured") else "[yellow]estimated[/]"
        detail = (f"{e.assumptions.get('threads')} threads × {e.assumptions.get('watts_per_core')} W/core"
                  if e.method.startswith("estimated") else e.method)
        t.add_row("energy", f"{e.joules_per_1k:.4g} J per 1,000 inferences · {label} ({detail}, PUE {e.pue})")
    if card.carbon:
        c = card.carbon
        t.add_row("CO2e", f"{c.gco2e_per_1k:.4g} g per 1,000 inferences · grid {c.grid_gco2_per_kwh:g} gCO2e/kWh "
                          f"({c.region}, {c.year or 'user value'})")
    for name, value in card.metrics.items():
        if name != "examples":
            shown = f"{value:.2%}" if name == "accuracy" else f"{value:.2f}"
            t.add_row(name, f"{shown} on {int(card.metrics.get('examples', 0)):,} held-out examples")
    env = card.environment
    if env:
        flags = " ".join(k for k, v in env.get("cpu_flags", {}).items() if v)
        t.add_row("machine", f"{env.get('cpu')} · {env.get('logical_cores')} logical cores"
                             f"{' · VM' if env.get('virtual_machine') else ''} · {flags} · torch "
                             f"{env.get('libraries', {}).get('torch', '?')}")
    return t


def print_card(card: ModelCard, console: Console, title: str | None = None) -> None:
    parts = [card_table(card, title)]
    parts += [Text(f"warning: {w}", style="yellow") for w in card.warnings]
    console.print(Group(*parts))


def compare_table(before: ModelCard, after: ModelCard) -> Table:
    """Before/after side by side, with the ratio a user cares about."""
    t = Table(title="before → after (measured the same way, same machine)", title_justify="left")
    for col in ("", "before", "after", "change"):
        t.add_column(col, justify="right" if col else "left")

    def row(name: str, a: float | None, b: float | None, fmt, better_lower: bool = True) -> None:
        if a is None or b is None:
            return
        ratio = (a / b if better_lower else b / a) if a and b else float("nan")
        t.add_row(name, fmt(a), fmt(b), f"{ratio:.2f}× {'smaller' if better_lower else 'higher'}"
                  if better_lower else f"{b - a:+.4g}")

    row("parameters", before.params.total, after.params.total, lambda v: f"{v:,.0f}")
    row("non-zero params", before.params.nonzero, after.params.nonzero, lambda v: f"{v:,.0f}")
    row("disk bytes", before.size.disk_bytes, after.size.disk_bytes, format_bytes)
    if before.flops and after.flops:
        row("FLOPs", before.flops.total, after.flops.total, format_flops)
    if before.latency and after.latency:
        speed = before.latency.p50_ms / after.latency.p50_ms
        t.add_row("latency p50", f"{before.latency.p50_ms:.3f} ms", f"{after.latency.p50_ms:.3f} ms",
                  f"{speed:.2f}× faster (measured)")
    for name in before.metrics.keys() & after.metrics.keys() - {"examples"}:
        row(name, before.metrics[name], after.metrics[name], lambda v: f"{v:.4g}", better_lower=False)
    return t
