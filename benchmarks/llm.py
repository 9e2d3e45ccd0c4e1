"""The LLM table: SmolLM2-135M on WikiText-2, every 4/8-bit GGUF that sizewise writes beside llama.cpp's own
quantization of the same model (Q8_0, Q4_K_M), and torch fp32 / bf16 eager, in one run.

    .venv/bin/python benchmarks/llm.py        # writes benchmarks/results/llm.md and llm.json (~30-40 min, 2 cores)

What runs, in order (each stage cached as JSON under --cache, default /tmp/llm-table, so a crash loses one stage):

1. the float model (SmolLM2's Q4_1 file, dequantized by transformers) is written as an F16 GGUF by sizewise's
   writer; llama.cpp's ``llama_model_quantize`` turns that file into Q8_0 and Q4_K_M: the anchors, made the way a
   llama.cpp user makes them (from a 16-bit file);
2. sizewise's 4-bit files: round to nearest (``int4-rtn``) on the asymmetric Q4_1 and symmetric Q4_0 grids at group
   32, the symmetric grid at group 64 (two GGUF blocks share a scale: same bytes, coarser grid; 128, the usual
   coarse setting, does not divide the model's 576 columns), and NNCF's AWQ +
   scale estimation (``int4-awq``) on both grids, calibrated on the validation text (WikiText-2 here has no train
   file); the token embedding is Q8_0 in all of them, as ``sizewise quantize`` writes it; and the budgeted mix,
   ``sizewise quantize --method int4-awq --symmetric --max-size <Q4_K_M's bytes>`` run as the product runs it
   (the AWQ Q4_0 codes, then the layers that remove the most output error per byte raised to Q5_0 / Q8_0 until the
   file reaches llama.cpp's Q4_K_M file size);
3. perplexity of every GGUF file on llama.cpp and of the torch models, on the first --tokens tokens of
   ``wiki.test.raw`` (context 1024, stride 512, the same windows and token ids for every engine);
4. decode speed: torch fp32 eager and every GGUF on llama.cpp, interleaved round by round (ABBA order, one greedy
   generation of --new tokens after the same --prompt ids per engine per round), at --threads; the read bandwidth
   measured right after, for each file's roofline (tensor bytes + KV cache read once per step).

Caveat stated in the result: SmolLM2-135M ships as Q4_1 (group 32, float minimum), so round to nearest on that grid
gives the float weights back exactly and any 4-bit method on the Q4_1 grid looks lossless; the Q4_0 (symmetric) and
group-64 rows are the ones where the quantizers differ. Decisions: none are made here (nothing is chosen); every
number is on the test text, the calibration reads the validation text only.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llm_measure as lm  # noqa: E402  (its llama.cpp helpers: windows for perplexity, the timed greedy loop)
from _common import (  # noqa: E402
    DATA,
    RESULTS,
    cached,
    finish_meta,
    header_lines,
    log,
    md_table,
    new_meta,
)

VERSIONED = ("sizewise", "torch", "transformers", "nncf", "llama_cpp_python", "gguf", "numpy")
# name -> (algorithm, symmetric, group size); every one a 4-bit GGUF written by sizewise
SIZEWISE_FILES = {
    "sizewise int4-rtn Q4_1 g32": ("rtn", False, 32),
    "sizewise int4-rtn Q4_0 g32": ("rtn", True, 32),
    "sizewise int4-rtn Q4_0 g64": ("rtn", True, 64),  # 128 does not divide SmolLM2's 576 columns
    "sizewise int4-awq Q4_1 g32": ("awq+scale-estimation", False, 32),
    "sizewise int4-awq Q4_0 g32": ("awq+scale-estimation", True, 32),
}
LLAMA_TYPES = {"llama.cpp Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "llama.cpp Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}


def llama_quantize(source: Path, target: Path, ftype: str, threads: int) -> Path:
    """llama.cpp's own quantizer on ``source`` (what ``llama-quantize`` does)."""
    llama_cpp = lm.llama_module()
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = threads
    params.ftype = getattr(llama_cpp, ftype)
    tmp = target.with_name(target.name + ".part")
    rc = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), params)
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({ftype}) returned {rc}")
    tmp.replace(target)
    return target


def sizewise_file(loaded, windows, algorithm: str, symmetric: bool, group: int, path: Path) -> dict[str, Any]:
    """A 4-bit GGUF as ``sizewise quantize --method int4-*`` writes it with no layer kept at 8 bits."""
    import torch

    from sizewise.compress.quantize.llm import _apply
    from sizewise.measure.memory import PeakRss
    from sizewise.compress.quantize.llm_codes import linear_weights, nncf_codes, rtn_codes
    from sizewise.models.gguf_writer import write_gguf

    source = loaded.module.eval()
    started = time.perf_counter()
    with PeakRss() as rss, torch.no_grad():
        if algorithm == "rtn":
            codes = {n: rtn_codes(m.weight, group, symmetric) for n, m in linear_weights(source).items()}
        else:
            codes = nncf_codes(source, windows, group, symmetric, awq=True, scale_estimation=True)
    seconds = time.perf_counter() - started
    carrier = copy.deepcopy(source)
    _apply(carrier, source, codes, "Q8_0", set())
    write_gguf(carrier, loaded.inputs.tokenizer, path, codes=codes,
               encodings={"model.embed_tokens.weight": "Q8_0", "lm_head.weight": "Q8_0"}, default="F32",
               source_gguf=(loaded.metadata.get("gguf") or {}).get("path"), name=path.stem)
    return {"path": str(path), "seconds": seconds, "peak_rss_bytes": rss.peak, "rss_increase_bytes": rss.peak - rss.start}


MIXED = "sizewise int4-awq Q4_0 g32 + Q5_0/Q8_0 at Q4_K_M's bytes"


def mixed_file(loaded, data, cap: int, windows: int, path: Path) -> dict[str, Any]:
    """The int4-awq step with ``max_bytes``: what ``sizewise quantize ... --max-size`` writes."""
    import shutil

    from sizewise.compress.quantize.llm import LLMWeightInt4, quantize_llm
    from sizewise.compress.registry import StepContext

    started = time.perf_counter()
    out = quantize_llm(loaded, LLMWeightInt4(symmetric=True, max_bytes=cap, calibration_samples=windows),
                       StepContext(data=data, workdir=path.parent / "mixed-work", progress=log))
    shutil.copy(out.model.metadata["gguf_file"], path)
    d = out.details
    return {"path": str(path), "seconds": time.perf_counter() - started, "cap_bytes": cap,
            "kept_8bit": d["kept_8bit"], "kept_5bit": d["kept_5bit"], "peak_rss_bytes": d["calibration"]["peak_rss_bytes"],
            "rss_increase_bytes": d["calibration"]["rss_increase_bytes"]}


def gguf_ppl(path: str, loaded, texts, tokens: int, threads: int) -> dict[str, Any]:
    llm = lm.open_llama(path, threads, lm.CONTEXT, logits_all=True)
    try:
        return lm.stage_ppl(lm.LlamaWindows(llm, loaded.module.config), loaded.inputs.tokenizer, texts, tokens,
                            threads)
    finally:
        llm.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=8192, help="perplexity on the first N tokens of the test text")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4, help="interleaved decode rounds")
    parser.add_argument("--windows", type=int, default=16, help="calibration windows of 512 tokens for int4-awq")
    lm.add_decode_options(parser, cache="/tmp/llm-table", reading=False)
    args = lm.parse_decode_args(parser)
    meta = new_meta(VERSIONED)

    import torch

    import sizewise
    from sizewise.compress.quantize.config import HalfPrecision
    from sizewise.compress.quantize.llm import calibration_windows
    from sizewise.compress.quantize.torch_backend import quantize_torch
    from sizewise.core.serialize import to_dict
    from sizewise.measure.llm import kv_cache_stats, measure_read_bandwidth, prompt_ids, weights_bytes
    from sizewise.models.gguf_writer import write_gguf
    from sizewise.tasks.perplexity import split_texts

    torch.set_num_threads(args.threads)
    cache = args.cache
    cache.mkdir(parents=True, exist_ok=True)
    log("loading smollm2-135m and WikiText-2")
    loaded = sizewise.load("smollm2-135m")
    ds = sizewise.load_dataset(str(DATA / "wikitext2"))
    texts = split_texts(ds, "test")
    windows, calib_split = calibration_windows(loaded, ds.without_test(), args.windows, 512)
    build = lm.llama_build()
    res: dict[str, Any] = {"llama_cpp_build": build, "calibration": {"split": calib_split, "windows": len(windows),
                                                                      "tokens_per_window": 512}}

    # 1-2: the files
    f16 = cache / "smollm2-f16.gguf"
    if not f16.is_file():
        log("writing the F16 GGUF")
        write_gguf(loaded.module, loaded.inputs.tokenizer, f16, default="F16",
                   source_gguf=loaded.metadata["gguf"]["path"], name="smollm2-135m-f16")
    files: dict[str, dict[str, Any]] = {"SmolLM2 as shipped (Q4_1)": {"path": loaded.metadata["gguf"]["path"]},
                                        "F16 (sizewise writer)": {"path": str(f16)}}
    for name, ftype in LLAMA_TYPES.items():
        target = cache / f"smollm2-{name.split()[-1].lower()}.gguf"  # smollm2-q4_k_m.gguf
        if not target.is_file():
            log(f"llama.cpp quantize -> {name}")
            llama_quantize(f16, target, ftype, args.threads)
        files[name] = {"path": str(target)}
    for name, (algorithm, symmetric, group) in SIZEWISE_FILES.items():
        path = cache / (name.replace(" ", "-").replace("+", "") + ".gguf")
        log(f"writing {name}")
        files[name] = cached(cache / f"file-{path.stem}.json",
                             lambda a=algorithm, s=symmetric, g=group, p=path: sizewise_file(loaded, windows, a, s, g, p))
    cap = Path(files["llama.cpp Q4_K_M"]["path"]).stat().st_size
    log(f"writing {MIXED}")
    files[MIXED] = cached(cache / f"file-mixed-{cap}.json",
                          lambda: mixed_file(loaded, ds.without_test(), cap, args.windows, cache / "sizewise-mixed.gguf"))
    for name, f in files.items():
        f["bytes"] = Path(f["path"]).stat().st_size
        f["tensor_bytes"] = lm.gguf_tensor_bytes(f["path"])

    # 3: perplexity on test
    tag = f"n{args.tokens}"
    bf16, _ = quantize_torch(loaded, HalfPrecision("bf16", runtime="torch"))
    ppl: dict[str, Any] = {}
    for name, model in (("torch fp32", loaded), ("torch bf16", bf16)):
        log(f"perplexity: {name}")
        ppl[name] = cached(cache / f"ppl-{name.replace(' ', '-')}-{tag}.json",
                           lambda m=model: lm.stage_ppl(m.module, loaded.inputs.tokenizer, texts, args.tokens,
                                                        args.threads))
    for name, f in files.items():
        log(f"perplexity: {name} on llama.cpp")
        ppl[name] = cached(cache / f"ppl-{Path(f['path']).stem}-{tag}.json",
                           lambda p=f["path"]: gguf_ppl(p, loaded, texts, args.tokens, args.threads))
    res["perplexity"] = ppl

    # 4: decode, interleaved
    ids = prompt_ids(loaded, 1, args.prompt)[0].tolist()
    gen_tag = f"p{args.prompt}-n{args.new}-t{args.threads}-r{args.rounds}"

    def ab() -> dict[str, Any]:
        from sizewise.measure.energy import EnergySettings
        from sizewise.measure.llm import LLMConfig, measure_generation

        config = LLMConfig(prompt_tokens=args.prompt, new_tokens=args.new, batch_size=1, runs=1, warmup=0,
                           bandwidth=False)
        wb = weights_bytes(loaded.module)

        def torch_fp32():
            g = measure_generation(loaded, config, 1, args.threads, EnergySettings(), None, wb)
            return {"ttft_ms": g.ttft_p50_ms, "step_ms": [g.decode.p50_ms], "tokens": []}

        engines: dict[str, Any] = {"torch fp32": torch_fp32}
        opened = []
        for name, f in files.items():
            if name.startswith("F16"):
                continue  # the quantizers' input, not a deployment candidate
            llm = lm.open_llama(f["path"], args.threads, args.prompt + args.new + 8, logits_all=False)
            opened.append(llm)
            engines[name] = lambda llm=llm: lm.llama_generate(llm, ids, args.new)
        try:
            return lm.stage_ab(engines, ids, args.threads, args.rounds, args.max_wait)
        finally:
            for llm in opened:
                llm.close()

    log(f"decode, interleaved, {args.threads} threads, {args.rounds} rounds")
    res["ab"] = cached(cache / f"ab-{gen_tag}.json", ab)
    res["bandwidth"] = cached(cache / f"bw-t{args.threads}.json",
                              lambda: {"stats": to_dict(measure_read_bandwidth(args.threads))})
    res["files"] = files
    res["fp32_weight_bytes"] = weights_bytes(loaded.module)
    res["bf16_weight_bytes"] = weights_bytes(bf16.module)
    res["kv_bytes_f16"] = kv_cache_stats(loaded.module.config, args.prompt + args.new - 1, 1, 2).bytes
    meta = finish_meta(meta)
    reused = [k for k, v in {**ppl, "ab": res["ab"]}.items() if isinstance(v, dict) and v.get("reused")]
    if reused:
        meta["resumed"] = f"stages reused from {cache}: {', '.join(reused)}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "llm.json").write_text(json.dumps({"meta": meta, "args": {k: str(v) for k, v in vars(args).items()},
                                                  **res}, indent=1, default=str))
    write_report(meta, res, args)
    log(f"wrote {RESULTS / 'llm.md'} and .json")


def write_report(meta: dict, res: dict, args) -> None:
    from _common import floor_to, ratio_summary

    ppl, ab, files = res["perplexity"], res["ab"], res["files"]
    bw = res["bandwidth"]["stats"]["bytes_per_s"]
    base_ppl = ppl["torch fp32"]["stats"]["token_perplexity"]
    engines = ab["engines"]
    rows = []
    for name in ["torch fp32", "torch bf16", *files]:
        f = files.get(name)
        size = f["bytes"] if f else res["fp32_weight_bytes" if name.endswith("fp32") else "bf16_weight_bytes"]
        value = ppl[name]["stats"]["token_perplexity"]
        e = engines.get(name)
        ratio = e.get("speed_ratio_vs_torch fp32", {}).get("decode") if e else None
        per_step = (f["tensor_bytes"] if f else size) + res["kv_bytes_f16"] * (2 if name == "torch fp32" else 1)
        roofline = bw / per_step
        rows.append({
            "model": name, "runtime": "torch eager" if not f else "llama.cpp",
            "bytes": f"{size / 2**20:.1f} MiB", "% of fp32": f"{size / res['fp32_weight_bytes'] * 100:.1f}%",
            "test ppl": f"{value:.3f}", "vs fp32": f"{(value / base_ppl - 1) * 100:+.2f}%",
            "decode tok/s [95% CI]": lm.fmt_ci(e["decode_tok_s"]) if e else "",
            "x torch fp32 decode [CI]": (f"{floor_to(ratio[0], 2):.2f}x [{ratio[1][0]:.2f}, {ratio[1][1]:.2f}]"
                                         if ratio else ""),
            "TTFT ms": f"{e['ttft_ms']['median']:.0f}" if e else "",
            "roofline tok/s": f"{roofline:.0f}" if e else "",
            "% of roofline": f"{e['decode_tok_s']['median'] / roofline * 100:.0f}%" if e else "",
            "calibration": (f"{f['seconds']:.0f} s, +{f['rss_increase_bytes'] / 2**30:.2f} GiB RSS"
                            if f and "seconds" in f else "")})
    q4km = files["llama.cpp Q4_K_M"]
    q4km_ppl = ppl["llama.cpp Q4_K_M"]["stats"]["token_perplexity"]

    def versus(name: str, other: str, target: float) -> str:
        """Decode speed of ``name`` over ``other`` from the interleaved rounds (median of per-round ratios and its
        95% interval): met only when the whole interval clears ``target``, missed when it lies below."""
        ratio, (lo, hi) = ratio_summary(engines[other]["decode_step_ms"], engines[name]["decode_step_ms"])
        verdict = "yes" if lo >= target else "no" if hi < target else "not resolved"
        return f"{verdict} ({ratio:.2f}x [{lo:.2f}, {hi:.2f}])"

    goals = []
    for name, f in files.items():
        if not name.startswith("sizewise"):
            continue
        value = ppl[name]["stats"]["token_perplexity"]
        d = engines[name]["decode_tok_s"]["median"]
        roofline = bw / (f["tensor_bytes"] + res["kv_bytes_f16"])
        goals.append({"sizewise file": name, "bytes <= Q4_K_M": "yes" if f["bytes"] <= q4km["bytes"] else "no",
                      "test ppl <= Q4_K_M": f"{'yes' if value <= q4km_ppl else 'no'} ({value:.3f} vs {q4km_ppl:.3f})",
                      "decode >= 4x torch fp32": versus(name, "torch fp32", 4.0),
                      "decode >= Q4_K_M": versus(name, "llama.cpp Q4_K_M", 1.0),
                      "within 1.5x of roofline": f"{'yes' if d * 1.5 >= roofline else 'no'} "
                                                 f"({d:.0f} of {roofline:.0f} tok/s)"})
    build = res["llama_cpp_build"]
    lines = ["# SmolLM2-135M: sizewise's 4-bit GGUF files beside llama.cpp's Q8_0 / Q4_K_M and torch eager", "",
             *header_lines(meta),
             f"- llama.cpp: llama-cpp-python {build['version']}, {build['system_info']}",
             f"- splits: every perplexity on the first {args.tokens:,} tokens of WikiText-2 `wiki.test.raw` (context "
             f"1024, stride 512, the same token ids on every engine); int4-awq calibrated on "
             f"{res['calibration']['windows']} x 512 tokens of the `{res['calibration']['split']}` text; nothing is "
             f"chosen here, so nothing is decided on test",
             f"- decode: greedy, {args.prompt} prompt tokens then {args.new} new, batch 1, {args.threads} threads, "
             f"{ab['rounds']} interleaved rounds (order {ab['order']}); other processes' CPU during the rounds "
             f"{ab['load'].get('others_cores', float('nan')):.2f} cores; roofline = read bandwidth "
             f"{bw / 1e9:.1f} GB/s (measured after the rounds) / (tensor bytes + fp16 KV cache at "
             f"{args.prompt + args.new - 1} tokens)",
             "- caveat: the model ships as Q4_1 (group 32), so any 4-bit grid of that shape can give its float weights "
             "back: the Q4_1 g32 rows (and the shipped file) are not a test of a quantizer; the Q4_0 and g64 rows "
             "are", "", *md_table(rows, "llrrrrrrrrrl"), "", "## Goals of the LLM issue, per sizewise file", "",
             "A speed goal is met only when the 95% interval of the per-round ratio clears it, missed when the interval "
             "lies below it, otherwise not resolved by this run. The perplexity goal compares single numbers on the "
             "same test tokens.", "", *md_table(goals), ""]
    (RESULTS / "llm.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
