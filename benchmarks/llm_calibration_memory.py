"""Peak memory of an LLM calibration: NNCF's AWQ + scale estimation on SmolLM2-135M, block by block (what
``sizewise quantize --method int4-awq`` runs) against the same algorithms on the whole model at once, and the int4-awq
step itself (the calibration figures it records in its run, which the acceptance result quotes).

Each way runs in a fresh child process (so one's peak cannot hide in the other's), on the same 32 windows of 512
tokens from WikiText-2's validation text (the calibration split: WikiText-2 here has no train file; the test text is
never read), with the process's resident set sampled every 20 ms. Reported: the resident set when calibration starts
(the interpreter, torch and the fp32 model), the peak during it, the increase, and the increase over the fp32
weights' bytes; then whether both ways produced the same 4-bit codes.

    .venv/bin/python benchmarks/llm_calibration_memory.py            # both ways, ~30 min on 2 busy cores
    .venv/bin/python benchmarks/llm_calibration_memory.py --samples 8 --tokens 128   # a quick look

Writes benchmarks/results/llm_calibration_memory.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

MODEL = "smollm2-135m"


def calibrate(way: str, samples: int, tokens: int, codes_out: Path) -> dict:
    """One calibration in this process; the codes go to ``codes_out`` (npz) for the comparison."""
    import numpy as np
    import nncf
    import torch

    import sizewise
    from sizewise.compress.quantize.llm import calibration_windows
    from sizewise.measure.memory import PeakRss
    from sizewise.compress.quantize.llm_codes import _read_codes, nncf_codes
    from sizewise.data import load_dataset
    from sizewise.data.options import DataOptions

    torch.set_num_threads(1)
    loaded = sizewise.load(MODEL)
    data = load_dataset(str(c.DATA / "wikitext2"), options=DataOptions(task="causal-lm"))
    windows, split = calibration_windows(loaded, data, samples, tokens)
    module = loaded.module.eval().to(torch.float32)
    weight_bytes = sum(p.numel() * 4 for p in module.parameters())
    if way == "step":  # the quantize step itself (int4-awq, defaults but a short validation scoring)
        import tempfile as tf

        from sizewise.compress.quantize.llm import LLMWeightInt4, quantize_llm
        from sizewise.compress.registry import StepContext

        config = LLMWeightInt4(calibration_samples=samples, calibration_tokens=tokens, eval_tokens=1024)
        out = quantize_llm(loaded, config, StepContext(data=data.without_test(), workdir=Path(tf.mkdtemp())))
        cal = out.details["calibration"]
        return {"way": way, "split": cal["split"], "windows": cal["windows"], "tokens_per_window": tokens,
                "seconds": cal["seconds"], "rss_at_start_bytes": cal["peak_rss_bytes"] - cal["rss_increase_bytes"],
                "peak_rss_bytes": cal["peak_rss_bytes"], "increase_bytes": cal["rss_increase_bytes"],
                "fp32_weight_bytes": weight_bytes, "layers": out.details["layers"], "nncf": nncf.__version__}
    started = time.perf_counter()
    with PeakRss() as rss:
        if way == "blockwise":
            codes = nncf_codes(module, windows, 32, False, awq=True, scale_estimation=True)
        else:  # what int4-awq ran before: the whole model handed to NNCF at once
            with torch.no_grad():
                compressed = nncf.compress_weights(
                    module, mode=nncf.CompressWeightsMode.INT4_ASYM, group_size=32, ratio=1.0,
                    dataset=nncf.Dataset([{"input_ids": w} for w in windows]), subset_size=len(windows), awq=True,
                    scale_estimation=True)
            codes = _read_codes(compressed, False)
    seconds = time.perf_counter() - started
    np.savez(codes_out, **{name: c.q for name, c in codes.items()}, **{f"{name}#scale": c.scale
                                                                       for name, c in codes.items()})
    return {"way": way, "split": split, "windows": len(windows), "tokens_per_window": tokens, "seconds": seconds,
            "rss_at_start_bytes": rss.start, "peak_rss_bytes": rss.peak, "increase_bytes": rss.peak - rss.start,
            "fp32_weight_bytes": weight_bytes, "layers": len(codes), "nncf": nncf.__version__}


def same_codes(a: Path, b: Path) -> dict:
    import numpy as np

    x, y = np.load(a), np.load(b)
    names = sorted(n for n in x.files if not n.endswith("#scale"))
    equal = sum(int((x[n] == y[n]).sum()) for n in names)
    total = sum(x[n].size for n in names)
    scale_err = max(float(np.max(np.abs(x[n + "#scale"] - y[n + "#scale"]) / (np.abs(y[n + "#scale"]) + 1e-12)))
                    for n in names)
    return {"layers": len(names), "codes_equal_fraction": equal / total, "max_relative_scale_difference": scale_err,
            "same_layer_names": sorted(x.files) == sorted(y.files)}


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--tokens", type=int, default=512)
    p.add_argument("--ways", default="blockwise,whole,step",
                   help="blockwise: nncf_codes; whole: NNCF on the whole model; step: the int4-awq step as quantize "
                        "runs it (its own calibration figures)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--codes", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(calibrate(args.child, args.samples, args.tokens, args.codes)))
        return
    meta = c.new_meta(("sizewise", "torch", "transformers", "nncf", "numpy"))
    rows, scratch = [], Path(tempfile.mkdtemp(prefix="sizewise-calib-mem-"))
    for way in args.ways.split(","):
        c.log(f"calibrating: {way}")
        out = subprocess.run([sys.executable, __file__, "--child", way, "--samples", str(args.samples), "--tokens",
                              str(args.tokens), "--codes", str(scratch / f"{way}.npz")], capture_output=True,
                             text=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"{way} failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    ways = [r["way"] for r in rows]
    comparison = same_codes(scratch / "blockwise.npz", scratch / "whole.npz") \
        if "blockwise" in ways and "whole" in ways else None
    meta = c.finish_meta(meta)
    result = {"meta": meta, "rows": rows, "codes": comparison}
    c.RESULTS.mkdir(parents=True, exist_ok=True)
    (c.RESULTS / "llm_calibration_memory.json").write_text(json.dumps(result, indent=2, default=str))
    table = [{"way": r["way"], "windows x tokens": f"{r['windows']} x {r['tokens_per_window']}",
              "RSS at start": gib(r["rss_at_start_bytes"]), "peak RSS": gib(r["peak_rss_bytes"]),
              "increase": gib(r["increase_bytes"]),
              "increase / fp32 weights": f"{r['increase_bytes'] / r['fp32_weight_bytes']:.2f}x",
              "seconds": f"{r['seconds']:.0f}"} for r in rows]
    lines = ["# LLM calibration memory: block by block vs the whole model", "", *c.header_lines(meta),
             f"- model: {MODEL} (fp32 weights {gib(rows[0]['fp32_weight_bytes'])}); NNCF "
             f"{rows[0]['nncf']} AWQ + scale estimation, asymmetric int4, group 32, 1 thread",
             f"- splits: calibration on WikiText-2 `{rows[0]['split']}` text (no train file there); nothing is "
             f"scored, the test text is not read", "", *c.md_table(table, "llrrrrr"), ""]
    if comparison:
        lines += [f"Codes: {comparison['codes_equal_fraction'] * 100:.4f}% of the 4-bit codes of the "
                  f"{comparison['layers']} linear layers are equal between the two ways; largest relative "
                  f"scale difference {comparison['max_relative_scale_difference']:.2e}.", ""]
    (c.RESULTS / "llm_calibration_memory.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
