"""A model card as a rich table: the numbers people look for first, measured vs estimated always visible."""

from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from sizewise.core.metrics import METRIC_KEYS_NOT_SCORES
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
                                  f"{lat.runtime}" + (f" · other processes used {lat.other_load_cores:.1f} cores"
                                                      if (lat.other_load_cores or 0) > 0.3 else ""), style=style))
        if lat.throughput:
            t.add_row("throughput", " · ".join(f"b{p.batch_size}: {p.items_per_s:,.0f}/s" for p in lat.throughput))
    if card.memory and card.memory.peak_rss_delta_bytes is not None:
        t.add_row("peak memory", f"+{format_bytes(card.memory.peak_rss_delta_bytes)} RSS during inference "
                                 f"({card.memory.method})")
    if card.memory and card.memory.kv_cache_bytes is not None:
        t.add_row("LLM memory", f"weights {format_bytes(card.memory.weights_bytes or 0)} + KV cache "
                                f"{format_bytes(card.memory.kv_cache_bytes)} at {card.memory.kv_cache_context_tokens:,} "
                                f"tokens (batch 1)")
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
    shown_in_llm_rows = set()
    if card.llm:
        shown_in_llm_rows = llm_rows(t, card)
    for name, value in card.metrics.items():
        if name not in METRIC_KEYS_NOT_SCORES and name not in shown_in_llm_rows:
            shown = f"{value:.2%}" if name == "accuracy" else f"{value:.2f}"
            t.add_row(name, f"{shown} on {int(card.metrics.get('examples', 0)):,} examples of the "
                                 f"{card.metrics.get('split', 'held-out')} split")
    env = card.environment
    if env:
        flags = " ".join(k for k, v in env.get("cpu_flags", {}).items() if v)
        t.add_row("machine", f"{env.get('cpu')} · {env.get('logical_cores')} logical cores"
                             f"{' · VM' if env.get('virtual_machine') else ''} · {flags} · torch "
                             f"{env.get('libraries', {}).get('torch', '?')}")
    return t


def _tok_s(value: float) -> str:
    return f"{value:,.1f} tok/s" if value < 1000 else f"{value:,.0f} tok/s"


def llm_rows(t: Table, card: ModelCard) -> set[str]:
    """The causal-LM rows; returns the metric names they already show."""
    llm = card.llm
    shown: set[str] = set()
    if llm.perplexity:
        p = llm.perplexity
        cut = f" · [yellow]text cut at {p.max_tokens:,} tokens[/]" if p.truncated else ""
        t.add_row("perplexity", f"{p.token_perplexity:.3f} per token · {p.word_perplexity:.3f} per word · "
                                f"{p.bits_per_byte:.4f} bits/byte on the {p.split} split{cut}")
        prefix = f"{p.prefix_token!r} put first" if p.prefix_token else "first token unscored"
        windows = f"{p.windows:,} window{'s' if p.windows != 1 else ''}"
        t.add_row("", Text(f"sliding window: context {p.context_tokens:,} tokens, stride {p.stride_tokens:,}, "
                           f"{windows}, {p.tokens_scored:,} of {p.text_tokens:,} tokens scored ({prefix}) · "
                           f"{p.words:,} words · {p.utf8_bytes:,} bytes · {p.texts:,} texts", style="dim"))
        shown = {"perplexity", "word_perplexity", "bits_per_byte"}
    gens = llm.generation
    t.add_row("prefill", " · ".join(f"b{g.batch_size}: {_tok_s(g.prefill.tokens_per_s)}" for g in gens)
              + f" ({llm.prompt_tokens}-token prompt, median of {gens[0].runs} runs)")
    t.add_row("time to first token", " · ".join(
        f"b{g.batch_size}: {g.ttft_p50_ms:.2f} ms (95% CI {g.ttft_ci95_ms[0]:.2f}–{g.ttft_ci95_ms[1]:.2f})"
        for g in gens))
    t.add_row("decode", " · ".join(
        f"b{g.batch_size}: {_tok_s(g.decode.tokens_per_s)} ({g.decode.p50_ms:.2f} ms/step, 95% CI "
        f"{g.decode.ci95_p50_ms[0]:.2f}–{g.decode.ci95_p50_ms[1]:.2f})" for g in gens)
              + f" · greedy, KV cache, {llm.new_tokens} new tokens, {llm.threads} thread(s), {llm.device}")
    from sizewise.measure.latency import machine_busy

    busy = [g for g in gens if machine_busy(g.other_load_cores, llm.threads)]
    if busy:  # tokens/s taken while other processes held our cores say more about them than about the model
        t.add_row("", Text(f"other processes used up to {max(g.other_load_cores for g in busy):.1f} cores while "
                           f"generating: these tokens/s are low; rerun on an idle machine", style="yellow"))
    kv = gens[0].kv_cache
    t.add_row("KV cache", f"{format_bytes(kv.bytes)} per sequence at {kv.context_tokens:,} tokens"
              + "".join(f" · {format_bytes(g.kv_cache.bytes)} at batch {g.batch_size}" for g in gens[1:])
              + f" · weights {format_bytes(llm.weights_bytes)} ({llm.dtype})")
    t.add_row("", Text(f"2 × {kv.layers} layers × {kv.kv_heads} KV heads (of {kv.attention_heads}) × "
                       f"{kv.head_dim} head dim × context × batch × {kv.bytes_per_element} B", style="dim"))
    f = llm.flops_per_token
    measured = (f" · counted {format_flops(f.measured)} ({f.measured / f.analytic:.2f}× the formula, coverage "
                f"{f.measured_coverage:.1%})" if f.measured else " · not counted")
    t.add_row("FLOPs / token", f"{format_flops(f.analytic)} at context {f.context_tokens:,}{measured}")
    t.add_row("", Text(f"2 × ({f.non_embedding_params:,} non-embedding + {f.tied_unembedding_params:,} tied "
                       f"unembedding params) + 2 × 2 × {f.layers} layers × context × {f.attention_width}",
                       style="dim"))
    if llm.bandwidth:
        b = llm.bandwidth
        points = " · ".join(f"b{g.batch_size}: {_tok_s(g.roofline_tokens_per_s)}, measured "
                            f"{g.roofline_fraction:.0%} of it" for g in gens if g.roofline_tokens_per_s)
        t.add_row("decode roofline", f"read bandwidth {b.bytes_per_s / 1e9:.1f} GB/s ({format_bytes(b.buffer_bytes)} "
                                     f"float32 sum, {b.threads} thread(s)) → {points}")
        t.add_row("", Text("roofline = batch × bandwidth / (weights + KV cache bytes), read once per step",
                           style="dim"))
    for g in gens:
        if g.energy:
            e = g.energy
            label = "[green]measured[/]" if e.method.startswith("measured") else "[yellow]estimated[/]"
            detail = (f"{e.assumptions.get('watts_per_core')} W per busy core × decode CPU time"
                      if e.method.startswith("estimated") else e.method)
            co2 = f" · {g.carbon.gco2e_per_1k:.4g} g CO2e" if g.carbon else ""
            t.add_row(f"energy / 1k tokens (b{g.batch_size})",
                      f"{e.joules_per_1k:.4g} J{co2} · {label} ({detail}, PUE {e.pue})")
    return shown


def print_card(card: ModelCard, console: Console, title: str | None = None) -> None:
    parts = [card_table(card, title)]
    parts += [Text(f"note: {n}") for n in card.notes]
    parts += [Text(f"warning: {w}", style="yellow") for w in card.warnings]
    console.print(Group(*parts))


def compare_rows(before: ModelCard, after: ModelCard) -> list[tuple[str, str, str, str]]:
    """(what, before, after, ratio) rows; ratios are before/after, so > 1 means smaller or faster."""
    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}×" if b else "∞"

    rows = [("parameters", f"{before.params.total:,}", f"{after.params.total:,}",
             ratio(before.params.total, after.params.total)),
            ("non-zero parameters", f"{before.params.nonzero:,}", f"{after.params.nonzero:,}",
             ratio(before.params.nonzero, after.params.nonzero)),
            ("disk bytes", format_bytes(before.size.disk_bytes), format_bytes(after.size.disk_bytes),
             ratio(before.size.disk_bytes, after.size.disk_bytes))]
    if before.flops and after.flops:
        rows.append(("FLOPs", format_flops(before.flops.total), format_flops(after.flops.total),
                     ratio(before.flops.total, after.flops.total)))
        rows.append(("effective FLOPs (zeros skipped)", format_flops(before.flops.effective),
                     format_flops(after.flops.effective), ratio(before.flops.effective, after.flops.effective)))
    if before.latency and after.latency:
        runtimes = (after.latency.runtime if before.latency.runtime == after.latency.runtime
                    else f"{before.latency.runtime} → {after.latency.runtime}")
        rows.append((f"latency p50 ({runtimes}, batch {after.latency.batch_size}, {after.latency.threads} thr)",
                     f"{before.latency.p50_ms:.3f} ms", f"{after.latency.p50_ms:.3f} ms",
                     ratio(before.latency.p50_ms, after.latency.p50_ms)))
    if before.llm and after.llm and before.llm.generation and after.llm.generation:  # causal LMs: tokens/s, batch 1
        b1, a1 = before.llm.generation[0], after.llm.generation[0]
        runtimes = (after.latency.runtime if before.latency and after.latency else "")
        for what, x, y in (("prefill", b1.prefill, a1.prefill), ("decode", b1.decode, a1.decode)):
            rows.append((f"{what} tokens/s ({runtimes}, batch {a1.batch_size}, {after.llm.threads} thr)",
                         f"{x.tokens_per_s:.1f}", f"{y.tokens_per_s:.1f}", ratio(y.tokens_per_s, x.tokens_per_s)))
    for name in sorted(before.metrics.keys() & after.metrics.keys() - set(METRIC_KEYS_NOT_SCORES)):
        a, b = before.metrics[name], after.metrics[name]
        shown = (lambda v: f"{v:.2%}") if name == "accuracy" else (lambda v: f"{v:.2f}")
        delta = f"{(b - a) * 100:+.2f} pp" if name == "accuracy" else f"{b - a:+.2f}"
        rows.append((name, shown(a), shown(b), delta))
    return rows


def compare_table(before: ModelCard, after: ModelCard, title: str | None = None, before_name: str = "before",
                  after_name: str = "after") -> Table:
    """Before/after side by side, as a terminal table."""
    t = Table(title=title or "before → after (measured the same way, same machine, same run)", title_justify="left")
    for col in ("", before_name, after_name, "ratio"):
        t.add_column(col, justify="right" if col not in ("",) else "left")
    for row in compare_rows(before, after):
        t.add_row(*row)
    return t


def savings_line(before: ModelCard, after: ModelCard) -> str:
    """The one line that says whether the savings are real: FLOP reduction next to the measured speed-up.

    A speed-up counts only when the two medians' 95% intervals do not overlap *and* it exceeds the run-to-run spread
    of the median on a shared machine (``RUN_TO_RUN_TOLERANCE``): two cards are timed minutes apart, and a 1-6% "gain"
    between them is no gain.
    """
    from sizewise.measure.latency import RUN_TO_RUN_TOLERANCE, machine_busy

    flops = before.flops.total / max(1, after.flops.total) if before.flops and after.flops else float("nan")
    if not (before.latency and after.latency) or not after.latency.p50_ms > 0:  # a 0 ms median: not a timing
        return f"{flops:.2f}× fewer FLOPs; latency not measured"
    speed = before.latency.p50_ms / after.latency.p50_ms
    busy = [c.latency.other_load_cores for c in (before, after)
            if machine_busy(c.latency.other_load_cores, c.latency.threads)]
    if busy:  # other processes took our cores while one card was timed: its latency says more about them than us
        return (f"{flops:.2f}× fewer FLOPs; speed not judged: other processes used up to {max(busy):.1f} cores while "
                f"timing ({speed:.2f}× measured). Rerun on an idle machine, or time both side by side with "
                f"`sizewise compare`")
    beyond_noise = abs(speed - 1) > RUN_TO_RUN_TOLERANCE
    faster = beyond_noise and after.latency.ci95_median_ms[1] < before.latency.ci95_median_ms[0]
    slower = beyond_noise and after.latency.ci95_median_ms[0] > before.latency.ci95_median_ms[1]
    if faster:
        verdict = "the savings are real" if speed >= 0.8 * flops else "faster, but less than the FLOPs promise"
    elif slower:
        verdict = "slower on this runtime"
    else:
        verdict = f"no measurable speed change (within the 95% intervals or the {RUN_TO_RUN_TOLERANCE:.0%} run-to-run spread)"
    return (f"{flops:.2f}× fewer FLOPs → measured {speed:.2f}× speed ({after.latency.runtime}, "
            f"{after.latency.threads} thread{'s' if after.latency.threads != 1 else ''}): {verdict}")
