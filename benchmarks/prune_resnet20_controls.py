"""Controls for ResNet-20 goal (a), 90% unstructured sparsity within 1 pp: where does the loss come from?

    PRUNE_BENCH_DIR=/work/runs/prune-bench .venv/bin/python benchmarks/prune_resnet20_controls.py \\
        --base /work/runs/r20-150/base --ft-epochs 30 --ft-threads 2     # ~45 min a variant on 2 cores
    .venv/bin/python benchmarks/prune_resnet20_controls.py --render [--note TEXT ...]

Every variant starts from the same base and runs ``prune_resnet20.py``'s fine-tuning recipe
(``prune_resnet20.finetune_config``: SGD lr 0.01 cosine, crop+flip, bf16 autocast where the CPU has it, knowledge
distillation from the base); only the sparsity differs:

- ``dense``: the same epochs with no pruning (a one-step ``train`` plan). How much the extra epochs alone give the
  dense model, so a pruned model's loss can be read against a dense model trained exactly as long.
- ``unstructured-S`` for each ``--sparsity`` S (default 0.8): the gradual global schedule to S.
- ``unstructured-90``: ``prune_resnet20.py``'s variant (a), read from its cached run directory under the same
  ``PRUNE_BENCH_DIR`` (its fine-tuning config must equal this one, else this script refuses rather than compare
  unlike runs); run here when absent.

Accuracy only, no timings (the question is accuracy against sparsity, so a run may share the machine). Nothing is
chosen from these runs: per-epoch validation is recorded, each model is scored once on the 10,000 test images.
Writes ``results/prune_resnet20_controls.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import prune_common as pc  # noqa: E402
import prune_resnet20 as r20  # noqa: E402

NAME = "prune_resnet20_controls"


def sparsity_name(s: float) -> str:
    return f"unstructured-{round(s * 100)}"


def run_one(name: str, sparsity: float, base_ref: str, dataset, ft_cfg) -> dict:
    import dataclasses

    from sizewise.compress.prune import GradualPrune

    workdir = pc.WORK / "resnet20" / name
    cached = workdir / "bench.json"
    if cached.is_file():
        done = json.loads(cached.read_text())
        # a pruned variant keeps its recipe as the step's fine-tuning; the dense control's recipe is the step itself
        earlier = done["finetune"] or {k: v for k, v in done["config"].items() if k != "type"}
        if earlier != dataclasses.asdict(ft_cfg):
            raise SystemExit(f"{cached} was fine-tuned with {earlier}, not {dataclasses.asdict(ft_cfg)}: give the "
                             "same --ft-epochs/--ft-lr/--ft-threads, or another PRUNE_BENCH_DIR")
    if sparsity == 0:  # the dense control: the recipe as a plain training step (the executor's KD applies alike)
        return pc.run_variant(name, base_ref, ft_cfg, dataset, None, workdir, r20.BATCH_N, latency=False,
                              teacher=True) | {"finetune": dataclasses.asdict(ft_cfg), "sparsity_goal": 0.0}
    config = GradualPrune(sparsity, scope="global", ramp_fraction=r20.RAMP)
    return pc.run_variant(name, base_ref, config, dataset, ft_cfg, workdir, r20.BATCH_N, latency=False,
                          teacher=True) | {"sparsity_goal": sparsity}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", help="the finished `sizewise train` run directory prune_resnet20.py pruned")
    parser.add_argument("--ft-epochs", type=int, default=30)
    parser.add_argument("--ft-lr", type=float, default=0.01)
    parser.add_argument("--ft-threads", type=int, default=2)
    parser.add_argument("--sparsity", type=float, action="append", default=None,
                        help="extra sparsity levels to run (repeatable; default 0.8)")
    parser.add_argument("--no-dense", action="store_true", help="leave the dense control out (e.g. to write the "
                        "pruned levels while it still runs; its checkpoint resumes on the next full invocation)")
    parser.add_argument("--render", action="store_true", help="only rebuild the markdown from the saved JSON")
    parser.add_argument("--note", action="append", default=None, help="with --render: a reading (repeatable)")
    args = pc.parse_args(parser)
    path = pc.RESULTS / f"{NAME}.json"
    if args.render:
        payload = json.loads(path.read_text())
        if args.note is not None:
            payload["notes"] = args.note
        return write(payload)
    if not args.base:
        raise SystemExit("--base RUN_DIR is required (the base prune_resnet20.py pruned)")

    import sizewise

    import torch

    torch.set_num_threads(pc.TIMING_THREADS)
    meta = pc.new_meta()  # its git line names benchmark scripts edited since the commit
    meta["work_dir"] = str(pc.WORK / "resnet20")
    base_ref = str(Path(args.base).resolve())
    dataset = sizewise.load_dataset(str(pc.DATA / "cifar10"))
    ft_cfg = r20.finetune_config(args.ft_epochs, args.ft_lr, args.ft_threads)
    # the sparsity levels first (the question), the 90% run (usually reused from its cache), the dense control last
    levels = [*sorted(set(args.sparsity or [0.8]) - {0.9}), 0.9] + ([] if args.no_dense else [0.0])
    variants = {}
    for s in levels:
        name = "dense" if s == 0 else sparsity_name(s)
        pc.log(f"{name}: fine-tuning {args.ft_epochs} epochs from {base_ref}")
        variants[name] = run_one(name, s, base_ref, dataset, ft_cfg)
    payload = {"benchmark": NAME, "meta": pc.finish_meta(meta), "baseline": r20.base_from_run(Path(base_ref)),
               "variants": variants, "notes": []}
    write(payload)


def write(payload: dict) -> None:
    payload["markdown"] = markdown(payload)
    (pc.RESULTS / f"{NAME}.json").write_text(json.dumps(payload, indent=1, default=str))
    (pc.RESULTS / f"{NAME}.md").write_text(payload["markdown"])
    pc.log(f"wrote {pc.RESULTS / NAME}.json and .md")


def markdown(p: dict) -> str:
    b = p["baseline"]
    runs = dict(sorted(p["variants"].items(), key=lambda kv: kv[1]["sparsity_goal"]))
    first = next(iter(runs.values()))
    base_acc = first["before"]["metrics"]["accuracy"] * 100
    dense_acc = runs["dense"]["after"]["metrics"]["accuracy"] * 100 if "dense" in runs else None
    rows = [["base (dense, as trained)", f"{first['before']['params']:,}", f"{base_acc:.2f}%", "-", "-",
             pc.pct(b["history"][-1]["val_metric"]), "-"]]
    for name, r in runs.items():
        acc = r["after"]["metrics"]["accuracy"] * 100
        hist = [e for h in r["finetune_history"] for e in h]
        last = hist[-12:]
        sparsity = r["details"].get("weight_sparsity", 0.0)
        label = ("dense, fine-tuned the same way" if name == "dense" else
                 f"{r['sparsity_goal']:.0%} unstructured (gradual, global)")
        rows.append([label + (" *(reused from its cached run)*" if r.get("reused") else ""),
                     f"{r['after']['nonzero']:,} ({sparsity:.2%} zero)", f"{acc:.2f}%", f"{acc - base_acc:+.2f} pp",
                     "-" if dense_acc is None or name == "dense" else f"{acc - dense_acc:+.2f} pp",
                     f"{pc.pct(hist[-1]['val_metric'])} (last 12: {min(e['val_metric'] for e in last):.2%}-"
                     f"{max(e['val_metric'] for e in last):.2%})",
                     f"{r['method_seconds'] / 60:.1f} min"])
    table = pc.md_table(rows, "lrrrrrr", columns=["model", "non-zero conv/linear weights", "test accuracy",
                                                 "vs base", "vs dense control", "validation, last epoch",
                                                 "fine-tuning wall time"])
    lines = ["# ResNet-20 / CIFAR-10: accuracy against sparsity, with a dense control", ""] + pc.meta_lines(p["meta"])
    lines += ["", "Goal (a) of `prune.md` section 2 is 90% unstructured sparsity within 1 pp of the base. These runs "
              "ask what the 90% run's loss is made of: each model starts from the same base and gets the same "
              f"fine-tuning ({r20.schedule_text(first['finetune'])}, learning from the base as well as the labels: "
              "knowledge distillation, T=2, alpha=0.5); pruned models follow the cubic gradual schedule over the "
              f"first {r20.RAMP:.0%} of the steps (global magnitude ranking over all conv and linear weights), the "
              "dense control prunes nothing.", "",
              f"Splits: validation = {pc.validation_words(first)}, read per epoch and not used to choose anything "
              "(the last epoch's weights are kept); every accuracy in the table is on the 10,000 test images, "
              "scored once per model. The base: `" + str(b["command"]) + f"` ({len(b['history'])} epochs).", "",
              *table, ""]
    lines += ["<details><summary>per-epoch validation accuracy</summary>", ""]
    for name, r in runs.items():
        lines += [f"{name}:", "", pc.history_table(r["finetune_history"][0]), ""]
    lines += ["</details>", ""]
    if p.get("notes"):
        lines += ["## Reading", ""] + [f"- {n}" for n in p["notes"]] + [""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
