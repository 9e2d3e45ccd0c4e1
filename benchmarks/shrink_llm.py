"""SmolLM2-135M on WikiText-2: ``sizewise shrink --runtime llamacpp`` within a perplexity budget, objective latency
(one decoded token at batch 1), then the chosen GGUF beside torch fp32 eager and llama.cpp fp32.

Usage (from the repository root):
    .venv/bin/python benchmarks/shrink_llm.py [--trials N] [--max-drop 10%] [--threads N] [--out DIR] [--render-only]

Writes benchmarks/results/shrink_llm.md and shrink_llm.json. Split discipline: the search calibrates on the end of
WikiText-2's train split, scores every trial on the first tokens of ``valid.txt`` (the validation split) and chooses
there; the baselines and the chosen model are then scored once on ``wiki.test.raw`` (the test split). Speed-ups come
from timing one greedy decode step of the chosen model and of each fp32 baseline, interleaved
(:func:`sizewise.measure.compare.compare`), and are called only when the interval excludes 1.0.

SmolLM2-135M's weights come dequantized from a Q4_1 GGUF file (group 32, with offsets): int4 candidates on that same
grid (Q4_1, group 32) can reproduce them almost exactly, so a search that picks them measures the source file's grid,
not a quantizer; the table says which grid each candidate used.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from _common import DATA, RESULTS, MachineLoad, command, log, machine, md_table, now_utc, versions
from shrink_common import trials_table

WIKITEXT = DATA / "wikitext2"
MODEL = "smollm2-135m"


def _decode(card: dict) -> dict:
    return card["llm"]["generation"][0]


def _row(name: str, card: dict, fp32_bytes: int) -> list[str]:
    gen = _decode(card)
    ppl = card["metrics"]["perplexity"]
    return [name, f"{ppl:.3f}", f"{card['size']['disk_bytes'] / 2**20:.1f} MiB",
            f"{card['size']['disk_bytes'] / fp32_bytes:.1%}", f"{gen['decode']['tokens_per_s']:.1f}",
            f"{gen['prefill']['tokens_per_s']:.0f}", f"{gen['ttft_p50_ms']:.1f}",
            f"{gen.get('other_load_cores') or 0:.2f}"]


def _budget(b: dict) -> str:
    return f"{b['value']:g} points" if b["absolute"] else f"{b['value']:.0%} (relative)"


def _speedup(c: dict) -> str:
    lo, hi = c["speedup_ci95"]
    return f"{c['speedup']:.2f}x [{lo:.2f}-{hi:.2f}], {c['rounds']} rounds: {c['verdict']}"


def render(out: Path, bench: dict) -> str:
    r = json.loads((out / "results.json").read_text())
    base_t, base_rt = r["baseline"]["torch_fp32"], r["baseline"]["runtime_fp32"]
    chosen = r.get("chosen") or {}
    card = (chosen.get("test") or {}).get("card")
    fp32_bytes = base_rt["size"]["disk_bytes"]
    rows = [_row("torch fp32 eager", base_t, fp32_bytes), _row("llama.cpp fp32 (F32 GGUF)", base_rt, fp32_bytes)]
    if card:
        rows.append(_row(f"**chosen**: trial {chosen['trial']}, {chosen['description']}", card, fp32_bytes))
    test_tokens = base_rt["llm"]["perplexity"]["tokens_scored"] if base_rt["llm"].get("perplexity") else None
    lines = [
        "# `sizewise shrink` on a causal LM: SmolLM2-135M, llama.cpp, perplexity budget", "",
        f"- date: {bench['date']}; wall time {bench['wall_s'] / 60:.1f} min; produced by `{bench['command']}`",
        f"- machine: {machine(flags=True)}", f"- versions: {', '.join(f'{k} {v}' for k, v in versions().items())}",
        f"- load average (1, 5, 15 min) before / after: {bench['load_before']} / {bench['load_after']}; other "
        f"processes used {bench['others_cores']:.2f} of the 2 cores on average during the run",
        f"- search: {r['config']['trials']} trials over {', '.join(r['config']['methods'])} on llama.cpp, "
        f"budget {_budget(r['config']['max_drop'])} on perplexity, objective {r['objective']} (one decoded token at batch 1), "
        f"{r['config']['threads']} thread(s); trials scored and chosen on the **validation** split (valid.txt), the "
        f"rows below scored once on the **test** split (wiki.test.raw, first {test_tokens or '?'} tokens)",
        "- SmolLM2-135M's weights come dequantized from a Q4_1 GGUF file (group 32, with offsets): a Q4_1 group-32 "
        "candidate sits on the source file's own grid, so its small loss says little about the quantizer.",
        "", "## Reported (test split)", "",
        *md_table(rows, "lrrrrrrr", columns=["model", "perplexity", "bytes", "% of fp32", "decode tok/s",
                                             "prefill tok/s", "TTFT ms", "other load (cores)"]), "",
        f"Verdict of the search: {r['verdict']}", "", f"Headline: {r['headline']}", ""]
    for key, label in (("runtime_fp32", "llama.cpp fp32"), ("torch_fp32", "torch fp32 eager")):
        if key in r.get("speedups", {}):
            c = r["speedups"][key]
            lines.append(f"- chosen vs {label}, {c['timed']}, interleaved: {_speedup(c)}")
    lines += ["", f"## Trials ({r.get('selection_split', 'validation')} split)", "",
              *trials_table(r, r["objective"]), "",
              "The objective column is milliseconds per decoded token on llama.cpp (validation-time measurement)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--max-drop", default="10%")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", default="int4-rtn,int4-awq")
    parser.add_argument("--out", default="/tmp/shrink-llm")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    if not args.render_only:
        import sizewise
        from sizewise.core.budget import Budget
        from sizewise.pipeline import ShrinkConfig

        load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
        started = time.time()
        config = ShrinkConfig(max_drop=Budget.parse(args.max_drop), objective="latency", runtime="llamacpp",
                              methods=tuple(args.methods.split(",")), trials=args.trials, threads=args.threads,
                              compare_seconds=20.0)
        with MachineLoad() as others:
            sizewise.shrink(MODEL, str(WIKITEXT), str(out), config, command=command(),
                            progress=lambda m: log(f"shrink: {m}"))
        (out / "bench.json").write_text(json.dumps({
            "wall_s": time.time() - started, "date": now_utc(), "command": command(), "load_before": load_before,
            "load_after": " ".join(f"{x:.2f}" for x in os.getloadavg()), "others_cores": others.others_cores}))
    text = render(out, json.loads((out / "bench.json").read_text()))
    (RESULTS / "shrink_llm.md").write_text(text)
    (RESULTS / "shrink_llm.json").write_text((out / "results.json").read_text())
    print(text)


if __name__ == "__main__":
    main()
