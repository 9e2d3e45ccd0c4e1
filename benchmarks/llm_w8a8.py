"""W8A8 on a CPU: SmolLM2-135M quantized by ``int8-smoothquant`` (SmoothQuant-smoothed int8 MatMulNBits weights, int8
activations in ORT GenAI's CPU kernel) beside plain W8A8 (alpha 0), ORT GenAI fp32, torch fp32 eager and llama.cpp's
Q8_0 (its own 8-bit weights, activations quantized to 8 bits per 32-block by its dot products), in one run on the
same text, token ids and threads.

    SIZEWISE_DATA=/work/shared/data .venv/bin/python benchmarks/llm_w8a8.py   # writes results/llm_w8a8.md/.json

What runs (each stage cached as JSON under --cache, default /tmp/llm-w8a8; --force recomputes):

1. the method: ``quantize_smoothquant`` at blocks of 32 and 128 weights (the kernel quantizes activations per block
   of the same length, so larger blocks leave more room for smoothing), alpha chosen from 0 / 0.5 / 0.8 on the first
   --eval-tokens tokens of WikiText-2 ``valid.txt`` by onnxruntime running each candidate folder; calibration
   (per-channel activation ranges) on 32 x 512 tokens from the end of ``valid.txt`` (the data has no train split;
   the two parts do not overlap); the alpha-0 folder of each block is plain W8A8, the baseline;
2. perplexity of every engine on the first --tokens tokens of ``wiki.test.raw`` (context 1024, stride 512, the same
   token ids), scored once, after the choices were made;
3. decode: the engines interleaved round by round (``llm_measure.stage_ab``), greedy, --prompt then --new tokens,
   batch 1, --threads; the read bandwidth right after, for each engine's roofline;
4. peak RSS of each engine in a fresh process over one generation.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llm as llm_table  # noqa: E402  (llama_quantize, gguf_ppl)
import llm_measure as lm  # noqa: E402  (stage_ab, stage_ppl, open_llama, llama_generate, fmt_ci)
import llm_ortgenai as og  # noqa: E402  (_ort, _ort_generate, _torch_generate, peak_rss)
from _common import (  # noqa: E402
    DATA,
    RESULTS,
    cached,
    finish_meta,
    header_lines,
    log,
    md_table,
    new_meta,
    ratio_summary,
    ratio_text,
)

VERSIONED = ("sizewise", "torch", "transformers", "onnxruntime", "onnxruntime-genai", "onnx", "llama_cpp_python",
             "gguf", "numpy")
TORCH, ORT_FP32, Q8, Q4KM = "torch fp32 eager", "ORT GenAI fp32", "llama.cpp Q8_0", "llama.cpp Q4_K_M"
ANCHORS = {Q8: "LLAMA_FTYPE_MOSTLY_Q8_0", Q4KM: "LLAMA_FTYPE_MOSTLY_Q4_K_M"}  # llama.cpp's own quantizer
BLOCKS = (32, 128)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=8192, help="perplexity on the first N tokens of the test text")
    parser.add_argument("--eval-tokens", type=int, default=8192, help="validation tokens each alpha is scored on")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=6, help="interleaved decode rounds")
    lm.add_decode_options(parser, cache="/tmp/llm-w8a8")
    args = lm.parse_decode_args(parser)
    meta = new_meta(VERSIONED)

    import torch

    import sizewise
    from sizewise.compress.quantize import SmoothQuantW8A8
    from sizewise.compress.quantize.smoothquant import quantize_smoothquant
    from sizewise.compress.registry import StepContext
    from sizewise.core.serialize import to_dict
    from sizewise.measure import llamacpp, ortgenai
    from sizewise.measure.llm import _Generator, kv_cache_stats, measure_read_bandwidth, prompt_ids, step_read_bytes
    from sizewise.measure.llm import last_level_cache_bytes, weights_bytes
    from sizewise.models.gguf_writer import write_gguf
    from sizewise.models.ortgenai import build
    from sizewise.tasks.perplexity import split_texts

    torch.set_num_threads(args.threads)
    cache = args.cache
    cache.mkdir(parents=True, exist_ok=True)
    log("loading smollm2-135m and WikiText-2")
    loaded = sizewise.load("smollm2-135m")
    dataset = sizewise.load_dataset(str(DATA / "wikitext2"))
    texts = split_texts(dataset, "test")
    config = loaded.module.config
    res: dict[str, Any] = {"llama_cpp_build": lm.llama_build(), "model": loaded.metadata.get("name")}

    # 1: the method (alpha chosen on validation), the fp32 folder and the anchor
    builds: dict[str, dict[str, Any]] = {}
    steps: dict[int, dict[str, Any]] = {}
    for block in BLOCKS:
        def run(block=block) -> dict[str, Any]:
            log(f"int8-smoothquant, block {block}: calibrating, building and scoring each alpha on validation")
            started = time.perf_counter()
            out = quantize_smoothquant(loaded, SmoothQuantW8A8(group_size=block, eval_tokens=args.eval_tokens),
                                       StepContext(data=dataset.without_test(), workdir=cache / f"b{block}",
                                                   progress=log))
            return {"details": out.details, "folder": out.model.metadata["ortgenai_dir"],
                    "seconds": time.perf_counter() - started}

        steps[block] = cached(cache / f"method-b{block}-v{args.eval_tokens}.json", run)
        chosen = steps[block]["details"]["alpha"]
        plain = str(Path(steps[block]["folder"]).with_name(f"ortgenai-int8-alpha{0.0:g}"))
        builds[f"W8A8 b{block} (alpha 0)"] = {"path": plain}
        builds[f"W8A8 b{block} SmoothQuant (alpha {chosen:g})"] = {"path": steps[block]["folder"]}
    fp32_dir = cache / "ort-genai-fp32"
    if not (fp32_dir / "model.onnx").is_file():
        log("building the ORT GenAI fp32 folder")
        build(loaded.module, loaded.inputs.tokenizer, fp32_dir, "fp32")
    builds[ORT_FP32] = {"path": str(fp32_dir)}
    for name, b in builds.items():
        size = ortgenai.folder_size(b["path"])
        b.update(bytes=size.disk_bytes, weight_bytes=size.memory_bytes, by_dtype=size.memory_by_dtype,
                 read_bytes=ortgenai.step_read_bytes(b["path"]))
    folders = list(builds)
    f16 = cache / "smollm2-f16.gguf"
    if not f16.is_file():
        log("writing the F16 GGUF that llama.cpp's quantizer starts from")
        write_gguf(loaded.module, loaded.inputs.tokenizer, f16, default="F16",
                   source_gguf=loaded.metadata["gguf"]["path"], name="smollm2-135m-f16")
    for name, ftype in ANCHORS.items():
        path = cache / f"smollm2-{name.split()[-1].lower()}.gguf"
        if not path.is_file():
            log(f"{name}: llama.cpp's quantizer on the F16 file")
            llm_table.llama_quantize(f16, path, ftype, args.threads)
        builds[name] = {"path": str(path), "bytes": path.stat().st_size, "weight_bytes": llamacpp.tensor_bytes(path),
                        "read_bytes": llamacpp.step_read_bytes(path)}
    fp32_bytes = weights_bytes(loaded.module)
    builds[TORCH] = {"bytes": fp32_bytes, "weight_bytes": fp32_bytes, "read_bytes": step_read_bytes(loaded.module)}
    res["builds"], res["method"] = builds, {str(k): v for k, v in steps.items()}

    # 2: perplexity on test, once, after the choices
    tag = f"n{args.tokens}"
    ppl: dict[str, Any] = {}
    log(f"perplexity: {TORCH}")
    ppl[TORCH] = cached(cache / f"ppl-torch-{tag}.json",
                        lambda: lm.stage_ppl(loaded.module, loaded.inputs.tokenizer, texts, args.tokens, args.threads))
    for name in folders:
        log(f"perplexity: {name}")
        ppl[name] = cached(cache / f"ppl-{Path(builds[name]['path']).parent.name}-"
                                   f"{Path(builds[name]['path']).name}-{tag}.json",
                           lambda n=name: lm.stage_ppl(og._ort(builds[n]["path"], args.threads, config),
                                                       loaded.inputs.tokenizer, texts, args.tokens, args.threads))
    for name in ANCHORS:
        log(f"perplexity: {name}")
        ppl[name] = cached(cache / f"ppl-{Path(builds[name]['path']).stem}-{tag}.json",
                           lambda n=name: llm_table.gguf_ppl(builds[n]["path"], loaded, texts, args.tokens,
                                                             args.threads))
    res["perplexity"] = ppl

    # 3: decode, interleaved
    ids = prompt_ids(loaded, 1, args.prompt)

    def ab() -> dict[str, Any]:
        gen = _Generator(loaded.module)
        engines: dict[str, Any] = {TORCH: lambda: og._torch_generate(gen, ids, args.new, args.threads)}
        for name in folders:
            module = og._ort(builds[name]["path"], args.threads, config)
            engines[name] = lambda m=module: og._ort_generate(m, ids[0].tolist(), args.new)
        opened = [lm.open_llama(builds[n]["path"], args.threads, args.prompt + args.new + 8, logits_all=False)
                  for n in ANCHORS]
        for name, llm in zip(ANCHORS, opened):
            engines[name] = lambda m=llm: lm.llama_generate(m, ids[0].tolist(), args.new)
        try:
            return lm.stage_ab(engines, ids[0].tolist(), args.threads, args.rounds, args.max_wait)
        finally:
            for llm in opened:
                llm.close()

    log(f"decode, interleaved, {args.threads} threads, {args.rounds} rounds")
    res["ab"] = cached(cache / f"ab-p{args.prompt}-n{args.new}-t{args.threads}-r{args.rounds}.json", ab)
    res["bandwidth"] = cached(cache / f"bw-t{args.threads}.json",
                              lambda: {"stats": to_dict(measure_read_bandwidth(args.threads))})
    # weights that fit in the last-level cache are read from it, not from memory, step after step: their bound is
    # the cache's read bandwidth (a buffer of half the cache), beside the memory roofline
    llc = last_level_cache_bytes()
    if llc:
        res["cache_bandwidth"] = cached(cache / f"bw-llc-half-t{args.threads}.json",
                                        lambda: {"stats": to_dict(measure_read_bandwidth(args.threads, llc // 2)),
                                                 "last_level_cache_bytes": llc})

    # 4: peak RSS, one fresh process per engine
    peaks = {}
    for name in [TORCH, *folders, *ANCHORS]:
        kind = "torch" if name == TORCH else "llamacpp" if name in ANCHORS else "ortgenai"
        log(f"peak RSS: {name}")
        peaks[name] = cached(cache / f"rss-{name.replace(' ', '-').replace('(', '').replace(')', '')}-p{args.prompt}"
                                     f"-n{args.new}.json",
                             lambda k=kind, n=name: og.peak_rss(k, builds[n].get("path", ""), args.threads,
                                                                ids[0].tolist(), args.new))
    res["peak_rss"] = peaks
    context = args.prompt + args.new - 1
    res["kv_bytes"] = {n: kv_cache_stats(config, context, 1, 2 if n in ANCHORS else 4).bytes for n in builds}
    meta = finish_meta(meta)
    reused = [k for k, v in {**ppl, "ab": res["ab"]}.items() if isinstance(v, dict) and v.get("reused")]
    if reused:
        meta["resumed"] = f"stages reused from {cache}: {', '.join(reused)}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "llm_w8a8.json").write_text(json.dumps({"meta": meta, "args": {k: str(v) for k, v in
                                                                               vars(args).items()}, **res},
                                                      indent=1, default=str))
    write_report(meta, res, args, folders)
    log(f"wrote {RESULTS / 'llm_w8a8.md'} and .json")


def goal_rows(res: dict, models: list[str], bw: float) -> list[dict[str, str]]:
    """Per model: decode >= 4x torch fp32 eager, >= llama.cpp Q4_K_M, within 1.5x of the roofline."""
    engines = res["ab"]["engines"]

    def verdict(a: str, b: str, target: float) -> str:
        value, (lo, hi) = ratio_summary(engines[a]["decode_step_ms"], engines[b]["decode_step_ms"])
        word = "yes" if lo >= target else "no" if hi < target else "not resolved"
        return f"{word} ({value:.2f}x [{lo:.2f}, {hi:.2f}])"

    def within(tok_s: float, roofline: float) -> str:
        return f"{'yes' if tok_s >= roofline / 1.5 else 'no'} ({tok_s:.0f} of {roofline:.0f} tok/s, " \
               f"{tok_s / roofline * 100:.0f}%)"

    cache = res.get("cache_bandwidth")
    rows = []
    for name in models:
        step = res["builds"][name]["read_bytes"] + res["kv_bytes"][name]
        tok_s = engines[name]["decode_tok_s"]["median"]
        fits = cache is not None and step < cache["last_level_cache_bytes"]
        rows.append({"model": name, "decode >= 4x torch fp32": verdict(TORCH, name, 4.0),
                     "decode >= Q4_K_M": verdict(Q4KM, name, 1.0),
                     "within 1.5x of the memory roofline": within(tok_s, bw / step),
                     "within 1.5x of the cache roofline": within(tok_s, cache["stats"]["bytes_per_s"] / step)
                     if fits else "(does not fit in the cache)"})
    return rows


def pairs(folders: list[str]) -> list[tuple[str, str]]:
    """(a, b) pairs whose ratio b over a the reading needs: smoothing against none at each block, block 128 against
    32, and every W8A8 folder against llama.cpp's own 8-bit file."""
    w8a8 = [n for n in folders if n != ORT_FP32]
    plain = {n.split()[1]: n for n in w8a8 if "alpha 0)" in n}
    smooth = {n.split()[1]: n for n in w8a8 if "SmoothQuant" in n}
    out = [(plain[b], smooth[b]) for b in plain if b in smooth]
    if {"b32", "b128"} <= set(smooth):
        out.append((smooth["b32"], smooth["b128"]))
    return out + [(Q8, n) for n in w8a8]


def write_report(meta: dict, res: dict, args, folders: list[str]) -> None:
    ppl, ab, builds, peaks = res["perplexity"], res["ab"], res["builds"], res["peak_rss"]
    engines = ab["engines"]
    bw = res["bandwidth"]["stats"]["bytes_per_s"]
    base_ppl = ppl[TORCH]["stats"]["token_perplexity"]
    names = [TORCH, *folders, *ANCHORS]

    def ratio(a: str, b: str, key: str) -> str:
        return ratio_text(engines[a][key], engines[b][key])

    rows = []
    for name in names:
        e, b = engines[name], builds[name]
        value = ppl[name]["stats"]["token_perplexity"]
        roofline = bw / (b["read_bytes"] + res["kv_bytes"][name])
        rows.append({
            "engine": name, "bytes on disk": f"{b['bytes'] / 2**20:.1f} MiB",
            "bytes a step reads": f"{b['read_bytes'] / 1e6:.0f} MB",
            "test ppl": f"{value:.3f}", "vs fp32": f"{(value / base_ppl - 1) * 100:+.2f}%",
            "prefill tok/s [95% CI]": lm.fmt_ci(e["prefill_tok_s"], 0), "TTFT ms": f"{e['ttft_ms']['median']:.0f}",
            "decode tok/s [95% CI]": lm.fmt_ci(e["decode_tok_s"]),
            "decode x torch fp32 [CI]": "" if name == TORCH else ratio(TORCH, name, "decode_step_ms"),
            "decode x ORT fp32 [CI]": "" if name in (TORCH, ORT_FP32) else ratio(ORT_FP32, name, "decode_step_ms"),
            "decode x Q4_K_M [CI]": "" if name in (TORCH, Q4KM) else ratio(Q4KM, name, "decode_step_ms"),
            "% of memory roofline": f"{e['decode_tok_s']['median'] / roofline * 100:.0f}%",
            "peak RSS": f"{peaks[name]['peak_rss_bytes'] / 2**20:.0f} MiB"})
    choice = []
    for block, step in res["method"].items():
        d = step["details"]
        tried = ", ".join(f"alpha {t['alpha']:g}: {t['metric']:.3f}" for t in d["tried"])
        calib = d.get("calibration", {})
        choice.append(f"- block {block}: {tried} on the first {args.eval_tokens:,} tokens of `valid.txt` "
                      f"(onnxruntime on each folder) -> alpha {d['alpha']:g}; calibration "
                      f"{calib.get('windows')} x {calib.get('tokens_per_window')} tokens of the {calib.get('split')} "
                      f"split in {calib.get('seconds', 0):.0f} s, peak RSS {calib.get('peak_rss_bytes', 0) / 2**20:.0f} "
                      f"MiB (the whole process; the ranges' collection raised it by "
                      f"{calib.get('rss_increase_bytes', 0) / 1e6:.0f} MB); the whole step {step['seconds'] / 60:.1f} "
                      "min")
    skipped = builds[folders[0]]["weight_bytes"] - builds[folders[0]]["read_bytes"]
    goals = goal_rows(res, [n for n in folders if n != ORT_FP32], bw)
    tokens = {n: engines[n].get(f"greedy_tokens_equal_to_{TORCH}") for n in names[1:]}
    build = res["llama_cpp_build"]
    lines = ["# W8A8 on a CPU: SmolLM2-135M with int8-smoothquant on ONNX Runtime GenAI, beside plain W8A8, fp32 and "
             "llama.cpp Q8_0 / Q4_K_M", "",
             *header_lines(meta),
             f"- llama.cpp: llama-cpp-python {build['version']}, {build['system_info']}",
             f"- model: {res['model']}; torch holds the weights dequantized to float32; every other engine is built "
             f"from those float32 weights",
             "- W8A8 folders: `int8-smoothquant` (sizewise): SmoothQuant scales folded into the RMSNorms (q/k/v, "
             "gate/up inputs) and the up projection (down's input), then ORT GenAI's builder writes every projection "
             "and the output matrix as symmetric int8 `MatMulNBits` at accuracy level 4 (the CPU kernel quantizes "
             "the activations to int8 per block and multiplies int8 by int8); the token embedding stays float32",
             f"- decisions on validation (alpha, below); every number in the table on test: the first "
             f"{args.tokens:,} tokens of WikiText-2 `wiki.test.raw`, context 1024, stride 512, the same token ids "
             f"on every engine",
             f"- decode: greedy, {args.prompt} prompt tokens then {args.new} new, batch 1, {args.threads} threads, "
             f"{ab['rounds']} interleaved rounds after one warm-up round; other processes' CPU during the rounds "
             f"{ab['load'].get('others_cores', float('nan')):.2f} cores; ratios are medians of per-round ratios with "
             f"a distribution-free 95% interval, floored; roofline = read bandwidth {bw / 1e9:.1f} GB/s / (weight "
             f"bytes a step reads + KV cache at {args.prompt + args.new - 1} tokens: float32 for torch and ORT "
             f"GenAI, f16 for llama.cpp); a step reads every weight but one row of a token embedding that is not the "
             f"output matrix (the W8A8 folders' float32 table, {skipped / 2**20:.0f} MiB, looked up by a Gather; "
             f"SmolLM2's tied matrix "
             f"is read whole as the output projection elsewhere)",
             "- peak RSS: the whole process in a fresh process, high-water mark reset after loading, one generation",
             "", "Alpha chosen on validation (perplexity):", "", *choice, "",
             *md_table(rows, "lrrrrrrrrrrrr"), "",
             "Goals of the LLM issue for these models (a speed goal is met when the 95% interval of the per-round "
             "ratio clears it, missed when it lies below, otherwise not resolved; roofline: the median decode "
             "tokens/s against the roofline; the cache roofline divides the last-level cache's read bandwidth, "
             + (f"{res['cache_bandwidth']['stats']['bytes_per_s'] / 1e9:.1f} GB/s over a buffer of half its "
                f"{res['cache_bandwidth']['last_level_cache_bytes'] / 2**20:.0f} MiB, "
                if res.get("cache_bandwidth") else "")
             + "by the same bytes: the bound for weights that stay in the cache from step to step):", "", *md_table(goals, "lrrrr"), "",
             "Greedy tokens equal to torch fp32's (of " + str(args.new) + "): " + ", ".join(
                 f"{n} {t['equal']}" for n, t in tokens.items() if t) + ".", "",
             "Decode, more pairs from the same rounds [CI]: " + "; ".join(
                 f"{b} over {a}: {ratio(a, b, 'decode_step_ms')}" for a, b in pairs(folders)) + ".", "",
             "Prefill x torch fp32 [CI]: " + ", ".join(f"{n} {ratio(TORCH, n, 'prefill_ms')}" for n in names[1:])
             + ".", ""]
    if getattr(args, "reading", None):
        lines += ["## Reading", "", args.reading.read_text().strip(), ""]
    (RESULTS / "llm_w8a8.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
