"""SmolLM2-135M pruned in depth or width and recovered by distillation (issue goal: >= 25% fewer parameters, perplexity within
10% of the original, measurably faster).

    .venv/bin/python benchmarks/llm_prune.py --blocks 10 --kd-paragraphs 1500   # writes results/llm_prune.{md,json}
    .venv/bin/python benchmarks/llm_prune.py --prune ffn --ffn-sparsity 0.46    # width: 46% of every MLP's neurons
    .venv/bin/python benchmarks/llm_prune.py --prune ffn --generated more.txt   # + text the original sampled itself

What runs: ``DepthPrune(blocks)`` ranks SmolLM2's 30 decoder blocks by block influence on calibration windows of the
recovery text and removes the least influential, or ``FFNPrune(sparsity)`` removes the MLP neurons of every block with
the smallest mean |activation| on those windows (Minitron's width axis); the pruned model then learns from the original token by token
(``StepContext.fit``: KL of each next-token distribution at T=2 plus half the cross-entropy) on ``--kd-paragraphs``
paragraphs, for ``--epochs`` epochs. The shared WikiText-2 copy has no training split, so the recovery text is the
first 80% of valid.txt's paragraphs and the last 20% are held out (validation perplexity per epoch and in the table).
Nothing is decided on a split (the recovery length is fixed by the command); the numbers reported are on the test
split (wiki.test.raw), scored once per model, on its first ``--eval-tokens`` tokens (the same ids for every row). Speed: one greedy decode step of the original and the
pruned model on torch fp32 eager, interleaved (``sizewise.measure.compare``), ``--threads`` threads.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import time
from pathlib import Path

from _common import DATA, RESULTS, cpu_flags, finish_meta, flags_text, header_lines, log, md_table, new_meta

MODEL = "smollm2-135m"


def recovery_data(data, paragraphs: int):
    """The data a pruned model calibrates and recovers on: ``paragraphs`` (a seeded sample) of the train split as
    "train", and held-out validation text; the test split is left out. WikiText-2 here has no training split (the
    shared copy holds valid.txt and wiki.test.raw only): then the first 80% of valid.txt's paragraphs are the train
    text and the last 20% stay out of it. Returns (data, the sampled paragraph indices, a sentence saying so)."""
    import numpy as np

    from sizewise.data.dataset import Split

    source = data.split("train") if "train" in data.splits else data.split("validation")
    cut = len(source) if "train" in data.splits else int(0.8 * len(source))
    pick = np.sort(np.random.default_rng(0).choice(cut, size=min(paragraphs, cut), replace=False))
    heldout = data.split("validation") if "train" in data.splits else Split(source.inputs[cut:], source.labels[cut:])
    kd_data = dataclasses.replace(data.without_test(), splits={
        "train": Split([source.inputs[i] for i in pick], source.labels[pick]), "validation": heldout})
    split_text = ("the train split" if "train" in data.splits else
                  f"the first {cut:,} of the validation split's {len(source):,} paragraphs (valid.txt; no train split "
                  f"in this copy), the other {len(source) - cut:,} held out as validation")
    return kd_data, pick, split_text


def pruned_copy(original, method: str, step, kd_data):
    """A pruned copy of ``original`` by the registered ``method`` (the original stays the teacher): deterministic,
    calibrated on ``kd_data``. Returns (the copy, the method's details)."""
    from sizewise.compress.registry import StepContext, get_method

    pruned = copy.copy(original)
    pruned.module = copy.deepcopy(original.module)
    details = get_method(method).apply(pruned, step, StepContext(data=kd_data))
    return pruned, details


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prune", choices=("depth", "ffn"), default="depth")
    parser.add_argument("--blocks", type=int, default=10, help="depth: decoder blocks removed (10 of 30: 26%% of params)")
    parser.add_argument("--ffn-sparsity", type=float, default=0.46,
                        help="ffn: fraction of every MLP's neurons removed (0.46 keeps 832 of 1536: 27%% of params)")
    parser.add_argument("--kd-paragraphs", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--eval-tokens", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                        help="the recovery's precision (TrainConfig.precision; fp32 to compare with an fp32 run)")
    parser.add_argument("--compare-seconds", type=float, default=20.0)
    parser.add_argument("--workdir", default="/tmp/llm-prune")
    parser.add_argument("--model", default=MODEL, help="another causal LM (a smoke test on a tiny one)")
    parser.add_argument("--data", default=str(DATA / "wikitext2"))
    parser.add_argument("--out", default=str(RESULTS), help="folder for llm_prune.{md,json}")
    parser.add_argument("--generated", default=None,
                        help="a file of text the original model sampled (`sizewise generate`), one sequence per line: "
                             "its lines join the recovery text (not the pruning's calibration windows)")
    args = parser.parse_args()

    import numpy as np
    import torch

    import sizewise
    from sizewise.compress.prune import DepthPrune, FFNPrune
    from sizewise.compress.registry import StepContext
    from sizewise.measure.compare import CompareConfig, compare
    from sizewise.tasks.perplexity import PerplexityConfig, perplexity
    from sizewise.train.objectives import CausalLM

    torch.set_num_threads(args.threads)
    Path(args.out).mkdir(parents=True, exist_ok=True)  # before hours of recovery, not after
    meta = new_meta()
    log(f"loading {args.model} and {args.data}")
    original = sizewise.load(args.model)
    data = sizewise.load_dataset(args.data)
    kd_data, pick, split_text = recovery_data(data, args.kd_paragraphs)
    heldout = kd_data.split("validation")
    recovery_text, generated_lines = kd_data, 0
    if args.generated:  # more recovery text, written by the original model itself; the held-out paragraphs unchanged
        from sizewise.data.dataset import Split

        extra = [line for line in Path(args.generated).read_text(encoding="utf-8").splitlines() if line.strip()]
        generated_lines = len(extra)
        train = kd_data.split("train")
        recovery_text = dataclasses.replace(kd_data, splits={
            **kd_data.splits, "train": Split([*train.inputs, *extra], np.concatenate([train.labels,
                                                                                      np.zeros(len(extra), int)]))})

    def ppl(model, split: str) -> float:
        texts = list((heldout if split == "validation" else data.split(split)).inputs)
        with torch.inference_mode():
            return perplexity(model.module, model.inputs.tokenizer, texts,
                              PerplexityConfig(max_tokens=args.eval_tokens)).token_perplexity

    def params(model) -> int:
        return sum(p.numel() for p in model.module.parameters())

    rows = {"original": {"params": params(original), "test_ppl": ppl(original, "test"),
                         "validation_ppl": ppl(original, "validation")}}
    log(f"original: {rows['original']}")
    started = time.perf_counter()
    step = DepthPrune(args.blocks) if args.prune == "depth" else FFNPrune(args.ffn_sparsity)
    pruned, details = pruned_copy(original, args.prune, step, kd_data)
    prune_s = time.perf_counter() - started
    removed = (f"blocks removed: {details['blocks_removed']}" if args.prune == "depth" else
               f"MLP neurons kept per block: {details['intermediate_after']} of {details['intermediate_before']}")
    rows["pruned, no recovery"] = {"params": params(pruned), "test_ppl": ppl(pruned, "test"),
                                   "validation_ppl": ppl(pruned, "validation")}
    log(f"pruned: {rows['pruned, no recovery']}, {removed}")
    recovery = sizewise.TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, optimizer="adamw",
                                    schedule="cosine", warmup_epochs=0.05, weight_decay=0.0, precision=args.precision,
                                    threads=args.threads, seed=0)
    ctx = StepContext(data=recovery_text, train=recovery, teacher=original, recovery_teacher=True,
                      workdir=Path(args.workdir) / "recovery", progress=log)
    started = time.perf_counter()
    # the product's recovery path (what DepthPrune runs after pruning when its step has a TrainConfig)
    result = ctx.fit(pruned, recovery, on_epoch=lambda e: log(f"epoch {e}"))
    assert ctx.learned_from_teacher
    # from the run's own history, so epochs a killed invocation trained (and this one resumed after) count too
    history = [dataclasses.asdict(e) for e in result.epochs]
    recovery_s = sum(e.seconds for e in result.epochs) if result.resumed_from_epoch else time.perf_counter() - started
    rows["pruned + distilled"] = {"params": params(pruned), "test_ppl": ppl(pruned, "test"),
                                  "validation_ppl": ppl(pruned, "validation")}
    log(f"recovered: {rows['pruned + distilled']}")
    load_before = os.getloadavg()[0]
    speed = compare(original, pruned, CompareConfig(threads=args.threads, seconds=args.compare_seconds,
                                                    seq_len=128)).to_dict()
    speed["load1_before"], speed["load1_after"] = load_before, os.getloadavg()[0]
    log(f"decode step: {speed['speedup']:.3f}x {speed['speedup_ci95']}")

    meta = finish_meta(meta)
    base = rows["original"]
    table = []
    for name, r in rows.items():
        table.append([name, f"{r['params'] / 1e6:.1f} M", f"{1 - r['params'] / base['params']:.1%}",
                      f"{r['validation_ppl']:.2f}", f"{r['test_ppl']:.2f}", f"{r['test_ppl'] / base['test_ppl'] - 1:+.1%}"])
    rec = rows["pruned + distilled"]
    fewer = 1 - rec["params"] / base["params"]
    rise = rec["test_ppl"] / base["test_ppl"] - 1
    lo, hi = speed["speedup_ci95"]
    embedding = original.module.get_input_embeddings().weight.numel()
    verdicts = [f"- >= 25% fewer parameters: {'MET' if fewer >= 0.25 else 'NOT MET'} ({fewer:.1%}; the token "
                f"embedding, {embedding / 1e6:.1f} M, is not pruned)",
                f"- perplexity within 10% of the original (test): {'MET' if rise <= 0.10 else 'NOT MET'} ({rise:+.1%}; "
                f"right after pruning {rows['pruned, no recovery']['test_ppl'] / base['test_ppl'] - 1:+.1%})",
                f"- measurably faster: {'MET' if lo > 1 else 'NOT MET'} (one greedy decode step on torch fp32 eager, "
                f"{args.threads} thread(s), interleaved: {speed['speedup']:.2f}x [{lo:.2f}-{hi:.2f}], other load "
                f"{speed.get('other_load_cores') or 0:.2f} cores)"]
    importance = "block influence" if args.prune == "depth" else "mean |activation| of each MLP neuron"
    lines = [f"# {args.model}: {'depth' if args.prune == 'depth' else 'width (MLP)'} pruning + distillation", "",
             *header_lines(meta),
             f"- CPU flags that matter here: {flags_text(cpu_flags())}",
             f"- pruning: `{step!r}`, {importance} on {details['calibration']['windows']} x "
             f"{details['calibration']['tokens_per_window']} tokens of the {details['calibration']['split']} split "
             f"({prune_s:.0f} s); {removed}",
             f"- recovery: {args.epochs} epoch(s) on {len(pick):,} paragraphs (seeded sample) of {split_text}"
             + (f", and {generated_lines:,} sequences the original model sampled (`{args.generated}`)"
                if generated_lines else "") + ", AdamW lr "
             f"{args.lr:g}, cosine, batch {args.batch_size}, at most {CausalLM(pruned, kd_data).max_length} tokens per "
             "paragraph; "
             f"loss KL(original || pruned) per token at T=2 plus half the cross-entropy; precision "
             f"{result.precision_reason}; {recovery_s / 60:.1f} min"
             + (f" (the sum of its epochs' times: {result.resumed_from_epoch} epoch(s) were trained by an earlier "
                f"invocation with the same --workdir and resumed from its checkpoint)" if result.resumed_from_epoch
                else ""),
             f"- splits ({args.data}): nothing decided on data; the held-out validation paragraphs are scored per "
             f"epoch and in the table, the test split (WikiText-2: wiki.test.raw) is reported, perplexity on the "
             f"first {args.eval_tokens:,} tokens of each (the same ids for every row)", "",
             *md_table(table, "lrrrrr", columns=["model", "parameters", "fewer", "validation ppl", "test ppl",
                                                  "test ppl vs original"]), "", "Goals:", *verdicts, "",
             "Per-epoch validation perplexity of the recovery: "
             + ", ".join(f"{h['val_accuracy']:.2f}" for h in history)]
    payload = {"meta": meta, "args": vars(args), "generated_lines": generated_lines, "rows": rows, "details": details,
               "history": history, "resumed_from_epoch": result.resumed_from_epoch, "speed": speed,
               "prune_seconds": prune_s, "recovery_seconds": recovery_s}
    (Path(args.out) / "llm_prune.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    (Path(args.out) / "llm_prune.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
