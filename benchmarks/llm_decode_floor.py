"""Where a llama.cpp decode step's time goes on this CPU: SmolLM2-135M written at five weight encodings (F32, F16,
Q8_0, Q4_1, Q4_0: the same model, llama.cpp's own quantizer from the F16 file), decoded interleaved round by round
beside torch fp32 eager, at each of --threads (default 1 and 2).

    SIZEWISE_DATA=/work/shared/data .venv/bin/python benchmarks/llm_decode_floor.py  # results/llm_decode_floor.md/.json

If decode were bound by reading the weights, a step would take bytes / bandwidth: halving the bytes would halve it.
The files are set beside two rooflines: the memory's read bandwidth (a buffer 4x the last-level cache) and the
last-level cache's (a buffer of half of it), which is the bound for weights small enough to stay in the cache from
step to step. The step times of the files that fit in the cache, across encodings and thread counts, show what does
bound them. No quality is measured (no split used); the files are the ones ``benchmarks/llm.py`` scores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llm as llm_table  # noqa: E402  (llama_quantize)
import llm_measure as lm  # noqa: E402  (stage_ab, open_llama, llama_generate, gguf_tensor_bytes)
import llm_ortgenai as og  # noqa: E402  (_torch_generate)
from _common import RESULTS, cached, finish_meta, header_lines, log, md_table, new_meta, ratio_text  # noqa: E402

VERSIONED = ("sizewise", "torch", "llama_cpp_python", "gguf", "numpy")
TORCH = "torch fp32 eager"
TYPES = {"F32": None, "F16": None, "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "Q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1",
         "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=6)
    lm.add_decode_options(parser, cache="/tmp/llm-decode-floor")
    args = lm.parse_decode_args(parser)
    meta = new_meta(VERSIONED)

    import torch

    import sizewise
    from sizewise.core.serialize import to_dict
    from sizewise.measure.llm import _Generator, last_level_cache_bytes, measure_read_bandwidth, prompt_ids
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
    llc = last_level_cache_bytes()
    res: dict[str, Any] = {"llama_cpp_build": lm.llama_build(), "weight_bytes": weight_bytes, "runs": {},
                           "last_level_cache_bytes": llc}
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
        run["bandwidth"] = cached(cache / f"bw-t{threads}.json",
                                  lambda t=threads: {"stats": to_dict(measure_read_bandwidth(t))})
        if llc:
            run["cache_bandwidth"] = cached(cache / f"bw-llc-half-t{threads}.json",
                                            lambda t=threads: {"stats": to_dict(measure_read_bandwidth(t, llc // 2))})
        res["runs"][str(threads)] = run
    # the read-bandwidth probe at three buffer sizes, now (not cached): on a VM the cache a process gets, and so the
    # bandwidth below the cache's size, may change from one minute to the next; the rooflines above are that uncertain
    res["bandwidth_sweep"] = {"measured_at": time.strftime("%H:%M UTC", time.gmtime()), "GB/s": {
        f"{t} thread(s), {mib} MiB": round(measure_read_bandwidth(t, mib * 2**20, runs=9).bytes_per_s / 1e9, 1)
        for t in args.threads for mib in (64, 150, 1200)}}
    meta = finish_meta(meta)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "llm_decode_floor.json").write_text(json.dumps({"meta": meta, "args": {k: str(v) for k, v in
                                                                                       vars(args).items()}, **res},
                                                              indent=1, default=str))
    write_report(meta, res, args)


def write_report(meta: dict, res: dict, args) -> None:
    import numpy as np

    build, llc = res["llama_cpp_build"], res.get("last_level_cache_bytes")
    # room for the KV cache, activations and the rest of the process: a file of half the cache or less stays in it
    fits = [k for k, b in res["weight_bytes"].items() if llc and b <= llc // 2]
    lines = ["# Where a llama.cpp decode step's time goes: SmolLM2-135M at five weight encodings", "",
             *header_lines(meta),
             f"- llama.cpp: llama-cpp-python {build['version']}, {build['system_info']}",
             "- files: the same model written as F32 / F16 GGUF by sizewise's writer (token embedding in the same "
             "type), Q8_0 / Q4_1 / Q4_0 by llama.cpp's own quantizer from the F16 file; bytes = the GGUF's tensor "
             "bytes (SmolLM2's embedding is the output matrix: a step reads all of them)",
             f"- decode: greedy, {args.prompt} prompt tokens then {args.new} new, batch 1, {args.rounds} interleaved "
             "rounds after a warm-up round, all files and torch fp32 eager in each round; the step time is the "
             "median step of a generation, then the median over rounds",
             "- splits: none; no quality is measured and nothing is decided on data (only speed and bandwidth)",
             f"- last-level cache {llc / 2**20:.0f} MiB (as the OS reports it); rooflines: bytes / the memory's read "
             "bandwidth (a buffer 4x the cache), and bytes / the cache's (a buffer of half of it) for files of at most "
             "half the cache" if llc else "- last-level cache: unknown", ""]
    steps = {}
    for threads, run in res["runs"].items():
        e = run["engines"]
        bw = run["bandwidth"]["stats"]["bytes_per_s"]
        cbw = run.get("cache_bandwidth", {}).get("stats", {}).get("bytes_per_s")
        rows = []
        for kind, b in res["weight_bytes"].items():
            name = f"llama.cpp {kind}"
            step = steps.setdefault(threads, {})[kind] = float(np.median(e[name]["decode_step_ms"]))
            tok_s = 1e3 / step
            rows.append({"engine": name, "weight bytes": f"{b / 2**20:.1f} MiB", "step ms": f"{step:.2f}",
                         "decode tok/s [95% CI]": lm.fmt_ci(e[name]["decode_tok_s"]),
                         "x torch fp32 [CI]": ratio_text(e[TORCH]["decode_step_ms"], e[name]["decode_step_ms"]),
                         "% of memory roofline": f"{tok_s / (bw / b) * 100:.0f}%",
                         "% of cache roofline": f"{tok_s / (cbw / b) * 100:.0f}%" if cbw and kind in fits else ""})
        lines += [f"## {threads} thread(s)", "",
                  f"torch fp32 eager: {lm.fmt_ci(e[TORCH]['decode_tok_s'])} tokens/s; read bandwidth: memory "
                  f"{bw / 1e9:.1f} GB/s" + (f", last-level cache {cbw / 1e9:.1f} GB/s" if cbw else "")
                  + f"; other processes' CPU during the rounds {run['load'].get('others_cores', float('nan')):.2f} "
                    "cores.", "", *md_table(rows, "lrrrrrr"), ""]
        if fits:
            small = [steps[threads][k] for k in fits]
            lines += [f"Files that fit in the cache ({', '.join(fits)}: {min(res['weight_bytes'][k] for k in fits) / 2**20:.0f}-"
                      f"{max(res['weight_bytes'][k] for k in fits) / 2**20:.0f} MiB): a step takes "
                      f"{min(small):.2f}-{max(small):.2f} ms ({max(small) / min(small):.2f}x apart) while their bytes "
                      f"are {max(res['weight_bytes'][k] for k in fits) / min(res['weight_bytes'][k] for k in fits):.2f}x "
                      "apart.", ""]
    if len(steps) > 1 and fits:
        (t1, s1), (t2, s2) = list(steps.items())[0], list(steps.items())[-1]
        lines += [f"From {t1} to {t2} threads, the in-cache files' step goes from "
                  + ", ".join(f"{k} {s1[k]:.2f} to {s2[k]:.2f} ms ({s1[k] / s2[k]:.2f}x)" for k in fits)
                  + "; the out-of-cache files' from "
                  + ", ".join(f"{k} {s1[k]:.2f} to {s2[k]:.2f} ms ({s1[k] / s2[k]:.2f}x)" for k in s1 if k not in fits)
                  + ".", ""]
    sweep = res["bandwidth_sweep"]
    lines += [f"The read-bandwidth probe again at the end of the run ({sweep['measured_at']}), GB/s: "
              + ", ".join(f"{k} {v}" for k, v in sweep["GB/s"].items()) + ".", ""]
    if getattr(args, "reading", None):
        lines += ["## Reading", "", args.reading.read_text().strip(), ""]
    (RESULTS / "llm_decode_floor.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
