"""A finished ``sizewise train`` run, written up from its own run record (``card.json``): nothing re-measured, nothing
assumed. For baselines trained by hand (a long CPU training resumed across days) whose numbers a result must quote.

    .venv/bin/python benchmarks/train_record.py RUN_DIR --title "ResNet-20 on CIFAR-10, 150 epochs" --out results/x.md
        [--note TEXT ...]   # readings, printed under the table
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from _common import TrainRecord, md_table


def render(run_dir: Path, title: str, notes: list[str]) -> str:
    record = TrainRecord.read(run_dir)
    if record is None:
        raise SystemExit(f"{run_dir}: no card.json with a train step (a `sizewise train --out` folder is expected)")
    card, step, training, epochs = record.card, record.step, record.training, record.epochs
    env = record.environment
    flags, libs = env["cpu_flags"], env["libraries"]
    seconds = [e["seconds"] for e in epochs]
    written = record.written
    data = card["data"]
    rows = [[e["epoch"], f"{e['lr']:.4f}", f"{e['train_loss']:.3f}", f"{e['train_accuracy']:.2%}",
             f"{e['val_accuracy']:.2%}", f"{e['seconds']:.0f}"]
            for e in epochs if e["epoch"] % 10 == 0 or e["epoch"] in (1, len(epochs))]
    lines = [f"# {title}", "",
             f"- run record: `{run_dir}/card.json`, written {written} (when the last epoch ended)",
             f"- command (as recorded): `{card['command']}`",
             f"- machine of the last epochs (the record keeps the environment of the final run only): {env['cpu']}, "
             f"{env['logical_cores']} cores, {int(env['memory_bytes']) / 2**30:.1f} GiB, {env['os']}, Python "
             f"{env['python']}; CPU flags: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in flags.items()),
             "- versions: " + ", ".join(f"{k} {v}" for k, v in libs.items()),
             f"- recipe: {json.dumps(step['config'])}",
             f"- what ran: {training['augment_reason']}; {training['precision_reason']}",
             f"- epochs: {len(epochs)} ({training.get('resumed_from_epoch', 0)} of them before the last resume); "
             f"{sum(seconds) / 3600:.2f} h of epochs, median {statistics.median(seconds):.0f} s per epoch "
             f"({min(seconds):.0f}-{max(seconds):.0f} s; a long epoch is one that shared the cores or was paused)",
             f"- splits ({data['source']}): train {data['sizes']['train']:,}, validation {data['sizes']['validation']:,} "
             f"({data['validation_source']}), test {data['sizes']['test']:,}; decisions on {data['decisions']} "
             f"(none here: the last epoch's weights are kept), reported on {data['reported']}",
             *(f"- data note: {n}" for n in data.get("notes", [])), "",
             f"**Test accuracy: {record.test_metrics['accuracy']:.2%}** on {int(record.test_metrics['examples']):,} "
             f"test images (validation {step['metrics']['accuracy']:.2%} on {int(step['metrics']['examples']):,}).", "",
             *md_table(rows, "rrrrrr", columns=["epoch", "lr (end)", "train loss", "train accuracy (augmented)",
                                                "validation accuracy", "seconds"])]
    if notes:
        lines += ["", "## Reading", "", *(f"- {n}" for n in notes)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--title", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--note", action="append", default=[])
    args = parser.parse_args()
    text = render(args.run_dir, args.title, args.note)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
