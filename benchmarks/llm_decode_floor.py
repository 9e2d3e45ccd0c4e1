"""Where a llama.cpp decode step's time goes on this CPU: SmolLM2-135M written at five weight encodings (F32, F16,
Q8_0, Q4_1, Q4_0: the same model, llama.cpp's own quantizer from the F16 file), decoded interleaved round by round
beside torch fp32 eager, and the step time fitted as ``t = t0 + bytes / B`` over the five files.

    SIZEWISE_DATA=/work/shared/data .venv/bin/python benchmarks/llm_decode_floor.py  # results/llm_decode_floor.md/.json

``B`` is the bandwidth at which extra weight bytes cost time; ``t0`` is the part of a step that does not shrink with
the weights (attention, norms, the graph, thread hand-offs, the int-dot-product arithmetic itself where it is not
hidden behind memory). ``t0`` bounds what any smaller encoding can reach on this runtime and thread count:
tokens/s <= 1 / t0. Run at each of --threads (default 1 and 2), so the split shows whether ``t0`` is compute that
more cores divide. No quality is measured (no split used); the files are the ones ``benchmarks/llm.py`` scores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llm as llm_table  # noqa: E402  (llama_quantize)
import llm_measure as lm  # noqa: E402  (stage_ab, open_llama, llama_generate, gguf_tensor_bytes)
import llm_ortgenai as og  # noqa: E402  (_torch_generate)
from _common import RESULTS, cached, finish_meta, header_lines, log, md_table, new_meta, parse_args, ratio_text  # noqa: E402

VERSIONED = ("sizewise", "torch", "llama_cpp_python", "gguf", "numpy")
TORCH = "torch fp32 eager"
TYPES = {"F32": None, "F16": None, "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "Q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1",
         "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0"}


def fit(bytes_: list[float], step_ms: list[float]) -> dict[str, float]:
    """Least squares ``step_ms = t0 + bytes / B``: t0 in ms, B in bytes/s, and r^2."""
    import numpy as np

    x, y = np.asarray(bytes_, dtype=float), np.asarray(step_ms, dtype=float)
    slope, t0 = np.polyfit(x, y, 1)
    pred = t0 + slope * x
    r2 = 1 - float(((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum())
    return {"t0_ms": float(t0), "bandwidth_bytes_per_s": float(1e3 / slope), "r2": r2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--max-wait", type=float, default=60.0)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/llm-decode-floor"))
    parser.add_argument("--reading", type=Path, help="a Markdown file with the written reading to append")
    args = parse_args(parser)
    lm.PROMPT, lm.NEW = args.prompt, args.new
    meta = new_meta(VERSIONED)

    import numpy as np
    import torch

    import sizewise
    from sizewise.core.serialize import to_dict
    from sizewise.measure.llm import _Generator, measure_read_bandwidth, prompt_ids
    from sizewise.models.gguf_writer import write_gguf

    cache = args.cache
    cache.mkdir(parents=True, exist_ok=True)
    loaded = sizewise.load("smollm2-135m")
    files: dict[str, Path] = {}
    for kind, ftype in TYPES.items():
        path = cache / f"smollm2-{kind.lower()}.gguf"
        if not path.is_file():
            log(f"writing {path.name}")
            if ftype is None:
                write_gguf(loaded.module, loaded.inputs.tokenizer, path, default=kind,
                           encodings={"model.embed_tokens.weight": kind, "lm_head.weight": kind},
                           source_gguf=loaded.metadata["gguf"]["path"], name=f"smollm2-135m-{kind.lower()}")
            else:
                llm_table.llama_quantize(files["F16"], path, ftype, 2)
        files[kind] = path
    weight_bytes = {k: lm.gguf_tensor_bytes(str(p)) for k, p in files.items()}
    ids = prompt_ids(loaded, 1, args.prompt)
    res: dict[str, Any] = {"llama_cpp_build": lm.llama_build(), "weight_bytes": weight_bytes, "runs": {}}
    for threads in args.threads:
        torch.set_num_threads(threads)

        def ab(threads=threads) -> dict[str, Any]:
            gen = _Generator(loaded.module)
            engines: dict[str, Any] = {TORCH: lambda: og._torch_generate(gen, ids, args.new, threads)}
            opened = []
            for kind, path in files.items():
                llm = lm.open_llama(str(path), threads, args.prompt + args.new + 8, logits_all=False)
                opened.append(llm)
                engines[f"llama.cpp {kind}"] = lambda m=llm: lm.llama_generate(m, ids[0].tolist(), args.new)
            try:
                return lm.stage_ab(engines, ids[0].tolist(), threads, args.rounds, args.max_wait)
            finally:
                for llm in opened:
                    llm.close()

        log(f"decode, interleaved, {threads} thread(s), {args.rounds} rounds")
        run = cached(cache / f"ab-p{args.prompt}-n{args.new}-t{threads}-r{args.rounds}.json", ab)
        steps = {k: float(np.median(run["engines"][f"llama.cpp {k}"]["decode_step_ms"])) for k in files}
        run["fit"] = fit([weight_bytes[k] for k in files], [steps[k] for k in files])
        # per round as well: the spread of t0 and B over rounds is the fit's own noise
        per_round = [fit([weight_bytes[k] for k in files],
                         [run["engines"][f"llama.cpp {k}"]["decode_step_ms"][r] for k in files])
                     for r in range(run["rounds"])]
        run["fit_per_round"] = per_round
        run["bandwidth"] = cached(cache / f"bw-t{threads}.json",
                                  lambda t=threads: {"stats": to_dict(measure_read_bandwidth(t))})
        res["runs"][str(threads)] = run
    meta = finish_meta(meta)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "llm_decode_floor.json").write_text(json.dumps({"meta": meta, "args": {k: str(v) for k, v in
                                                                                       vars(args).items()}, **res},
                                                              indent=1, default=str))
    write_report(meta, res, args)


def write_report(meta: dict, res: dict, args) -> None:
    import numpy as np

    build = res["llama_cpp_build"]
    lines = ["# Where a llama.cpp decode step's time goes: SmolLM2-135M at five weight encodings", "",
             *header_lines(meta),
             f"- llama.cpp: llama-cpp-python {build['version']}, {build['system_info']}",
             "- files: the same model written as F32 / F16 GGUF by sizewise's writer (token embedding in the same "
             "type), Q8_0 / Q4_1 / Q4_0 by llama.cpp's own quantizer from the F16 file; bytes = the GGUF's tensor "
             "bytes",
             f"- decode: greedy, {args.prompt} prompt tokens then {args.new} new, batch 1, {args.rounds} interleaved "
             "rounds after a warm-up round, all files and torch fp32 eager in each round; the step time is the "
             "median step of a generation; fit: least squares `t = t0 + bytes / B` over the five files' median "
             "steps (and per round, for its spread)", ""]
    for threads, run in res["runs"].items():
        e, f = run["engines"], run["fit"]
        bw = run["bandwidth"]["stats"]["bytes_per_s"]
        rows = []
        for kind, b in res["weight_bytes"].items():
            name = f"llama.cpp {kind}"
            step = float(np.median(e[name]["decode_step_ms"]))
            rows.append({"engine": name, "weight bytes": f"{b / 2**20:.1f} MiB", "step ms": f"{step:.2f}",
                         "decode tok/s [95% CI]": lm.fmt_ci(e[name]["decode_tok_s"]),
                         "x torch fp32 [CI]": ratio_text(e[TORCH]["decode_step_ms"], e[name]["decode_step_ms"]),
                         "fitted t0 + bytes/B, ms": f"{f['t0_ms'] + b / f['bandwidth_bytes_per_s'] * 1e3:.2f}",
                         "roofline tok/s (bytes / read bw)": f"{bw / b:.0f}"})
        t0s = [p["t0_ms"] for p in run["fit_per_round"]]
        bws = [p["bandwidth_bytes_per_s"] / 1e9 for p in run["fit_per_round"]]
        torch_tok_s = e[TORCH]["decode_tok_s"]["median"]
        lines += [f"## {threads} thread(s)", "",
                  f"torch fp32 eager: {lm.fmt_ci(e[TORCH]['decode_tok_s'])} tokens/s; measured read bandwidth "
                  f"{bw / 1e9:.1f} GB/s; other processes' CPU during the rounds "
                  f"{run['load'].get('others_cores', float('nan')):.2f} cores.", "",
                  *md_table(rows, "lrrrrrr"), "",
                  f"Fit over the five files: **t0 = {f['t0_ms']:.2f} ms** per step (rounds: {min(t0s):.2f}-"
                  f"{max(t0s):.2f}), **B = {f['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s** (rounds: {min(bws):.1f}-"
                  f"{max(bws):.1f}), r^2 = {f['r2']:.3f}. Ceiling for any encoding of this model on this runtime "
                  f"and thread count: 1 / t0 = {1e3 / f['t0_ms']:.0f} tokens/s = "
                  f"{1e3 / f['t0_ms'] / torch_tok_s:.2f}x torch fp32 eager's median; 4x torch fp32 "
                  f"({4 * torch_tok_s:.0f} tokens/s) would need a step of {1e3 / (4 * torch_tok_s):.2f} ms, i.e. "
                  f"weights of at most {max(0.0, (1e3 / (4 * torch_tok_s) - f['t0_ms'])) * f['bandwidth_bytes_per_s'] / 1e3 / 2**20:.1f}"
                  f" MiB at the fitted B.", ""]
    if getattr(args, "reading", None):
        lines += ["## Reading", "", args.reading.read_text().strip(), ""]
    (RESULTS / "llm_decode_floor.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
