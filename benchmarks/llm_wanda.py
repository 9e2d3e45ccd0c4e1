"""SmolLM2-135M made 50% sparse in one shot: Wanda (``sizewise prune --method wanda``) beside magnitude pruning of the
same layers, unstructured and 2:4, no recovery training.

    .venv/bin/python benchmarks/llm_wanda.py          # writes results/llm_wanda.{md,json} (~10 min, 2 cores)

What runs: every linear layer of the 30 decoder blocks (the tied embedding stays dense, as in the Wanda paper) is
pruned to 50% by (a) |weight| per layer (magnitude), (b) Wanda's |weight| x input-channel norm per layer, on 32 x 512
calibration tokens from the end of WikiText-2's validation text (the shared copy has no train file), and (c, d) the
same two scores under the 2:4 pattern. Each model is scored on the first --tokens tokens of the validation text
(which the calibration windows do not reach) and of the test text; nothing is chosen, so both are reported. Bytes:
the model directory ``sizewise.save_model`` writes (sparse matrices as bitmask + values). Speed is not measured: no
CPU runtime sizewise deploys to (PyTorch, llama.cpp) skips zeros, so these models decode at the dense model's speed.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import time
from pathlib import Path

from _common import DATA, RESULTS, finish_meta, header_lines, log, md_table, new_meta

VERSIONED = ("sizewise", "torch", "transformers", "torchao", "numpy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calibration-samples", type=int, default=32)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/llm-wanda"))
    args = parser.parse_args()

    import torch

    import sizewise
    from sizewise.compress.prune import WandaPrune
    from sizewise.compress.prune.masks import MaskKeeper, magnitude_masks
    from sizewise.compress.prune.unstructured import nm_masks
    from sizewise.compress.prune.wanda import decoder_linear_weights
    from sizewise.compress.registry import StepContext, get_method
    from sizewise.tasks.perplexity import PerplexityConfig, perplexity, split_texts

    torch.set_num_threads(args.threads)
    meta = new_meta(VERSIONED)
    log("loading smollm2-135m and WikiText-2")
    base = sizewise.load("smollm2-135m")
    ds = sizewise.load_dataset(str(DATA / "wikitext2"))
    texts = {split: split_texts(ds, split) for split in ("validation", "test")}
    calibration = ds.without_test()

    def magnitude(loaded, pattern):
        weights = decoder_linear_weights(loaded.module, loaded.module.model.layers)
        masks = magnitude_masks(weights, 0.5, "layer") if pattern == "unstructured" else nm_masks(weights, 2, 4)
        return {"weight_sparsity": MaskKeeper(weights, masks).sparsity(), "seconds": 0.0}

    def wanda(loaded, pattern):
        started = time.perf_counter()
        config = WandaPrune(0.5, pattern=pattern, calibration_samples=args.calibration_samples)
        d = get_method("wanda").apply(loaded, config, StepContext(data=calibration, progress=log))
        return {"weight_sparsity": d["weight_sparsity"], "seconds": time.perf_counter() - started,
                "library": d["library"], "calibration": d["calibration"]}

    window = PerplexityConfig(context=1024, stride=512, max_tokens=args.tokens)
    results = {}
    for name, prune, pattern in (("dense (fp32)", None, None), ("magnitude 50%", magnitude, "unstructured"),
                                 ("wanda 50%", wanda, "unstructured"), ("magnitude 2:4", magnitude, "2:4"),
                                 ("wanda 2:4", wanda, "2:4")):
        log(name)
        loaded = copy.copy(base)
        loaded.module = copy.deepcopy(base.module).eval()
        info = prune(loaded, pattern) if prune else {"weight_sparsity": 0.0, "seconds": 0.0}
        ppl = {}
        for split, t in texts.items():
            with torch.no_grad():
                r = perplexity(loaded.module, loaded.inputs.tokenizer, t, window)
            ppl[split] = r.token_perplexity
            log(f"  {split} perplexity {r.token_perplexity:.3f}")
        directory = args.workdir / name.replace(" ", "-").replace("%", "").replace(":", "-").replace("(", "").replace(")", "")
        shutil.rmtree(directory, ignore_errors=True)
        sizewise.save_model(loaded, directory)
        size = sum(f.stat().st_size for f in directory.rglob("*.safetensors"))
        results[name] = {**info, "perplexity": ppl, "weights_bytes": size}
    dense = results["dense (fp32)"]
    table = [{"model": name, "pattern": "-" if name.startswith("dense") else ("2:4" if "2:4" in name else "unstructured"),
              "decoder weights zero": f"{r['weight_sparsity'] * 100:.1f}%",
              "validation ppl": f"{r['perplexity']['validation']:.2f}",
              "vs dense (val)": f"{(r['perplexity']['validation'] / dense['perplexity']['validation'] - 1) * 100:+.1f}%",
              "**test ppl**": f"**{r['perplexity']['test']:.2f}**",
              "vs dense (test)": f"{(r['perplexity']['test'] / dense['perplexity']['test'] - 1) * 100:+.1f}%",
              "weights on disk": f"{r['weights_bytes'] / 2**20:.1f} MiB",
              "pruning s": f"{r['seconds']:.0f}"} for name, r in results.items()]
    meta = finish_meta(meta)
    (RESULTS / "llm_wanda.json").write_text(json.dumps({"meta": meta, "args": {k: str(v) for k, v in vars(args).items()},
                                                        "results": results}, indent=1, default=str))
    lines = ["# SmolLM2-135M at 50% sparsity in one shot: Wanda beside magnitude, unstructured and 2:4", "",
             *header_lines(meta),
             f"- splits: perplexity on the first {args.tokens:,} tokens of WikiText-2 validation (valid.txt) and test "
             f"(wiki.test.raw), context 1024, stride 512, the same token ids for every row; Wanda calibrated on "
             f"{args.calibration_samples} x 512 tokens from the end of the validation text (no train file in the "
             f"shared copy), which the scored tokens do not reach; nothing is chosen, so nothing is decided on test",
             "- pruned: every linear layer of the 30 decoder blocks (the tied embedding / output matrix stays dense); "
             "no recovery training", "- speed: not measured; PyTorch and llama.cpp on a CPU run these zeros as dense "
             "weights", "", *md_table(table, "llrrrrrrr"), ""]
    (RESULTS / "llm_wanda.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
