"""Which int4 algorithm for `sizewise quantize --method int4-*` on SmolLM2-135M: round to nearest (llama.cpp's own
Q4_1 / Q4_0 rounding) against NNCF's calibrated AWQ + scale estimation, on WikiText-2 validation perplexity (decisions
are made on validation; nothing here reads the test split), with calibration time and peak memory.

    .venv/bin/python benchmarks/llm_int4.py [--threads 1] [--eval-tokens 4096] [--windows 16]

Writes benchmarks/results/llm_int4.json and prints a Markdown table. Every candidate is the PyTorch model carrying
exactly the weights its GGUF file would hold (the file itself is what `sizewise quantize` measures on llama.cpp).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext2"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-tokens", type=int, default=4096)
    parser.add_argument("--windows", type=int, default=16)
    parser.add_argument("--window-tokens", type=int, default=512)
    parser.add_argument("--candidates", default="rtn-asym,rtn-sym,awq+scale-estimation-asym,"
                                                "awq+scale-estimation-sym,scale-estimation-asym")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import sizewise
    from sizewise.compress.quantize.llm import _apply, _score, calibration_windows
    from sizewise.measure.memory import PeakRss
    from sizewise.compress.quantize.llm_codes import linear_weights, nncf_codes, nncf_version, rtn_codes

    loaded = sizewise.load("smollm2-135m")
    data = sizewise.load_dataset(str(DATA)).without_test()
    texts = list(data.split(data.decision_split).inputs)
    windows, calib_split = calibration_windows(loaded, data, args.windows, args.window_tokens)
    source = loaded.module.eval()
    rows = []
    t0 = time.perf_counter()
    base = _score(source, loaded, texts, args.eval_tokens)
    rows.append({"candidate": "fp32 (Q4_1 file dequantized)", "perplexity": base, "seconds": 0.0,
                 "peak_rss_bytes": None, "scoring_seconds": time.perf_counter() - t0})
    print(rows[-1], flush=True)
    for name in args.candidates.split(","):
        algorithm, sym = name.rsplit("-", 1)
        symmetric = sym == "sym"
        started = time.perf_counter()
        with PeakRss() as rss, torch.no_grad():
            if algorithm == "rtn":
                codes = {n: rtn_codes(m.weight, 32, symmetric) for n, m in linear_weights(source).items()}
            else:
                codes = nncf_codes(source, windows, 32, symmetric, awq="awq" in algorithm,
                                   scale_estimation="scale-estimation" in algorithm)
        seconds = time.perf_counter() - started
        carrier = copy.deepcopy(source)
        _apply(carrier, source, codes, "Q8_0", set())
        t1 = time.perf_counter()
        value = _score(carrier, loaded, texts, args.eval_tokens)
        rows.append({"candidate": f"{algorithm} {'Q4_0 (symmetric)' if symmetric else 'Q4_1 (asymmetric)'}",
                     "perplexity": value, "change": value / base - 1, "seconds": seconds,
                     "peak_rss_bytes": rss.peak, "rss_increase_bytes": rss.peak - rss.start,
                     "scoring_seconds": time.perf_counter() - t1})
        print(rows[-1], flush=True)
        del carrier, codes
    meta = {"command": "benchmarks/llm_int4.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
            "load_average": os.getloadavg(), "nncf": nncf_version(), "torch": torch.__version__,
            "calibration": {"split": calib_split, "windows": len(windows), "tokens": args.window_tokens},
            "eval": {"split": data.decision_split, "tokens": args.eval_tokens, "context": 1024, "stride": 512},
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "llm_int4.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print("| candidate | val ppl | change | calibration s | peak RSS GB |\n|---|---:|---:|---:|---:|")
    for r in rows:
        peak = f"{r['peak_rss_bytes'] / 1e9:.2f}" if r.get("peak_rss_bytes") else ""
        change = f"{r['change']:+.2%}" if "change" in r else ""
        print(f"| {r['candidate']} | {r['perplexity']:.3f} | {change} | {r['seconds']:.0f} | {peak} |")


if __name__ == "__main__":
    main()
