"""ResNet-20 on CIFAR-10: ``sizewise shrink`` with ``--objective size`` and with ``--objective latency``.

Usage (from the repository root):
    .venv/bin/python benchmarks/shrink_resnet20.py --objective size|latency [--base DIR] [--trials N]

The trained base is a sizewise run directory; without ``--base`` (or when it does not exist) the script trains one
exactly as ``benchmarks/prune_resnet20.py`` did (8 epochs SGD, lr 0.1, batch 128, cosine, wd 5e-4). Every search
measures on onnxruntime at batch 1 and 1 thread, recovers pruned candidates with 1 epoch on the first
``--samples`` training images, and rewrites its own section of benchmarks/results/shrink.md.

Split discipline (``sizewise.shrink/2``): trials are scored and chosen on the validation split ``load_dataset`` carves
from CIFAR-10's train split (10%, seeded, stratified); the baselines and the chosen model are measured once on the
10,000 test images. The committed sections (shrink.md) PREDATE this: those searches scored trials and chose on the
test split, and the base and the recoveries trained on a train split whose held-out 10% the training loop drew
itself. A re-run computes the same search under the new discipline, so its choice and numbers can differ.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path

from _common import DATA, RESULTS, command, log, machine, versions
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


def render(out: Path, objective: str, cmd: str, bench: dict) -> None:
    results = json.loads((out / "results.json").read_text())
    base = results["baseline"]["runtime_fp32"]
    chosen = results.get("chosen")
    lines = [f"## ResNet-20 on CIFAR-10: objective {objective} on onnxruntime, budget 1%", "",
             f"- date: {bench['date']}; produced by `{cmd}` ({bench['wall_s'] / 60:.1f} min)",
             f"- machine: {machine(flags=True)}; " + ", ".join(f"{k} {v}" for k, v in versions().items()),
             f"- base: {bench['base']} ({base['metrics']['accuracy']:.2%} on the 10,000 test images; 8 CPU epochs, "
             "no augmentation -- the same weak base as prune.md, ~11 points under the paper's 91.25%)",
             f"- search: {results['config']['trials']} trials over {', '.join(results['config']['methods'])}; pruned "
             f"candidates recover for {results['config']['finetune_epochs']} epoch on the first "
             f"{results['config']['finetune_samples']:,} training images (AdamW, lr {results['config']['finetune_lr']});"
             " latency at batch 1, **1 thread**; accuracy on all 10,000 test images, except where a number says "
             f"{results.get('selection_split', 'validation')} (trials are scored and chosen on the validation split)",
             "",
             *comparison(results), "", f"Verdict of the search: {results['verdict']}", ""]
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
    parser.add_argument("--out", default=None, help="default: /tmp/shrink-resnet20-OBJECTIVE")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    base, out = Path(args.base), Path(args.out or f"/tmp/shrink-resnet20-{args.objective}")
    if not args.render_only:
        import torch

        torch.set_num_threads(1)
        if not (base / "model").is_dir():
            train_base(base, args.base_epochs)
        config = ShrinkConfig(max_drop=Budget.parse("0.01"), objective=args.objective, runtime="onnxruntime",
                              methods=METHODS, trials=args.trials, finetune_epochs=1, finetune_lr=1e-3,
                              finetune_samples=args.samples, threads=1, batch_size=1, latency_seconds=0.5)
        started = time.time()
        sizewise.shrink(str(base), str(CIFAR), str(out), config, command=command())
        (out / "bench.json").write_text(json.dumps({"wall_s": time.time() - started, "base": str(base), "date":
                                                    datetime.now(timezone.utc).isoformat(timespec="seconds")}))
    render(out, args.objective, command().replace(" --render-only", ""), json.loads((out / "bench.json").read_text()))
    print((RESULTS / "shrink.md").read_text())


if __name__ == "__main__":
    main()
