"""MiniLM on STS-B: ``sizewise shrink`` for latency on onnxruntime within 1% of the Spearman, against torch fp32
eager, onnxruntime fp32 and onnxruntime dynamic int8 measured in the same run.

Usage (from the repository root): .venv/bin/python benchmarks/shrink_minilm.py [--trials N] [--samples N]
Writes benchmarks/results/shrink.md and benchmarks/results/shrink_minilm.json. Latency is measured at 1 thread:
on a shared 2-core machine a second process stalls a 2-thread pool (see measure.md), while 1-thread timings hold.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import sizewise
from sizewise.core.budget import Budget
from sizewise.pipeline import ShrinkConfig

ROOT = Path(__file__).resolve().parents[1]
STSB = ROOT.parent / "shared" / "data" / "stsb"
RESULTS = ROOT / "benchmarks" / "results"


def row(name: str, card: dict, torch_ms: float, ort_ms: float, fp32_bytes: int) -> str:
    lat = card["latency"]
    return (f"| {name} | {card['metrics']['spearman']:.2f} | {card['size']['disk_bytes']:,} | "
            f"{card['size']['disk_bytes'] / fp32_bytes:.1%} | {lat['p50_ms']:.2f} "
            f"[{lat['ci95_median_ms'][0]:.2f}-{lat['ci95_median_ms'][1]:.2f}] | {torch_ms / lat['p50_ms']:.2f}x | "
            f"{ort_ms / lat['p50_ms']:.2f}x | {lat.get('other_load_cores') or 0:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--samples", type=int, default=600, help="STS-B train pairs used for recovery fine-tuning")
    parser.add_argument("--out", default="/tmp/shrink-minilm")
    args = parser.parse_args()
    config = ShrinkConfig(max_drop=Budget.parse("0.01"), objective="latency", runtime="onnxruntime",
                          methods=("head", "int8-dynamic", "int8-static"), trials=args.trials, finetune_epochs=1,
                          finetune_lr=2e-5, finetune_samples=args.samples, threads=1, batch_size=1, seq_len=128,
                          latency_seconds=1.0)
    command = (f".venv/bin/python benchmarks/shrink_minilm.py --trials {args.trials} --samples {args.samples} "
               f"--out {args.out}")
    started = time.time()
    results = sizewise.shrink("minilm", str(STSB), args.out, config, command=command)
    wall = time.time() - started
    base_torch, base_ort = results.baseline["torch_fp32"], results.baseline["runtime_fp32"]
    torch_ms, ort_ms = base_torch["latency"]["p50_ms"], base_ort["latency"]["p50_ms"]
    fp32_bytes = base_torch["size"]["disk_bytes"]
    dyn = next((t for t in results.trials if t["state"] == "complete" and not t["plan"]["prune"]
                and t["plan"]["quantize"] == "int8-dynamic"), None)
    chosen = results.chosen
    lines = ["# `sizewise shrink`: all-MiniLM-L6-v2 on STS-B, objective latency on onnxruntime, budget 1%", "",
             f"- date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
             f"- machine: {base_torch['environment']['cpu']}, {base_torch['environment']['logical_cores']} cores, "
             f"Python {platform.python_version()}; CPU flags: "
             f"{' '.join(k for k, v in base_torch['environment']['cpu_flags'].items() if v)} (no VNNI/AVX-512)",
             f"- versions: {', '.join(f'{k} {v}' for k, v in base_torch['environment']['libraries'].items())}",
             f"- produced by: `{command}` ({wall / 60:.1f} min); search settings: {args.trials} trials, head pruning "
             f"(heads + FFN neurons) with 1 epoch of recovery on the first {args.samples} STS-B train pairs at lr "
             f"2e-5, int8 dynamic/static on onnxruntime; latency at batch 1, 128 tokens, **1 thread**",
             "- STS-B is the STS Benchmark (CC BY-SA 4.0); Spearman x 100 of cosine similarity on the test split "
             "(1,379 pairs). The machine was shared: the last column is other processes' CPU use while timing.", "",
             "| model | Spearman | bytes | % of fp32 | p50 ms [95% CI] | vs torch fp32 eager | vs ORT fp32 | "
             "other load (cores) |", "|---|---:|---:|---:|---:|---:|---:|---:|",
             row("torch fp32 eager", base_torch, torch_ms, ort_ms, fp32_bytes),
             row("onnxruntime fp32", base_ort, torch_ms, ort_ms, fp32_bytes)]
    if dyn:
        dyn_card = json.loads((Path(dyn["artifact"]) / "card.json").read_text())
        lines.append(row(f"onnxruntime dynamic int8 (trial {dyn['number']})", dyn_card, torch_ms, ort_ms, fp32_bytes))
    if chosen:
        lines.append(row(f"**sizewise shrink, chosen** (trial {chosen['trial']}: {chosen['description']})",
                         chosen["card"], torch_ms, ort_ms, fp32_bytes))
    lines += ["", f"Verdict of the search: {results.verdict}", ""]
    if chosen:
        card = chosen["card"]
        checks = [("≥ 3x faster than torch fp32 eager", torch_ms / card["latency"]["p50_ms"] >= 3,
                   f"{torch_ms / card['latency']['p50_ms']:.2f}x"),
                  ("≥ 2x faster than ORT fp32", ort_ms / card["latency"]["p50_ms"] >= 2,
                   f"{ort_ms / card['latency']['p50_ms']:.2f}x"),
                  ("≥ 4x fewer bytes", fp32_bytes / card["size"]["disk_bytes"] >= 4,
                   f"{fp32_bytes / card['size']['disk_bytes']:.2f}x"),
                  ("Spearman ≥ 81.2", card["metrics"]["spearman"] >= 81.2, f"{card['metrics']['spearman']:.2f}")]
        lines += ["| goal | measured | verdict |", "|---|---:|---|"]
        lines += [f"| {name} | {value} | {'MET' if ok else 'NOT MET'} |" for name, ok, value in checks]
    lines += ["", "## Trials", "", "| # | what it did | state | Spearman | latency ms | note |", "|---:|---|---|---:|---:|---|"]
    for t in results.trials:
        value = "" if t.get("metric") is None else f"{t['metric']:.2f}"
        lat = f"{t['objectives']['latency']:.2f}" if t.get("objectives") else ""
        desc = " → ".join(filter(None, [t["plan"]["prune"] and f"{t['plan']['prune']} {t['plan']['sparsity']:.0%}",
                                        t["plan"]["quantize"]])) or "no compression"
        lines.append(f"| {t['number']} | {desc} | {t['state']} | {value} | {lat} | {t.get('message', '')} |")
    (RESULTS / "shrink.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "shrink_minilm.json").write_text(json.dumps({"verdict": results.verdict, "chosen": chosen and {
        k: v for k, v in chosen.items() if k != "card"}, "trials": results.trials}, indent=2) + "\n")
    print("\n".join(lines[:20]))


if __name__ == "__main__":
    main()
