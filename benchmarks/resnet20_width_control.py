"""Is the channel-pruned ResNet-20's accuracy loss the pruning's or the width's? A from-scratch capacity control.

    RECIPE_BENCH_DIR=/work/runs/recipe-ablation .venv/bin/python benchmarks/resnet20_width_control.py \\
        --base /work/runs/r20-150/base --pruned /work/runs/prune-bench/resnet20/channel-0.7-r16 --threads 2 \\
        --epochs 15,150     # ~12 min at 15 epochs, ~2 h at 150 on 2 cores
    .venv/bin/python benchmarks/resnet20_width_control.py --base ... --pruned ... --render [--note TEXT ...]

``prune.md`` goal (b) pruned the 150-epoch baseline (16/32/64 channels, 88.13% test) to 16 channels in every stage
(2.13x fewer FLOPs) and fine-tuned it 30 epochs with knowledge distillation from the baseline: 80.86%, -7.27 pp. Two
explanations predict different numbers. If the 16/16/16 network cannot hold more, the same architecture trained from
scratch with the baseline's whole recipe lands near the pruned model; if pruning and a 30-epoch recovery lose what
the architecture could hold, it lands clearly above it.

This script takes the pruned model's architecture (its saved layer shapes, the option-A shortcut layout included),
draws fresh weights for it with ``CifarResNet``'s own initialisation (He normal for conv and linear kernels, torch's
defaults for the rest, batch-norm statistics reset; seed 0), saves that as a model directory and trains it with the
baseline's recipe read from the baseline's own record (``resnet20_recipe_ablation.arm_recipe``: same epochs, schedule,
augmentation, label smoothing, weight decay, precision, seed). No teacher: the baseline learned from the labels alone,
and so does its control. Each schedule in ``--epochs`` is a ``sizewise train`` run of its own
(``RECIPE_BENCH_DIR/width16-scratch-eE``), resumable with the same command; a finished run is read, not rerun. At
the baseline's own schedule the control is read against the baseline and the pruned model; at a shorter one, against
the recipe ablation's ``reference`` arm (16/32/64 from scratch, same recipe, same epochs) when that ran.

Nothing is chosen here. Per-epoch validation (the baseline's split) is recorded; the test accuracy is the run's single
score. Accuracy only: epoch seconds are recorded, not compared. Writes ``results/resnet20_width_control.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common as bench  # noqa: E402
import resnet20_recipe_ablation as ablation  # noqa: E402

NAME = "resnet20_width_control"
INIT_SEED = 0


def conv_widths(module) -> dict[str, str]:
    from torch import nn

    return {name: f"{m.out_channels}x{m.in_channels}" for name, m in module.named_modules()
            if isinstance(m, nn.Conv2d)}


def fresh_copy(pruned_model: Path, out: Path) -> dict:
    """The pruned model's architecture with new weights, saved to ``out`` (once; a saved one is read back)."""
    import torch
    from torch import nn

    import sizewise

    if not (out / "sizewise-model.json").is_file():
        loaded = sizewise.load(str(pruned_model))
        torch.manual_seed(INIT_SEED)
        for m in loaded.module.modules():
            if hasattr(m, "reset_parameters"):  # conv/linear: torch's defaults; batch norm: 1/0 and fresh statistics
                m.reset_parameters()
            if isinstance(m, (nn.Conv2d, nn.Linear)):  # CifarResNet.__init__'s rule for kernels
                nn.init.kaiming_normal_(m.weight)
        untouched = [n for n, sub in loaded.module.named_modules()
                     if list(sub.parameters(recurse=False)) and not hasattr(sub, "reset_parameters")]
        if untouched:
            raise SystemExit(f"layers with weights this script cannot re-initialise: {untouched}")
        loaded.reference = f"{pruned_model}'s architecture, re-initialised (seed {INIT_SEED})"
        sizewise.save_model(loaded, out)
        bench.log(f"saved the re-initialised {pruned_model} architecture to {out}")
    loaded = sizewise.load(str(out))
    return {"model_dir": str(out), "from_architecture_of": str(pruned_model), "init_seed": INIT_SEED,
            "params": sum(p.numel() for p in loaded.module.parameters()), "conv_widths": conv_widths(loaded.module)}


def full_width_run(base: bench.TrainRecord, epochs: int) -> bench.TrainRecord | None:
    """The 16/32/64 run trained with the same recipe for as long: the baseline itself, or the recipe ablation's
    ``reference`` arm at a short schedule (None if neither ran that long)."""
    if len(base.epochs) == epochs:
        return base
    return ablation.finished(ablation.RUNS / "reference", epochs)


def pruned_row(pruned_run: Path) -> dict:
    bench_json = json.loads((pruned_run / "bench.json").read_text())
    card = json.loads((pruned_run / "card.json").read_text())
    history = [e for h in bench_json["finetune_history"] for e in h]
    return {"run_dir": str(pruned_run), "config": bench_json["config"], "finetune": bench_json["finetune"],
            "recovery_teacher": bench_json["details"].get("recovery_teacher"),
            "params": bench_json["afterN"]["params"], "flops_batch32": bench_json["afterN"]["flops"],
            "validation_accuracy": history[-1]["val_metric"], "test_accuracy": card["after"]["metrics"]["accuracy"],
            "test_examples": int(card["after"]["metrics"]["examples"])}


def record_row(record: bench.TrainRecord) -> dict:
    return {"run_dir": str(record.run_dir), "command": record.card["command"], "config": record.config,
            "precision_used": record.training["precision_used"], "augment_used": record.training["augment_used"],
            "epochs": len(record.epochs), "median_epoch_s": statistics.median(e["seconds"] for e in record.epochs),
            "params": record.card["after"]["params"]["total"],
            "validation_accuracy": record.epochs[-1]["val_accuracy"],
            "validation_last10": [e["val_accuracy"] for e in record.epochs[-10:]],
            "test_accuracy": record.test_metrics["accuracy"], "test_examples": int(record.test_metrics["examples"]),
            "environment": {k: record.environment.get(k) for k in ("cpu", "logical_cores", "cpu_flags")}}


def render(result: dict, notes: list[str]) -> str:
    pruned = result["pruned"]

    def row(label: str, r: dict, how: str, against: dict | None) -> list[str]:
        last = r.get("validation_last10")  # a spread only where the last 10 epochs are near the end of a decay
        spread = f" (last 10: {min(last):.2%}-{max(last):.2%})" if last and r["epochs"] >= 50 else ""
        vs = "-" if against is None else f"{(r['test_accuracy'] - against['test_accuracy']) * 100:+.2f} pp"
        return [label, f"{r['params']:,}", how, f"{r['validation_accuracy']:.2%}{spread}", f"{r['test_accuracy']:.2%}",
                vs]

    ft = pruned["finetune"]
    rows = []
    for schedule in result["schedules"]:
        full, scratch, epochs = schedule["full_width"], schedule["scratch"], schedule["epochs"]
        if full is not None:
            rows.append(row("16/32/64 from scratch", full, f"{epochs} epochs, the recipe", None))
        rows.append(row("**16/16/16 from scratch (the control)**", scratch,
                        f"{epochs} epochs, the recipe, fresh weights", full))
    rows.append(row("16/16/16 channel-pruned from the baseline, fine-tuned", pruned,
                    f"the {result['base_epochs']}-epoch baseline ({result['base_test_accuracy']:.2%}) pruned "
                    f"({pruned['config']['type']} {pruned['config']['sparsity']}, round to "
                    f"{pruned['config']['round_to']}), then {ft['epochs']} epochs, lr {ft['lr']:g}, KD from the "
                    "baseline", {"test_accuracy": result["base_test_accuracy"]}))
    table = bench.md_table(rows, "lrlrrr", columns=["model", "parameters", "how it was made",
                                                   "validation (last epoch)", "test", "vs 16/32/64"])
    control = result["control_model"]
    lines = ["# ResNet-20 / CIFAR-10: the channel-pruned 16/16/16 model against the same architecture from scratch", "",
             *bench.header_lines(result["meta"]),
             f"- recipe (the baseline's, from its record; epochs per row): {json.dumps(result['recipe'])}",
             f"- control model: `{control['from_architecture_of']}`'s layer shapes with fresh weights (He normal "
             f"kernels, seed {control['init_seed']}), {control['params']:,} parameters; every conv 16 channels "
             f"wide (conv widths out x in: {', '.join(f'{k} {v}' for k, v in control['conv_widths'].items())})",
             f"- splits: {result['splits']}; nothing is chosen from these runs, each test accuracy is its model's "
             "single score", f"- data note: {result['data_note']}", "", *table, "",
             "Each from-scratch 16/16/16 model is read against the 16/32/64 model trained from scratch with the same "
             "recipe for as many epochs; the channel-pruned model against the baseline it was pruned from."]
    if notes:
        lines += ["", "## Reading", "", *(f"- {n}" for n in notes)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", type=Path, required=True, help="the baseline's `sizewise train` run directory")
    parser.add_argument("--pruned", type=Path, required=True,
                        help="prune_resnet20.py's run directory of the channel-pruned model (bench.json, model/)")
    parser.add_argument("--epochs", default=None,
                        help="comma-separated schedules, shortest first (default: the baseline's own epoch count)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--render", action="store_true", help="only rewrite the Markdown from the JSON")
    parser.add_argument("--note", action="append", default=[],
                        help="a reading, printed under the table (repeatable; replaces the saved ones)")
    args = bench.parse_args(parser)
    json_path, md_path = bench.RESULTS / f"{NAME}.json", bench.RESULTS / f"{NAME}.md"
    if args.render:
        return bench.write_with_readings(json.loads(json_path.read_text()), args.note, json_path, md_path, render)
    base = bench.TrainRecord.read(args.base)
    if base is None:
        raise SystemExit(f"{args.base}: no `sizewise train` run record (card.json with a train step)")
    meta = bench.new_meta()
    schedules = [int(e) for e in args.epochs.split(",")] if args.epochs else [len(base.epochs)]
    control = fresh_copy(args.pruned / "model", ablation.RUNS / "width16-init")
    data = Path(base.card["data"]["source"])
    rows, reused = [], []
    for epochs in schedules:
        recipe = ablation.arm_recipe(base.config, "reference", epochs)
        record, was_reused = ablation.run_arm(f"width16-scratch-e{epochs}", recipe, data, args.threads,
                                              model=control["model_dir"])
        full = full_width_run(base, epochs)
        rows.append({"epochs": epochs, "full_width": None if full is None else record_row(full),
                     "scratch": record_row(record)})
        reused += [str(epochs)] if was_reused else []
    if reused:
        meta["resumed"] = f"control runs read from an earlier invocation: {', '.join(reused)} epochs"
    recipe = {k: base.config[k] for k in ablation.RECIPE_OPTIONS}
    result = {"meta": bench.finish_meta(meta), "recipe": recipe, "control_model": control,
              "base_epochs": len(base.epochs), "base_test_accuracy": base.test_metrics["accuracy"],
              "splits": ablation.splits_text(base.card["data"]),
              "data_note": base.card["data"]["notes"][0], "schedules": rows, "pruned": pruned_row(args.pruned)}
    bench.write_with_readings(result, args.note, json_path, md_path, render)
    bench.log(f"wrote {md_path}")


if __name__ == "__main__":
    main()
