"""Pruning benchmark 1: LeNet-300-100 on MNIST against Han et al. 2015 (12x fewer weights, error 1.64% -> 1.59%).

    .venv/bin/python benchmarks/prune_lenet.py     # ~5-15 min on a 2-core VM; writes results/prune_lenet.json + prune.md

Trains the baseline with ``sizewise.train`` (checkpoint per epoch under /tmp/prune-bench/lenet/baseline, resumed if
interrupted), then prunes 92% of the Linear weights three ways, each a one-step plan run by the executor
(``prune_common.run_variant``), each followed by (or, for gradual, interleaved with) fine-tuning at a lower learning
rate:

- GradualPrune(0.92, scope="global", ramp_fraction=0.5): Zhu & Gupta cubic schedule over the first half of
  fine-tuning, then recovery at 92%;
- GradualPrune(0.92, scope="layer"): the same, every layer pruned to 92%;
- MagnitudePrune(0.92, scope="global"): one shot, then the same fine-tuning.

92% of the weights is chosen so that *all* parameters (the 410 biases stay dense) drop by more than 12x:
266,610 / (0.08 x 266,200 + 410) = 12.28x. The goal is judged on every variant; all three are reported.

Split discipline: per-epoch validation (baseline and fine-tuning) reads the validation split ``load_dataset`` carves
from MNIST's train split (10%, seeded, stratified); accuracies are reported on the 10,000 test images. The committed
result (results/prune_lenet.json) PREDATES this: its training loop held out 10% of train itself (an unstratified
draw) and its variants ran through the removed ``sizewise.compress.compress``; a re-run trains on a slightly different
90% of train, so its numbers can differ slightly.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import prune_common as pc  # noqa: E402

SPARSITY = 0.92
RAMP = 0.5  # gradual: the cubic ramp ends halfway through fine-tuning, leaving half of it (at a still useful lr) to recover
BATCH_N = 32
LABELS = {"gradual-global": "gradual, global", "gradual-layer": "gradual, per layer",
          "oneshot-global": "one-shot, global"}
GOAL_RATIO, GOAL_ERROR = 12.0, 1.64  # Han et al. 2015, Table 1: 12x fewer weights, baseline error 1.64%


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--render", action="store_true", help="only rebuild the markdown from the saved JSON")
    if pc.parse_args(parser).render:
        payload = json.loads((pc.RESULTS / "prune_lenet.json").read_text())
        runs = [(LABELS[k], r) for k, r in payload["variants"].items()]
        payload["markdown"] = markdown(payload, runs)
        pc.write_result("lenet", payload)
        return
    import sizewise
    from sizewise.compress.prune import GradualPrune, MagnitudePrune
    from sizewise.measure import measure

    meta = pc.new_meta()
    work = pc.WORK / "lenet"
    dataset = sizewise.load_dataset(str(pc.DATA / "mnist" / "mnist.npz"))
    base_cfg = sizewise.TrainConfig(epochs=20, lr=1e-3, batch_size=64, optimizer="adamw", weight_decay=1e-4,
                                    schedule="cosine", threads=1, seed=0)
    ft_cfg = sizewise.TrainConfig(epochs=30, lr=1e-3, batch_size=64, optimizer="adamw", weight_decay=1e-4,
                                  schedule="cosine", threads=1, seed=0)
    pc.log(f"baseline: {base_cfg}")
    baseline = pc.train_baseline("zoo:lenet-300-100", dataset, base_cfg, work / "baseline")
    pc.log(f"baseline trained: {baseline['epoch_seconds']:.0f} s of epochs")
    base_ref = str(work / "baseline")
    base_bN = pc.card_summary(measure(sizewise.load(base_ref), pc.measure_cfg(BATCH_N)))

    variants = [("gradual-global", GradualPrune(SPARSITY, scope="global", ramp_fraction=RAMP)),
                ("gradual-layer", GradualPrune(SPARSITY, scope="layer", ramp_fraction=RAMP)),
                ("oneshot-global", MagnitudePrune(SPARSITY, scope="global"))]
    runs = []
    for key, config in variants:
        r = pc.run_variant(key, base_ref, config, dataset, ft_cfg, work / key, BATCH_N)
        runs.append((LABELS[key], r))

    meta = pc.finish_meta(meta)
    payload = {"benchmark": "lenet", "meta": meta, "baseline": baseline, "baseline_batchN": base_bN,
               "variants": {r["name"]: r for _, r in runs}}
    payload["markdown"] = markdown(payload, runs)
    path = pc.write_result("lenet", payload)
    pc.log(f"wrote {path} and {pc.RESULTS / 'prune.md'}")


def acc(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.2f}% (error {100 - x * 100:.2f}%)"


def verdict(label: str, r: dict) -> tuple[bool, str]:
    before, after = r["before"], r["after"]
    fewer = before["nonzero"] / after["nonzero"]
    err = 100 * (1 - after["metrics"]["accuracy"])
    sparsity = r["details"]["weight_sparsity"]
    ok = fewer >= GOAL_RATIO and err <= GOAL_ERROR + 1e-9
    why = []
    why.append(f"{pc.ratio(fewer)} fewer non-zero parameters ({before['nonzero']:,} -> {after['nonzero']:,}; "
               f"Linear-weight sparsity {sparsity:.4%}, i.e. {pc.ratio(1 / (1 - sparsity))} fewer weights) "
               f"{'>=' if fewer >= GOAL_RATIO else '<'} 12x")
    why.append(f"test error {err:.2f}% {'<=' if err <= GOAL_ERROR + 1e-9 else '>'} 1.64%")
    why.append(f"saved artifact {after['disk_bytes']:,} bytes vs {before['disk_bytes']:,} "
               f"({pc.ratio(before['disk_bytes'] / after['disk_bytes'])} smaller)")
    return ok, f"- **{label}: {'MET' if ok else 'NOT MET'}**: " + "; ".join(why) + "."


def markdown(p: dict, runs: list) -> str:
    base = runs[0][1]
    columns = [{"label": "baseline (dense)", "b1": base["before"], "bN": p["baseline_batchN"]}]
    columns += [{"label": f"92% {label}", "b1": r["after"], "bN": r["afterN"], "ab1": r["ab1"], "abN": r["abN"]}
                for label, r in runs]
    extra = [("Linear-weight sparsity", ["0"] + [f"{r['details']['weight_sparsity']:.4%}" for _, r in runs]),
             ("pruning + fine-tuning wall time", ["-"] + [f"{r['method_seconds'] / 60:.1f} min" for _, r in runs])]
    table = pc.comparison_table("accuracy", "test accuracy (10,000 images)", acc, columns, extra)
    b = p["baseline"]
    lines = [f"## {pc.TITLES['lenet']}", ""] + pc.meta_lines(p["meta"]) + [""]
    lines += ["Reference: Han et al. 2015 (Learning both Weights and Connections), LeNet-300-100: 267K -> 22K weights "
              "(12x) at error 1.64% -> 1.59%. Goal: **>= 12x fewer non-zero weights at test error <= 1.64%**, with "
              "the disk bytes of the sparse artifact.", "", table, ""]
    lines += ["### Training schedule actually used", "",
              f"- baseline (`sizewise.train`, `zoo:lenet-300-100` from scratch): {pc.schedule_line(b['config'])}; "
              f"{sum(e['seconds'] for e in b['history']) / 60:.1f} min of epochs"
              + (f" (trained by an earlier invocation of this same command with the same settings; the recorded run "
                 f"found its finished checkpoint at epoch {b['resumed_from_epoch']} and reused it)"
                 if b["resumed_from_epoch"] else "")
              + f"; best validation accuracy at epoch {b['best_epoch']} (the last epoch's weights are used).",
              f"- pruning fine-tune (each variant, starting from the baseline): {pc.schedule_line(runs[0][1]['finetune'])}. "
              f"Gradual: sparsity follows s_t = s_f (1 - (1 - t/T)^3) over the first {RAMP:.0%} of the steps (10 mask "
              f"updates), then {1 - RAMP:.0%} recovery at the final sparsity; one-shot: 92% at once, then the same fine-tuning. "
              "Masks are re-applied after every optimizer step.", "",
              f"<details><summary>per-epoch history (validation = {pc.validation_words(b)})</summary>", "",
              "Baseline:", "", pc.history_table(b["history"]), ""]
    for label, r in runs:
        for h in r["finetune_history"]:
            lines += [f"Fine-tuning, {label}:", "", pc.history_table(h), ""]
    lines += ["</details>", "", "### Verdict", ""]
    verdicts = [verdict(label, r) for label, r in runs]
    lines += [v for _, v in verdicts]
    met = [label for (label, _), (ok, _) in zip(runs, verdicts) if ok]
    base_err = 100 * (1 - runs[0][1]["before"]["metrics"]["accuracy"])
    best_label, best = min(runs, key=lambda lr: 1 - lr[1]["after"]["metrics"]["accuracy"])
    best_err = 100 * (1 - best["after"]["metrics"]["accuracy"])
    lines += ["", f"Why: the dense baseline trained here has test error {base_err:.2f}%, already "
              f"{'above' if base_err > GOAL_ERROR else 'at or below'} Han et al.'s 1.64% baseline (sizewise's loop has "
              "no dropout or augmentation; this MLP reaches 100% train accuracy and stops learning). Against our own "
              f"baseline, the best variant ({best_label}) changes the test error by {best_err - base_err:+.2f} pp "
              f"({base_err:.2f}% -> {best_err:.2f}%) at "
              f"{pc.ratio(best['before']['nonzero'] / best['after']['nonzero'])} fewer non-zero parameters"
              + (", in line with Han et al.'s finding that 92% of the weights can go without loss; the absolute "
                 "1.64% threshold is what is missed." if best_err <= base_err else ".")]
    lines += ["", f"Goal overall: **{'MET' if met else 'NOT MET'}**" + (
        f" by {', '.join(met)}." if met else " by any variant.") +
        " Three variants were run and all are reported; picking the best of them on the test split is a mild "
        "selection effect. Latency: unstructured sparsity leaves the dense kernels and the FLOP count unchanged, "
        "so no speedup is expected or claimed (the interleaved ratios near 1x confirm it); the effective-FLOP row is "
        "what a sparse kernel could skip at best. This MLP is tiny, so at batch 1 its latency is mostly call "
        "overhead.", "",
              "Before this run, one other fine-tuning recipe was tried and replaced: AdamW lr 3e-4, 20 epochs, ramp "
              "over 75% of the steps, which on gradual/global recovered less (its validation accuracy fell as the "
              "sparsity rose and the cosine learning rate was already small by the end of the ramp; its test "
              "accuracy was also seen). The recipe above was chosen from validation accuracy; an SGD baseline "
              "(lr 0.05, weight decay 5e-4) reached no better validation accuracy than the AdamW one and was not used.",
              ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
