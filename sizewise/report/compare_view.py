"""An interleaved A/B comparison as a small rich table: each side's median and interval, the speed-up, the verdict."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from sizewise.measure.compare import Comparison

_STYLE = {"faster": "bold green", "slower": "bold red", "none": "bold yellow"}


def _ms(x: float) -> str:
    return f"{x:.4g} ms"


def comparison_table(c: Comparison) -> Table:
    what = "" if c.timed == "forward" else f" · each call {c.timed}"
    t = Table(title=f"interleaved A/B · {c.rounds:,} rounds · batch {c.batch_size}"
                    + (f" · seq-len {c.seq_len}" if c.seq_len else "") + f" · {c.threads} thread(s){what}",
              title_justify="left")
    t.add_column("")
    t.add_column("model")
    t.add_column("runtime")
    t.add_column("median", justify="right")
    t.add_column("95% CI of median", justify="right")
    t.add_row("A", c.model_a, c.runtime_a, _ms(c.median_a_ms), f"{_ms(c.ci95_a_ms[0])} – {_ms(c.ci95_a_ms[1])}")
    t.add_row("B", c.model_b, c.runtime_b, _ms(c.median_b_ms), f"{_ms(c.ci95_b_ms[0])} – {_ms(c.ci95_b_ms[1])}")
    lo, hi = c.speedup_ci95
    t.add_section()
    t.add_row("", "speed-up of B", "", f"{c.speedup:.3f}x", f"{lo:.3f}x – {hi:.3f}x")
    t.caption = Text(c.verdict, style=_STYLE.get(c.outcome, "bold"))
    t.caption_justify = "left"
    return t
