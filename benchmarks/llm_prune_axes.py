"""What each structured pruning axis of SmolLM2-135M costs before any recovery: blocks (``depth``), MLP neurons
(``ffn``) and query heads (``attn-heads``), each at a few amounts, pruned one shot from the same calibration text.

    .venv/bin/python benchmarks/llm_prune_axes.py          # writes results/llm_prune_axes.{md,json}

Minitron's finding is that width pruning damages a model less than depth for the parameters it removes, and that
attention heads are the costliest width to remove; this measures it on the model and data at hand, per parameter
removed. Calibration (block influence, neuron activations, head output norms) reads the recovery text of
``llm_prune.py`` (the first 80% of valid.txt's paragraphs; no train split in this copy); held-out validation
paragraphs and the test split are each scored once per model, on their first ``--eval-tokens`` tokens. Nothing is
decided on either; the amounts are fixed by the script.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

from _common import DATA, RESULTS, cpu_flags, finish_meta, flags_text, header_lines, log, md_table, new_meta
from llm_prune import MODEL, recovery_data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--eval-tokens", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=MODEL, help="another causal LM (a smoke test on a tiny one)")
    parser.add_argument("--data", default=str(DATA / "wikitext2"))
    parser.add_argument("--out", default=str(RESULTS), help="folder for llm_prune_axes.{md,json}")
    args = parser.parse_args()

    import torch

    import sizewise
    from sizewise.compress.prune import AttentionHeadPrune, DepthPrune, FFNPrune
    from sizewise.compress.registry import StepContext, get_method
    from sizewise.tasks.perplexity import PerplexityConfig, perplexity

    torch.set_num_threads(args.threads)
    meta = new_meta()
    original = sizewise.load(args.model)
    data = sizewise.load_dataset(args.data)
    kd_data, _, split_text = recovery_data(data, 10**9)
    heldout = kd_data.split("validation")

    def score(model) -> dict:
        def ppl(texts) -> float:
            with torch.inference_mode():
                return perplexity(model.module, model.inputs.tokenizer, list(texts),
                                  PerplexityConfig(max_tokens=args.eval_tokens)).token_perplexity

        return {"params": sum(p.numel() for p in model.module.parameters()),
                "validation_ppl": ppl(heldout.inputs), "test_ppl": ppl(data.split("test").inputs)}

    axes = [("depth", DepthPrune(3)), ("depth", DepthPrune(10)),
            ("ffn", FFNPrune(0.25)), ("ffn", FFNPrune(0.46)),
            ("attn-heads", AttentionHeadPrune(0.33)), ("attn-heads", AttentionHeadPrune(0.67))]
    base = score(original)
    log(f"original: {base}")
    rows = []
    for method, config in axes:
        pruned = copy.copy(original)
        pruned.module = copy.deepcopy(original.module)
        details = get_method(method).apply(pruned, config, StepContext(data=kd_data))
        row = {"method": method, "config": repr(config), **score(pruned),
               "what": (f"{len(details['blocks_removed'])} of {details['blocks_before']} blocks"
                        if method == "depth" else
                        f"{details['intermediate_after']} of {details['intermediate_before']} MLP neurons kept"
                        if method == "ffn" else
                        f"{details['heads_after']} of {details['heads_before']} query heads kept "
                        f"({details['key_value_heads']} key/value heads)")}
        rows.append(row)
        log(f"{method}: {row}")

    meta = finish_meta(meta)
    table = [["original", "", f"{base['params'] / 1e6:.1f} M", "0.0%",
              f"{base['validation_ppl']:.2f}", f"{base['test_ppl']:.2f}", "+0.0%", ""]]
    for r in rows:
        fewer = 1 - r["params"] / base["params"]
        rise = r["test_ppl"] / base["test_ppl"] - 1
        table.append([r["method"], r["what"], f"{r['params'] / 1e6:.1f} M", f"{fewer:.1%}",
                      f"{r['validation_ppl']:.2f}", f"{r['test_ppl']:.2f}", f"{rise:+.1%}",
                      f"{rise / (100 * fewer):+.1%}"])
    lines = [f"# {args.model}: what each structured pruning axis costs before recovery", "", *header_lines(meta),
             f"- CPU flags: {flags_text(cpu_flags())}",
             f"- calibration: 16 x 256 tokens of {split_text} (each method's default); one shot, no recovery",
             f"- splits ({args.data}): nothing decided on data; the held-out validation paragraphs and the test split "
             f"(wiki.test.raw) are each scored once per model, perplexity on the first {args.eval_tokens:,} tokens "
             "(the same ids for every row)", "",
             *md_table(table, "llrrrrrr", columns=["axis", "removed", "parameters", "fewer", "validation ppl",
                                                    "test ppl", "test ppl vs original", "rise per 1% fewer"])]
    payload = {"meta": meta, "args": vars(args), "original": base, "rows": rows}
    (Path(args.out) / "llm_prune_axes.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    (Path(args.out) / "llm_prune_axes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
