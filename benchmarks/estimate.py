"""Published figures vs `sizewise estimate`: runs the acceptance commands and Strubell et al. 2019's BERT-base row.

    .venv/bin/python benchmarks/estimate.py        # writes benchmarks/results/estimate.md

The commands run through the real CLI (Typer's CliRunner on ``sizewise.cli.app.app``); while other commands of the app
are being written and it cannot import, through an app that registers only ``estimate``. The results file says which.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import typer  # noqa: E402
from _common import RESULTS, machine, md_table, now_utc  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

LBS_PER_KG = 2.20462262
G_PER_LB = 453.59237

GPT3 = ["gpt3-175b", "--tokens", "300e9", "--hardware", "v100", "--devices", "10000", "--days", "14.8",
        "--device-power-w", "330", "--pue", "1.1", "--grid-intensity", "429"]
BERT = ["bert-base-uncased"]
# Strubell's 12,041.51 W is the whole 64-GPU system's draw: per device it is 12041.51 / 64 W; 0.954 lbs/kWh in g/kWh
STRUBELL = ["bert-base-uncased", "--hardware", "v100", "--devices", "64", "--days", f"{79 / 24:.6f}",
            "--device-power-w", f"{12041.51 / 64:.4f}", "--pue", "1.58", "--grid-intensity", f"{0.954 * G_PER_LB:.2f}"]


def _app() -> tuple[typer.Typer, str]:
    try:
        from sizewise.cli.app import app

        return app, "sizewise.cli.app.app"
    except ImportError as exc:
        from sizewise.cli import estimate_cmd

        app = typer.Typer(add_completion=False)

        @app.callback()
        def _root() -> None:
            pass

        app.command("estimate")(estimate_cmd.estimate)
        return app, f"an app registering only estimate_cmd.estimate (sizewise.cli.app did not import: {exc})"


def _run(app: typer.Typer, args: list[str], out: Path) -> tuple[dict, float]:
    start = time.perf_counter()
    result = CliRunner().invoke(app, ["estimate", *args, "--json", str(out)])
    seconds = time.perf_counter() - start
    if result.exit_code != 0:
        raise SystemExit(f"sizewise estimate {' '.join(args)} failed:\n{result.output}")
    return json.loads(out.read_text()), seconds


def _row(what: str, published: float, source: str, ours: float, fmt: str) -> list[str]:
    return [what, format(published, fmt), source, format(ours, fmt), f"{(ours - published) / published:+.2%}"]


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    import torch
    import transformers

    app, how = _app()
    with tempfile.TemporaryDirectory() as tmp:
        g, t_g = _run(app, GPT3, Path(tmp) / "g.json")
        b, t_b = _run(app, BERT, Path(tmp) / "b.json")
        s, t_s = _run(app, STRUBELL, Path(tmp) / "s.json")
    rows = [
        _row("GPT-3 parameters", 175.0e9, "Brown et al. 2020, Table 2.1", g["params"]["total"], ",.0f"),
        _row("GPT-3 training compute (FLOP)", 3.14e23, "Brown et al. 2020, Table D.1", g["training"]["flops"], ".3e"),
        _row("GPT-3 training energy (MWh)", 1287, "Patterson et al. 2021, Table 4", g["training"]["energy_mwh"],
             ",.1f"),
        _row("GPT-3 training CO2e (t)", 552, "Patterson et al. 2021, Table 4", g["training"]["co2e_tonnes"], ",.1f"),
        _row("bert-base-uncased parameters", 109_482_240, "Hugging Face checkpoint (BertModel)",
             b["params"]["total"], ",.0f"),
        _row("bert-base-uncased fp32 weights (bytes)", 4 * 109_482_240, "4 bytes x 109,482,240",
             b["memory"]["weights_bytes"]["fp32"], ",.0f"),
        _row("BERT-base energy x PUE (kWh)", 1507, "Strubell et al. 2019, Table 3", s["training"]["energy_kwh"], ",.1f"),
        _row("BERT-base CO2e (lbs)", 1438, "Strubell et al. 2019, Table 3", s["training"]["co2e_kg"] * LBS_PER_KG,
             ",.1f"),
    ]
    lines = [
        "# `sizewise estimate` vs published figures",
        "",
        f"- date: {now_utc()}",
        f"- machine: {machine(flags=True)}",
        f"- torch {torch.__version__}, transformers {transformers.__version__}",
        f"- produced by: `.venv/bin/python benchmarks/estimate.py`, commands run through {how}",
        "",
        *md_table(rows, columns=["quantity", "published", "source", "sizewise", "difference"]),
        "",
        "## Commands",
        "",
        f"1. `sizewise estimate {shlex.join(GPT3)} --json g.json` ({t_g:.2f} s in-process, including the first "
        "transformers import)",
        f"2. `sizewise estimate {shlex.join(BERT)} --json b.json` ({t_b:.2f} s)",
        f"3. `sizewise estimate {shlex.join(STRUBELL)} --json s.json` ({t_s:.2f} s): Strubell's whole-system "
        "12,041.51 W over 64 GPUs, 79 h, PUE 1.58, 0.954 lbs/kWh = 432.73 g/kWh",
        "",
        "## Why the differences",
        "",
        "- GPT-3 parameters: the paper rounds; building its stated sizes (96 layers, d_model 12288, vocab 50257, "
        "context 2048) on the meta device gives 174.6B.",
        "- GPT-3 energy/CO2e: 10,000 x 330 W x 14.8 days x 24 h x 1.1 = 1,289.4 MWh and x 0.429 = 553.1 t from "
        "Patterson's stated inputs; the paper prints 1,287 MWh and 552 t (its inputs are rounded).",
        "- BERT-base energy/CO2e: 12,041.51 W x 79 h x 1.58 = 1,503.0 kWh from Strubell's stated inputs; the paper "
        "prints 1,507 kWh (and 1,438 lbs = 1,507 x 0.954), so the paper's own row differs by 0.27% from its inputs.",
        "",
    ]
    out = RESULTS / "estimate.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
