"""ResNet-20 on CIFAR-10: ``sizewise shrink`` with ``--objective size`` and with ``--objective latency``.

Usage (from the repository root):
    .venv/bin/python benchmarks/shrink_resnet20.py --objective size|latency [--base DIR] [--trials N]

The trained base is a sizewise run directory; without ``--base`` (or when it does not exist) the script trains one
exactly as ``benchmarks/prune_resnet20.py`` did (8 epochs SGD, lr 0.1, batch 128, cosine, wd 5e-4). A base that a
``sizewise train`` run made (its folder has the run record ``card.json``) is described from that record: its command,
epochs and their seconds, the augmentation and precision it ran with, and its test accuracy. Every search
measures on onnxruntime at batch 1 and 1 thread, recovers pruned candidates with 1 epoch on
``--samples`` training images, and rewrites its own section of benchmarks/results/shrink.md.

Split discipline (``sizewise.shrink/2``): trials are scored and chosen on the validation split ``load_dataset`` carves
from CIFAR-10's train split (10%, seeded, stratified); the baselines and the chosen model are measured once on the
10,000 test images. The committed sections (shrink.md) PREDATE this: those searches scored trials and chose on the
test split, and the base and the recoveries trained on a train split whose held-out 10% the training loop drew
itself. A re-run computes the same search under the new discipline, so its choice and numbers can differ.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from _common import DATA, RESULTS, TrainRecord, command, git_state, log, machine, versions
from shrink_common import chosen_card, comparison, replace_section, trials_table

CIFAR = DATA / "cifar10"
METHODS = ("channel", "magnitude", "int8-dynamic", "int8-static", "fp16")


def train_base(base: Path, epochs: int) -> None:
    import sizewise

    log(f"training ResNet-20 for {epochs} epochs into {base}")
    loaded = sizewise.load("zoo:resnet20")
    config = sizewise.TrainConfig(epochs=epochs, lr=0.1, batch_size=128, optimizer="sgd", momentum=0.9,
                                  weight_decay=5e-4, threads=1)
    sizewise.train(loaded, sizewise.load_dataset(str(CIFAR)), config, out=base, resume=True, bar=True)
    sizewise.save_model(loaded, base / "model")


def describe_base(base: Path, trained_here: dict | None) -> str:
    """What the base is, from its own record where it has one; never assumed."""
    record = TrainRecord.read(base)
    if record is not None:
        cfg, tr, epochs = record.config, record.training, record.epochs
        secs = record.epoch_seconds
        own = record.test_metrics
        warm = f", {cfg['warmup_epochs']:g} warm-up epoch(s)" if cfg.get("warmup_epochs") else ""
        return (f"a `sizewise train` run, recorded as `{record.card.get('command')}`: {len(epochs)} epochs, "
                f"{cfg['optimizer']} lr {cfg['lr']:g}, {cfg['schedule']}{warm}, batch {cfg['batch_size']}, weight "
                f"decay {cfg['weight_decay']:g}; augmentation that ran: {tr.get('augment_reason') or '?'}; "
                f"precision that ran: {tr.get('precision_reason') or '?'}; {secs / 60:.1f} min of epochs "
                f"({secs / max(1, len(epochs)):.0f} s each on average); its own record gives "
                f"{own['accuracy']:.2%} on {int(own['examples']):,} {own.get('split', 'test')} images")
    if trained_here:
        return (f"trained by this script: {trained_here['epochs']} CPU epochs, {trained_here['optimizer']} lr "
                f"{trained_here['lr']:g}, batch {trained_here['batch_size']}, no augmentation (augment "
                f"'{trained_here['augment']}')")
    return ("a run directory without a training record (trained by an earlier invocation of this script: 8 CPU "
            "epochs, no augmentation -- the same weak base as the first prune.md, ~11 points under the paper's 91.25%)")


def recovery_text(cfg: dict, recovery: dict | None) -> str:
    """How pruned candidates recover, from the TrainConfig the search builds (sizewise.pipeline.search._training)."""
    if not recovery:
        return (f"pruned candidates recover for {cfg['finetune_epochs']} epoch on {cfg['finetune_samples']:,} "
                f"training images (AdamW, lr {cfg['finetune_lr']})")
    samples = "all" if not cfg.get("finetune_samples") else f"{cfg['finetune_samples']:,} (drawn from the split)"
    return (f"pruned candidates recover for {recovery['epochs']} epoch(s) on {samples} training images "
            f"({recovery['optimizer']}, lr {recovery['lr']:g}, {recovery['schedule']}, batch {recovery['batch_size']}, "
            f"weight decay {recovery['weight_decay']:g}, augment '{recovery['augment']}', precision "
            f"'{recovery['precision']}'"
            + (", learning from the base as teacher too (KD, recovery_teacher=True)" if cfg.get("recovery_teacher")
               else "")
            + (", 1 torch thread: the script sets it for the whole search and the recovery leaves threads unset)"
               if recovery.get("threads") is None else f", {recovery['threads']} thread(s))"))


def render(out: Path, objective: str, cmd: str, bench: dict) -> None:
    results = json.loads((out / "results.json").read_text())
    base = results["baseline"]["runtime_fp32"]
    chosen = results.get("chosen")
    cfg = results["config"]
    states = [t["state"] for t in results["trials"]]
    lines = [f"## ResNet-20 on CIFAR-10: objective {objective} on onnxruntime, budget 1%", "",
             f"- date: {bench['date']}; produced by `{cmd}` ({bench['wall_s'] / 60:.1f} min)"
             + (f"; sizewise at git {bench['git']}" if bench.get("git") else "")
             + (f"; sizewise imported from `{bench['package_path']}`" if bench.get("package_path") else ""),
             f"- machine: {machine(flags=True)}; " + ", ".join(f"{k} {v}" for k, v in versions().items()),
             *([f"- load average (1 min) at start / end: {bench['load1_before']:.2f} / {bench['load1_after']:.2f} on "
                f"{os.cpu_count()} cores (shared with other jobs; each latency below also carries the CPU other "
                "processes used while it ran)"] if "load1_before" in bench else []),
             f"- base: {bench['base']} ({base['metrics']['accuracy']:.2%} on the 10,000 test images, measured by this "
             f"search; {bench.get('base_description') or describe_base(Path(bench['base']), None)})",
             f"- search: {cfg['trials']} trials asked ({states.count('complete')} complete, {states.count('pruned')} "
             f"stopped by the proxy, {states.count('failed')} failed) over {', '.join(cfg['methods'])}; "
             f"{recovery_text(cfg, bench.get('recovery'))}; latency at batch 1, **1 thread**, "
             f"{cfg['latency_seconds']:g} s per trial; accuracy on all 10,000 test images, except where a number says "
             f"{results.get('selection_split', 'validation')} (trials are scored and chosen on the validation split, "
             "carved from CIFAR-10's train split; the test split is scored once, for the baselines and the chosen "
             "model)",
             "",
             *comparison(results), "", f"Verdict of the search: {results['verdict']}", ""]
    if results.get("headline"):
        lines += [f"Headline: {results['headline']}", ""]
    for name, c in (results.get("speedups") or {}).items():
        lines.append(f"- the search's own interleaved timing of the chosen model vs {name} ({c['runtime_a']} -> "
                     f"{c['runtime_b']}, batch {c['batch_size']}, {c['threads']} thread(s), {c['rounds']} rounds, "
                     f"other load {c['other_load_cores'] or 0:.2f} cores): {c['verdict']}")
    if results.get("speedups"):
        lines.append("")
    card = chosen_card(results)
    if chosen and card:
        lines.append(f"Chosen: **{chosen['description']}**, test accuracy {card['metrics']['accuracy']:.2%} "
                     f"({-chosen['test']['drop_points']:+.2f} pp; on validation, where it was chosen, "
                     f"{-chosen['validation']['drop_points']:+.2f} pp), "
                     f"{base['size']['disk_bytes'] / card['size']['disk_bytes']:.2f}x "
                     f"fewer bytes, {base['flops']['total'] / max(1, card['flops']['total']):.2f}x fewer FLOPs, "
                     f"{base['latency']['p50_ms'] / card['latency']['p50_ms']:.2f}x the onnxruntime fp32 speed; "
                     f"Pareto front: {len(results['pareto'])} point(s).")
    lines += ["", "### Trials", "", *trials_table(results, objective)]
    reading = RESULTS / f"shrink_resnet20_{objective}_reading.md"
    if reading.is_file():
        lines += ["", reading.read_text().rstrip()]
    replace_section(f"resnet20-{objective}", "\n".join(lines))


def main() -> None:
    import sizewise
    from sizewise.core.budget import Budget
    from sizewise.pipeline import ShrinkConfig

    parser = argparse.ArgumentParser()
    parser.add_argument("--objective", choices=("size", "latency"), required=True)
    parser.add_argument("--base", default="/tmp/prune-bench/resnet20/baseline")
    parser.add_argument("--base-epochs", type=int, default=8)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--finetune-lr", type=float, default=1e-3,
                        help="recovery learning rate (AdamW)")
    parser.add_argument("--out", default=None, help="default: /tmp/shrink-resnet20-OBJECTIVE")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    base, out = Path(args.base), Path(args.out or f"/tmp/shrink-resnet20-{args.objective}")
    if not args.render_only:
        import torch

        from sizewise.pipeline.search import _training

        log(f"sizewise imported from {sizewise.__file__}")
        torch.set_num_threads(1)
        trained_here = None
        if not (base / "model").is_dir():
            train_base(base, args.base_epochs)
            trained_here = {"epochs": args.base_epochs, "optimizer": "sgd", "lr": 0.1, "batch_size": 128,
                            "augment": "none"}
        config = ShrinkConfig(max_drop=Budget.parse("0.01"), objective=args.objective, runtime="onnxruntime",
                              methods=METHODS, trials=args.trials, finetune_epochs=1, finetune_lr=args.finetune_lr,
                              finetune_samples=args.samples, threads=1, batch_size=1, latency_seconds=0.5)
        recovery, _ = _training(config, True)
        git = git_state()
        load_before = os.getloadavg()[0]
        started = time.time()
        sizewise.shrink(str(base), str(CIFAR), str(out), config, command=command())
        (out / "bench.json").write_text(json.dumps({
            "wall_s": time.time() - started, "base": str(base),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "git": git,
            "package_path": str(Path(sizewise.__file__).parent), "load1_before": load_before,
            "load1_after": os.getloadavg()[0], "base_description": describe_base(base, trained_here),
            "recovery": recovery and dataclasses.asdict(recovery)}))
    render(out, args.objective, command().replace(" --render-only", ""), json.loads((out / "bench.json").read_text()))
    print((RESULTS / "shrink.md").read_text())


if __name__ == "__main__":
    main()
