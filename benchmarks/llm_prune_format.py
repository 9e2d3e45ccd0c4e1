"""Does the pruned + distilled SmolLM2 owe its low validation perplexity to the format of its recovery text?

The recovery text and the held-out validation paragraphs both come from valid.txt, the word-level WikiText-2 split
where rare words are `<unk>`; the reported test file (wiki.test.raw) has no `<unk>`. A model distilled on valid.txt
learns to predict ` <unk>`, which helps it on validation and not on test. This script re-scores the held-out
validation paragraphs with every ` <unk>` removed, for the original and for the recovered model of an
``llm_prune.py --prune ffn`` run (its recovery checkpoint in ``--workdir``), beside the text as it is. The test split
is not scored here.

    .venv/bin/python benchmarks/llm_prune_format.py --workdir /work/runs/llm-gen/w --generated gen.txt \
        --out results/llm_prune_format.md
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from _common import DATA, finish_meta, header_lines, log, md_table, new_meta
from llm_prune import MODEL, pruned_copy, recovery_data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True, help="the llm_prune.py --workdir whose recovery checkpoint to score")
    parser.add_argument("--ffn-sparsity", type=float, default=0.46)
    parser.add_argument("--kd-paragraphs", type=int, default=1968)
    parser.add_argument("--eval-tokens", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--generated", type=Path, default=None,
                        help="the run's --generated file: its tokens are counted beside the real recovery text's")
    parser.add_argument("--out", type=Path, required=True, help="the .md to write (a .json beside it)")
    args = parser.parse_args()

    import torch

    import sizewise
    from sizewise.compress.prune import FFNPrune
    from sizewise.tasks.perplexity import PerplexityConfig, perplexity
    from sizewise.train.loop import read_checkpoint
    from sizewise.train.objectives import CausalLM

    torch.set_num_threads(args.threads)
    meta = new_meta()
    original = sizewise.load(MODEL)
    kd_data, _, _ = recovery_data(sizewise.load_dataset(str(DATA / "wikitext2")), args.kd_paragraphs)
    heldout = list(kd_data.split("validation").inputs)
    texts = {"held-out validation, as it is": heldout,
             "held-out validation, every ` <unk>` removed": [re.sub(r" <unk>", "", t) for t in heldout]}
    # the same pruning as the run (deterministic: the same calibration windows), then the run's recovered weights
    pruned, _ = pruned_copy(original, "ffn", FFNPrune(args.ffn_sparsity), kd_data)
    checkpoint = Path(args.workdir) / "recovery" / "checkpoint.pt"
    state = read_checkpoint(checkpoint)
    pruned.module.load_state_dict(state["model"])
    log(f"recovered weights from {checkpoint} (after epoch {state['epoch']})")

    # how much text the recovery read, in the model's tokens, each paragraph cut where the recovery cuts it
    tokenizer, cut = original.inputs.tokenizer, CausalLM(pruned, kd_data).max_length
    sources = {"real (valid.txt, recovery paragraphs)": list(kd_data.split("train").inputs)}
    if args.generated:
        sources["generated (--generated)"] = [t for t in args.generated.read_text(encoding="utf-8").splitlines()
                                             if t.strip()]
    recovery_tokens = {name: sum(min(cut, len(tokenizer(t)["input_ids"])) for t in lines)
                       for name, lines in sources.items()}
    log(f"recovery text tokens (at most {cut} per paragraph): {recovery_tokens}")

    rows, payload = [], {}
    for name, paragraphs in texts.items():
        scores = {}
        for label, model in (("original", original), ("recovered", pruned)):
            with torch.inference_mode():
                result = perplexity(model.module, model.inputs.tokenizer, paragraphs,
                                    PerplexityConfig(max_tokens=args.eval_tokens))
            scores[label] = result.token_perplexity
        unk = sum(p.count("<unk>") for p in paragraphs)
        words = sum(len(p.split()) for p in paragraphs)
        payload[name] = scores | {"unk": unk, "words": words}
        rows.append([name, f"{unk / words:.2%}", f"{scores['original']:.2f}", f"{scores['recovered']:.2f}",
                     f"{scores['recovered'] / scores['original'] - 1:+.1%}"])
        log(f"{name}: {scores}")
    meta = finish_meta(meta)
    lines = ["# Pruned + distilled SmolLM2: validation perplexity with and without `<unk>`", "", *header_lines(meta),
             f"- model: `{MODEL}` with {args.ffn_sparsity:.0%} of every MLP's neurons removed (`FFNPrune({args.ffn_sparsity})`, the same "
             f"calibration as the run) and the recovered weights of `{checkpoint}` (after epoch {state['epoch']})",
             f"- text: the {len(heldout):,} held-out paragraphs of valid.txt (the last 20%; the recovery read the "
             f"first 80%), perplexity on the first {args.eval_tokens:,} tokens of each variant; the test split is "
             "not scored here",
             f"- recovery text the run read, in SmolLM2 tokens (each paragraph cut at {cut}): "
             + ", ".join(f"{name} {n:,}" for name, n in recovery_tokens.items()), "",
             *md_table(rows, "lrrrr", columns=["text", "`<unk>` per word", "original ppl", "recovered ppl",
                                               "recovered vs original"])]
    args.out.write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "args": vars(args) | {"out": str(args.out)},
                                                         "scores": payload,
                                                         "recovery_tokens": recovery_tokens}, indent=1, default=str) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
