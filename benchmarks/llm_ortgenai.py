"""SmolLM2-135M on ONNX Runtime GenAI (fp32, int4 block 32 and 128, built by the library's own model builder) side by
side with torch fp32 eager and llama.cpp's Q4_K_M, in one run on the same text, token ids and threads.

    SIZEWISE_DATA=/work/shared/data .venv/bin/python benchmarks/llm_ortgenai.py   # writes results/llm_ortgenai.md/.json

What runs (each stage cached as JSON under --cache, default /tmp/llm-ortgenai; --force recomputes):

1. the folders: ``sizewise.models.ortgenai.build`` (``onnxruntime_genai.models.builder.create_model`` on the model saved
   with ``save_pretrained``) at fp32 and at int4 (MatMulNBits, symmetric round to nearest, accuracy level 4: int8
   activations in the CPU kernel) with blocks of 32 and 128 weights (SmolLM2's 576-wide rows are 4.5 blocks of 128:
   the quantizer pads the last block, and the weights read back from the graph score what ORT scores, so 128 is
   measured); the anchor, llama.cpp's Q4_K_M, made by ``benchmarks/llm.py``'s helper from an F16 GGUF that sizewise's
   writer wrote, as a llama.cpp user makes it;
2. perplexity of every engine on the first --tokens tokens of ``wiki.test.raw`` through
   :func:`sizewise.tasks.perplexity.perplexity` (context 1024, stride 512, the same token ids; ORT GenAI's logits from
   onnxruntime on the folder's graph), and of each int4 folder's weights read back into torch (fp32 compute: the
   weights' own loss, apart from the CPU kernel's int8 activations);
3. decode: every engine interleaved round by round (``benchmarks/llm_measure.py``'s ``stage_ab``: forward and reversed
   order, one untimed warm-up round, one greedy generation of --new tokens after the same --prompt ids per engine per
   round) at --threads; torch through sizewise's greedy loop, ORT GenAI through its ``Generator``, llama.cpp through
   its low-level API; the read bandwidth right after, for each engine's roofline;
4. peak RSS: each engine loaded in a fresh spawned process, the high-water mark reset after loading, one generation
   of the same length; the peak is the process's whole resident set (Python and libraries included).

Nothing is chosen here, so no validation split is needed: every number is on the test text.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llm as llm_table  # noqa: E402  (llama_quantize, gguf_ppl: how the LLM table builds and scores Q4_K_M)
import llm_measure as lm  # noqa: E402  (stage_ab, stage_ppl, llama_generate, open_llama, wait_quiet, fmt_ci)
from _common import (  # noqa: E402
    DATA,
    RESULTS,
    cached,
    finish_meta,
    header_lines,
    log,
    md_table,
    new_meta,
    ratio_text,
)

VERSIONED = ("sizewise", "torch", "transformers", "onnxruntime", "onnxruntime-genai", "onnx", "llama_cpp_python",
             "gguf", "numpy")
TORCH, ANCHOR = "torch fp32 eager", "llama.cpp Q4_K_M"
# name -> (precision, block size) of a folder built by ORT GenAI's builder
FOLDERS = {"ORT GenAI fp32": ("fp32", None), "ORT GenAI int4 b32": ("int4", 32), "ORT GenAI int4 b128": ("int4", 128)}


# --------------------------------------------------------------------------------------------- engines


def _ort(path: str, threads: int, config):
    from sizewise.models.ortgenai import OrtGenAIModule

    return OrtGenAIModule(path, threads=threads, config=config)


def _ort_generate(module, ids: list[int], new: int) -> dict[str, Any]:
    run = module.generate_timed(ids, new)
    return {"ttft_ms": run.ttft_ns / 1e6, "step_ms": [s / 1e6 for s in run.step_ns], "tokens": run.tokens}


def _torch_generate(gen, ids, new: int, threads: int) -> dict[str, Any]:
    import torch

    from sizewise.measure.latency import torch_threads

    with torch_threads(threads), torch.inference_mode():
        run = gen.run(ids, new)
    return {"ttft_ms": run.ttft_ns / 1e6, "step_ms": [s / 1e6 for s in run.step_ns],
            "tokens": run.tokens[0].tolist()}


def _hwm() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))


def _peak_child(kind: str, path: str, threads: int, ids: list[int], new: int) -> dict[str, Any]:
    """In a fresh process: load one engine, reset the RSS high-water mark, generate once; the peak and the RSS after
    loading (bytes, the whole process)."""
    import psutil
    import torch

    torch.set_num_threads(threads)
    if kind == "torch":
        import sizewise
        from sizewise.measure.llm import _Generator

        loaded = sizewise.load("smollm2-135m")
        engine = lambda: _torch_generate(_Generator(loaded.module), torch.tensor([ids]), new, threads)  # noqa: E731
    elif kind == "ortgenai":
        module = _ort(path, threads, None)
        module.genai_model()
        engine = lambda: _ort_generate(module, ids, new)  # noqa: E731
    else:
        llm = lm.open_llama(path, threads, len(ids) + new + 8, logits_all=False)
        engine = lambda: lm.llama_generate(llm, ids, new)  # noqa: E731
    loaded_rss = psutil.Process().memory_info().rss
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")
    engine()
    return {"peak_rss_bytes": _hwm(), "rss_after_loading_bytes": loaded_rss,
            "method": "VmHWM of a fresh spawned process, reset after loading, over one generation"}


def peak_rss(kind: str, path: str, threads: int, ids: list[int], new: int) -> dict[str, Any]:
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_peak_child, kind, path, threads, ids, new).result(timeout=900)


# --------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=2048, help="perplexity on the first N tokens of the test text")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4, help="interleaved decode rounds")
    lm.add_decode_options(parser, cache="/tmp/llm-ortgenai")
    args = lm.parse_decode_args(parser)
    meta = new_meta(VERSIONED)

    import torch

    import sizewise
    from sizewise.core.serialize import to_dict
    from sizewise.measure.llm import _Generator, kv_cache_stats, measure_read_bandwidth, prompt_ids, weights_bytes
    from sizewise.measure.ortgenai import bytes_by_dtype, folder_size
    from sizewise.models.gguf_writer import write_gguf
    from sizewise.models.ortgenai import build, load_weights
    from sizewise.tasks.perplexity import split_texts

    torch.set_num_threads(args.threads)
    cache = args.cache
    cache.mkdir(parents=True, exist_ok=True)
    log("loading smollm2-135m and WikiText-2")
    loaded = sizewise.load("smollm2-135m")
    texts = split_texts(sizewise.load_dataset(str(DATA / "wikitext2")), "test")
    config = loaded.module.config
    res: dict[str, Any] = {"llama_cpp_build": lm.llama_build(), "model": loaded.metadata.get("name")}

    # 1: the folders and the anchor
    builds: dict[str, dict[str, Any]] = {}
    for name, (precision, block) in FOLDERS.items():
        folder = cache / name.lower().replace(" ", "-")

        def make(precision=precision, block=block, folder=folder) -> dict[str, Any]:
            log(f"building {folder.name} with ORT GenAI's model builder")
            started = time.perf_counter()
            build(loaded.module, loaded.inputs.tokenizer, folder, precision, block_size=block or 32)
            return {"path": str(folder), "seconds": time.perf_counter() - started}

        builds[name] = cached(cache / f"build-{folder.name}.json", make)
        size = folder_size(builds[name]["path"])
        builds[name].update(bytes=size.disk_bytes, weight_bytes=size.memory_bytes, by_dtype=size.memory_by_dtype,
                            files=size.artifact)
    f16, q4km = cache / "smollm2-f16.gguf", cache / "smollm2-q4_k_m.gguf"
    if not q4km.is_file():
        log("writing the F16 GGUF, then llama.cpp's Q4_K_M from it")
        write_gguf(loaded.module, loaded.inputs.tokenizer, f16, default="F16",
                   source_gguf=loaded.metadata["gguf"]["path"], name="smollm2-135m-f16")
        llm_table.llama_quantize(f16, q4km, "LLAMA_FTYPE_MOSTLY_Q4_K_M", args.threads)
    builds[ANCHOR] = {"path": str(q4km), "bytes": q4km.stat().st_size, "weight_bytes": lm.gguf_tensor_bytes(str(q4km))}
    fp32_bytes = weights_bytes(loaded.module)
    builds[TORCH] = {"bytes": fp32_bytes, "weight_bytes": fp32_bytes,
                     "note": "float32 weights as safetensors (each tied tensor once)"}
    res["builds"] = builds

    # 2: perplexity on test
    tag = f"n{args.tokens}"
    ppl: dict[str, Any] = {}
    log(f"perplexity: {TORCH}")
    ppl[TORCH] = cached(cache / f"ppl-torch-{tag}.json",
                        lambda: lm.stage_ppl(loaded.module, loaded.inputs.tokenizer, texts, args.tokens, args.threads))
    for name in FOLDERS:
        log(f"perplexity: {name}")
        ppl[name] = cached(cache / f"ppl-{Path(builds[name]['path']).name}-{tag}.json",
                           lambda n=name: lm.stage_ppl(_ort(builds[n]["path"], args.threads, config),
                                                       loaded.inputs.tokenizer, texts, args.tokens, args.threads))
    for name, (precision, _) in FOLDERS.items():
        if precision != "int4":
            continue
        # the folder's int4 weights read back into torch, fp32 compute: the weights' own loss, without the int8
        # activations of accuracy level 4
        log(f"perplexity: {name} weights in torch (fp32 compute)")
        ppl[f"{name} weights, torch"] = cached(
            cache / f"ppl-twin-{Path(builds[name]['path']).name}-{tag}.json",
            lambda n=name: lm.stage_ppl(load_weights(copy.deepcopy(loaded.module), builds[n]["path"]),
                                        loaded.inputs.tokenizer, texts, args.tokens, args.threads))
    log(f"perplexity: {ANCHOR}")
    ppl[ANCHOR] = cached(cache / f"ppl-q4km-{tag}.json",
                         lambda: llm_table.gguf_ppl(str(q4km), loaded, texts, args.tokens, args.threads))
    res["perplexity"] = ppl

    # 3: decode, interleaved
    ids = prompt_ids(loaded, 1, args.prompt)

    def ab() -> dict[str, Any]:
        gen = _Generator(loaded.module)
        engines: dict[str, Any] = {TORCH: lambda: _torch_generate(gen, ids, args.new, args.threads)}
        for name in FOLDERS:
            module = _ort(builds[name]["path"], args.threads, config)
            engines[name] = lambda m=module: _ort_generate(m, ids[0].tolist(), args.new)
        llm = lm.open_llama(str(q4km), args.threads, args.prompt + args.new + 8, logits_all=False)
        engines[ANCHOR] = lambda: lm.llama_generate(llm, ids[0].tolist(), args.new)
        try:
            return lm.stage_ab(engines, ids[0].tolist(), args.threads, args.rounds, args.max_wait)
        finally:
            llm.close()

    log(f"decode, interleaved, {args.threads} threads, {args.rounds} rounds")
    res["ab"] = cached(cache / f"ab-p{args.prompt}-n{args.new}-t{args.threads}-r{args.rounds}.json", ab)
    res["bandwidth"] = cached(cache / f"bw-t{args.threads}.json",
                              lambda: {"stats": to_dict(measure_read_bandwidth(args.threads))})

    # 4: peak RSS, one fresh process per engine
    peaks = {}
    for name, kind in [(TORCH, "torch"), *((n, "ortgenai") for n in FOLDERS), (ANCHOR, "llamacpp")]:
        log(f"peak RSS: {name}")
        peaks[name] = cached(cache / f"rss-{name.replace(' ', '-')}-p{args.prompt}-n{args.new}.json",
                             lambda k=kind, n=name: peak_rss(k, builds[n].get("path", ""), args.threads,
                                                             ids[0].tolist(), args.new))
    res["peak_rss"] = peaks
    context = args.prompt + args.new - 1
    res["kv_bytes"] = {TORCH: kv_cache_stats(config, context, 1, 4).bytes, ANCHOR: kv_cache_stats(config, context, 1,
                                                                                                   2).bytes,
                       **{n: kv_cache_stats(config, context, 1, 4).bytes for n in FOLDERS}}
    res["int4_initializers"] = {n: bytes_by_dtype(builds[n]["path"]) for n in FOLDERS}
    meta = finish_meta(meta)
    reused = [k for k, v in {**ppl, "ab": res["ab"]}.items() if isinstance(v, dict) and v.get("reused")]
    if reused:
        meta["resumed"] = f"stages reused from {cache}: {', '.join(reused)}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "llm_ortgenai.json").write_text(json.dumps({"meta": meta, "args": {k: str(v) for k, v in
                                                                                   vars(args).items()}, **res},
                                                          indent=1, default=str))
    write_report(meta, res, args)
    log(f"wrote {RESULTS / 'llm_ortgenai.md'} and .json")


def write_report(meta: dict, res: dict, args) -> None:
    ppl, ab, builds, peaks = res["perplexity"], res["ab"], res["builds"], res["peak_rss"]
    engines = ab["engines"]
    bw = res["bandwidth"]["stats"]["bytes_per_s"]
    base_ppl = ppl[TORCH]["stats"]["token_perplexity"]
    names = [TORCH, *FOLDERS, ANCHOR]

    def ratio(a: str, b: str, key: str) -> str:
        return ratio_text(engines[a][key], engines[b][key])

    rows = []
    for name in names:
        e, b = engines[name], builds[name]
        value = ppl[name]["stats"]["token_perplexity"]
        roofline = bw / (b["weight_bytes"] + res["kv_bytes"][name])
        rows.append({
            "engine": name, "bytes on disk": f"{b['bytes'] / 2**20:.1f} MiB",
            "% of fp32": f"{b['bytes'] / builds[TORCH]['bytes'] * 100:.1f}%",
            "test ppl": f"{value:.3f}", "vs fp32": f"{(value / base_ppl - 1) * 100:+.2f}%",
            "prefill tok/s [95% CI]": lm.fmt_ci(e["prefill_tok_s"], 0), "TTFT ms": f"{e['ttft_ms']['median']:.0f}",
            "decode tok/s [95% CI]": lm.fmt_ci(e["decode_tok_s"]),
            "decode x torch fp32 [CI]": "" if name == TORCH else ratio(TORCH, name, "decode_step_ms"),
            "decode x Q4_K_M [CI]": "" if name == ANCHOR else ratio(ANCHOR, name, "decode_step_ms"),
            "% of roofline": f"{e['decode_tok_s']['median'] / roofline * 100:.0f}%",
            "peak RSS": f"{peaks[name]['peak_rss_bytes'] / 2**20:.0f} MiB"})
    tokens = {n: engines[n].get(f"greedy_tokens_equal_to_{TORCH}") for n in names[1:]}
    build = res["llama_cpp_build"]
    lines = ["# SmolLM2-135M on ONNX Runtime GenAI (fp32, int4) beside torch fp32 eager and llama.cpp Q4_K_M", "",
             *header_lines(meta),
             f"- llama.cpp: llama-cpp-python {build['version']}, {build['system_info']}",
             f"- model: {res['model']}; torch holds the weights dequantized to float32; every other engine is built "
             f"from those float32 weights",
             "- ORT GenAI folders: `onnxruntime_genai.models.builder.create_model` (CPU execution provider) on the "
             "model saved with `save_pretrained`; int4 = MatMulNBits, symmetric round to nearest, accuracy level 4 "
             "(int8 activations in the CPU kernel); the tied embedding is int4 too (GatherBlockQuantized on the output "
             "matrix's blocks); block 128 pads SmolLM2's 576-wide rows to 5 blocks (4.5 x 128)",
             f"- perplexity: the first {args.tokens:,} tokens of WikiText-2 `wiki.test.raw`, context 1024, stride "
             f"512, the same token ids on every engine (ORT GenAI's logits from onnxruntime on the folder's graph); "
             f"nothing is chosen in this benchmark, so no validation split is used or needed",
             f"- decode: greedy, {args.prompt} prompt tokens then {args.new} new, batch 1, {args.threads} threads, "
             f"{ab['rounds']} interleaved rounds after one warm-up round (order {ab['order']}); other processes' CPU "
             f"during the rounds {ab['load'].get('others_cores', float('nan')):.2f} cores; ratios are medians of "
             f"per-round ratios with a distribution-free 95% interval, floored; roofline = read bandwidth "
             f"{bw / 1e9:.1f} GB/s / (weight bytes + KV cache at {args.prompt + args.new - 1} tokens: float32 for "
             f"torch and ORT GenAI, f16 for llama.cpp)",
             "- bytes on disk: the ORT GenAI folder (graph, weights, genai_config.json, tokenizer), the GGUF file, "
             "torch's float32 weights; peak RSS: the whole process (Python and libraries included) in a fresh process, "
             "high-water mark reset after loading, over one generation",
             "", *md_table(rows, "lrrrrrrrrrrr"), "",
             "Where the int4 loss comes from: the same folders' int4 weights read back into torch (fp32 compute) "
             "score " + ", ".join(f"{n} {ppl[f'{n} weights, torch']['stats']['token_perplexity']:.3f}"
                                  for n in FOLDERS if f"{n} weights, torch" in ppl)
             + " (ORT GenAI with int8 activations: " + ", ".join(
                 f"{n} {ppl[n]['stats']['token_perplexity']:.3f}" for n in FOLDERS if f"{n} weights, torch" in ppl)
             + ").", "",
             "Greedy tokens equal to torch fp32's (of " + str(args.new) + "): " + ", ".join(
                 f"{n} {t['equal']}" + (f" (first difference at {t['first_difference']})"
                                        if t["first_difference"] is not None else "")
                 for n, t in tokens.items() if t) + ".", "",
             "Prefill x torch fp32 [CI]: " + ", ".join(f"{n} {ratio(TORCH, n, 'prefill_ms')}" for n in names[1:])
             + ".", "",
             "Build time: " + ", ".join(f"{n} {builds[n]['seconds']:.0f} s" for n in FOLDERS
                                        if "seconds" in builds[n]) + ".", ""]
    if getattr(args, "reading", None):
        lines += ["## Reading", "", args.reading.read_text().strip(), ""]
    (RESULTS / "llm_ortgenai.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
