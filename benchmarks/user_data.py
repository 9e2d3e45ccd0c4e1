"""Acceptance of "your model, your data": the CLI on a user's own files, from the command line, as a user runs it.

    .venv/bin/python benchmarks/user_data.py [--vit-epochs 4] [--force]

1. SST-2 written as a user's CSV folder (``train.csv``: the first 2,000 train rows, ``validation.csv``: dev.tsv,
   ``test.csv``: the labelled test.tsv; columns ``text,label``, labels the strings ``negative``/``positive``, written
   with the csv module), then ``sizewise finetune minilm --data FOLDER --head new --epochs 1``, ``sizewise quantize
   ft --data FOLDER --method int8-dynamic`` and ``sizewise report q``.
2. A small ViT (transformers' ViTConfig, random weights, its ViTImageProcessor; nothing downloaded) saved as a Hugging
   Face directory, an image folder of CIFAR-10 JPEGs (500 per class train, 100 per class test), ``sizewise train`` for
   a few epochs and ``sizewise measure`` with accuracy on the folder's test split.
3. The bad inputs of the issue, each through the CLI: the exact line and the exit code.

Every command runs as a subprocess in the cache folder (/tmp/user-data-bench), so the commands shown are what a user
types there. A stage whose JSON exists under /tmp/user-data-bench/stages is reused (``--force`` reruns it). Writes
benchmarks/results/user_data.json and user_data.md.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    DATA, RESULTS, ROOT, cached, finish_meta, header_lines, log, md_table, new_meta, parse_args)

CACHE = Path(os.environ.get("SIZEWISE_USER_DATA_CACHE", "/tmp/user-data-bench"))
SIZEWISE = ROOT / ".venv" / "bin" / "sizewise"
NOISE = ("Failed to load", "torch/utils/_pytree.py", "Writing model shards")  # library chatter on import, not ours
CIFAR_MEAN, CIFAR_STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]


# --------------------------------------------------------------------------------------------- the user's files


def sst2_csv_folder(n_train: int = 2000) -> dict[str, Any]:
    """SST-2 as a user would have it: CSV files, a header, string labels (quoted by the csv module where needed)."""
    dst = CACHE / "sst2-csv"
    dst.mkdir(parents=True, exist_ok=True)
    names = {"0": "negative", "1": "positive"}
    sizes = {}
    for source, split, limit in (("train", "train", n_train), ("dev", "validation", None), ("test", "test", None)):
        with open(DATA / "sst2" / f"{source}.tsv", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:limit]
        with open(dst / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows([r["sentence"], names[r["label"]]] for r in rows)
        sizes[split] = len(rows)
    return {"folder": dst.name, "sizes": sizes, "head": (dst / "train.csv").read_text().splitlines()[:3]}


def cifar_image_folder(train_per_class: int, test_per_class: int) -> dict[str, Any]:
    """train/<class>/NNNN.jpg and test/<class>/NNNN.jpg: the first N JPEGs of each class from the packed zips."""
    dst = CACHE / "cifar-folder"
    counts: dict[str, dict[str, int]] = {}
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        seen: collections.Counter = collections.Counter()
        with zipfile.ZipFile(DATA / "cifar10" / f"{split}.zip") as z:
            for name in sorted(z.namelist()):
                parts = name.split("/")
                if len(parts) != 3 or not parts[2].endswith(".jpg") or seen[parts[1]] >= n:
                    continue
                seen[parts[1]] += 1
                target = dst / split / parts[1] / parts[2]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(name))
        counts[split] = dict(sorted(seen.items()))
    return {"folder": dst.name, "per_class": counts}


def vit_directory() -> dict[str, Any]:
    """A 4-layer ViT for 32x32 images, random weights (seed 0), with its image processor: no download."""
    import torch
    import transformers

    labels = sorted(p.name for p in (CACHE / "cifar-folder" / "train").iterdir())
    config = transformers.ViTConfig(image_size=32, patch_size=4, num_channels=3, hidden_size=96, num_hidden_layers=4,
                                    num_attention_heads=4, intermediate_size=192, num_labels=len(labels),
                                    id2label=dict(enumerate(labels)), label2id={k: i for i, k in enumerate(labels)})
    # transformers 5 without torchvision: the PIL processor, asked for by name so it does not warn
    processor_class = getattr(transformers, "ViTImageProcessorPil", None) or transformers.ViTImageProcessor
    processor = processor_class(size={"height": 32, "width": 32}, do_resize=True, do_normalize=True,
                                image_mean=CIFAR_MEAN, image_std=CIFAR_STD)
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(config)
    path = CACHE / "vit-cifar"
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return {"folder": path.name, "parameters": sum(p.numel() for p in model.parameters()), "labels": labels,
            "config": {k: getattr(config, k) for k in ("image_size", "patch_size", "hidden_size", "num_hidden_layers",
                                                      "num_attention_heads", "intermediate_size", "num_labels")}}


def bad_inputs() -> list[dict[str, Any]]:
    """Tiny models and files for each bad input the issue lists (made here, random weights)."""
    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(ROOT / "tests" / "helpers"))
    import hf_dirs

    bad = CACHE / "bad"
    shutil.rmtree(bad, ignore_errors=True)
    bad.mkdir(parents=True)
    hf_dirs.bert_classifier_dir(bad / "bert-2-classes")
    shutil.copytree(bad / "bert-2-classes", bad / "no-tokenizer")
    for f in (bad / "no-tokenizer").iterdir():
        if f.name not in ("config.json", "model.safetensors"):
            f.unlink()
    shutil.copytree(bad / "bert-2-classes", bad / "unknown-arch")
    config = json.loads((bad / "unknown-arch" / "config.json").read_text())
    config.update(architectures=["FooBarForSequenceClassification"], model_type="foobar")
    (bad / "unknown-arch" / "config.json").write_text(json.dumps(config))
    hf_dirs.gpt2_dir(bad / "gpt2-no-pad")
    hf_dirs.vit_dir(bad / "vit")
    (bad / "four-classes").mkdir()
    with open(bad / "four-classes" / "train.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        words = hf_dirs.SENTENCES[0].split()
        writer.writerows([" ".join(words[i % 5:i % 5 + 4]), "abcd"[i % 4]] for i in range(40))
    (bad / "one-class" / "cat").mkdir(parents=True)
    for i in range(6):
        Image.fromarray(np.full((16, 16, 3), 30 * i, np.uint8)).save(bad / "one-class" / "cat" / f"{i}.png")
    (bad / "empty.csv").write_text("")
    (bad / "text.txt").write_text("\n".join(hf_dirs.SENTENCES * 20) + "\n")
    cases = [
        ("no tokenizer (HF directory without tokenizer files)", ["measure", "bad/no-tokenizer"]),
        ("no pad token (GPT-2-like directory): works, pads with eos",
         ["measure", "bad/gpt2-no-pad", "--data", "bad/text.txt", "--prompt-len", "16", "--new-tokens", "4",
          "--llm-batch", "2"]),
        ("unknown architecture", ["measure", "bad/unknown-arch"]),
        ("labels that do not match the head (2-class model, 4-class data)",
         ["measure", "bad/bert-2-classes", "--data", "bad/four-classes"]),
        ("the same through finetune without --head new",
         ["finetune", "bad/bert-2-classes", "--data", "bad/four-classes", "--out", "bad/ft-4"]),
        ("image folder with one class", ["measure", "bad/vit", "--data", "bad/one-class"]),
        ("empty data file", ["measure", "bad/bert-2-classes", "--data", "bad/empty.csv"]),
    ]
    results = []
    for what, args in cases:
        run = run_cli(args + ["--no-memory"])
        lines = [ln for ln in run["output"].splitlines() if ln.startswith(("error:", "note: pad"))]
        results.append({"case": what, "command": run["command"], "exit": run["exit"], "seconds": run["seconds"],
                        "line": lines[0] if lines else run["output"].splitlines()[-1],
                        "traceback": "Traceback" in run["output"]})
    return results


# --------------------------------------------------------------------------------------------- the CLI, as a user


def run_cli(args: list[str]) -> dict[str, Any]:
    """``sizewise ARGS`` in the cache folder: exit code, wall time, its output without the import chatter."""
    command = "sizewise " + " ".join(shlex.quote(a) for a in args)
    log(f"$ {command}")
    started = time.perf_counter()
    proc = subprocess.run([str(SIZEWISE), *args], cwd=CACHE, capture_output=True, text=True,
                          env=os.environ | {"COLUMNS": "120"})
    seconds = time.perf_counter() - started
    output = "\n".join(ln for ln in (proc.stdout + proc.stderr).splitlines() if not ln.startswith(NOISE)
                       and not any(n in ln for n in NOISE))
    log(f"exit {proc.returncode} after {seconds:.0f} s")
    return {"command": command, "exit": proc.returncode, "seconds": seconds, "output": output}


def cli_stage(name: str, args: list[str], out: str | None = None) -> dict[str, Any]:
    """A CLI run as a cached stage; an OUT left by an unfinished stage is removed first (the CLI refuses it)."""
    def compute() -> dict[str, Any]:
        if out:
            shutil.rmtree(CACHE / out, ignore_errors=True)
        result = run_cli(args)
        if result["exit"] != 0:
            raise SystemExit(f"{result['command']} failed (exit {result['exit']}):\n{result['output'][-3000:]}")
        return result

    return cached(CACHE / "stages" / f"{name}.json", compute)


def record(out: str) -> dict[str, Any]:
    return json.loads((CACHE / out / "card.json").read_text())


def pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}%"


def metric_cell(metrics: dict | None, split: str | None = None) -> str:
    if not metrics or metrics.get("accuracy") is None:
        return "not scored"
    return f"{pct(metrics['accuracy'])} ({metrics.get('split', split)}, {int(metrics.get('examples', 0)):,} examples)"


def cell(text: str) -> str:
    """Inline code in a Markdown table cell: a pipe would end the cell."""
    return "`" + text.replace("|", "\\|") + "`"


def abridged(output: str, keep: int = 40) -> list[str]:
    lines = output.splitlines()
    if len(lines) > keep:
        lines = lines[:keep // 2] + [f"... ({len(lines) - keep} lines left out)"] + lines[-keep // 2:]
    return ["```", *lines, "```"]


# --------------------------------------------------------------------------------------------- the report


def summarise(runs: dict[str, dict], inputs: dict[str, Any]) -> dict[str, Any]:
    ft, q, vit = record("ft"), record("q"), record("vit")
    details = ft["steps"][0]["details"]["finetune"]
    model_config = json.loads((CACHE / "ft" / "model" / "config.json").read_text())
    manifest = json.loads((CACHE / "ft" / "model" / "sizewise-model.json").read_text())
    q_manifest = json.loads((CACHE / "q" / "model" / "sizewise-model.json").read_text())
    vit_card = json.loads((CACHE / "vit-measure.json").read_text())
    training = vit["steps"][0]["details"].get("training", {})
    return {
        "finetune": {"data": ft["data"], "validation_before_untrained_head": details["metrics_before"],
                     "validation_after": details["metrics_after"], "test_after": ft["after"]["metrics"],
                     "test_before": ft["before"]["metrics"], "verdict": ft["verdict"]["message"],
                     "id2label": model_config.get("id2label"), "label2id": model_config.get("label2id"),
                     "manifest_label_names": manifest.get("label_names"),
                     "wall_seconds_training": details["compute"]["wall_seconds"],
                     "disk_bytes": ft["after"]["size"]["disk_bytes"]},
        "quantize": {"validation_step": q["steps"][0]["metrics"], "test_before": q["before"]["metrics"],
                     "test_after": q["after"]["metrics"], "verdict": q["verdict"]["message"],
                     "manifest_label_names": q_manifest.get("label_names"),
                     "disk_bytes_before": q["before"]["size"]["disk_bytes"],
                     "disk_bytes_after": q["after"]["size"]["disk_bytes"],
                     "p50_ms_before": q["before"]["latency"]["p50_ms"], "p50_ms_after": q["after"]["latency"]["p50_ms"],
                     "runtime": q["after"]["latency"].get("runtime"), "warnings": q["after"].get("warnings", [])},
        "vit": {"data": vit["data"], "epochs": [{k: e.get(k) for k in ("epoch", "train_loss", "train_accuracy",
                                                                       "val_accuracy", "seconds")}
                                                for e in training.get("epochs", [])],
                "test_before": vit["before"]["metrics"], "test_after": vit["after"]["metrics"],
                "verdict": vit["verdict"]["message"], "measure_metrics": vit_card.get("metrics"),
                "measure_params": vit_card["params"]["total"], "measure_flops": vit_card["flops"]["total"],
                "measure_p50_ms": vit_card["latency"]["p50_ms"]},
    }


def render(meta: dict, inputs: dict, runs: dict, summary: dict, bad: list[dict]) -> list[str]:
    ft, q, vit = summary["finetune"], summary["quantize"], summary["vit"]
    wall = {k: f"{v['seconds'] / 60:.1f} min" if v["seconds"] >= 90 else f"{v['seconds']:.0f} s"
            for k, v in runs.items()}
    epochs = vit["epochs"]
    train_s = sum(e["seconds"] or 0 for e in epochs)
    vit_args = ", ".join(f"{k}={v}" for k, v in inputs["vit"]["config"].items())
    lines = ["# Your model, your data: acceptance from the command line", "", *header_lines(meta), "",
             "Every command below ran as a subprocess in `/tmp/user-data-bench` (so the paths are what a user types "
             "there), with `.venv/bin/sizewise`. Wall times include loading Python, the model and the data, and "
             "measuring the before and after cards. The machine is a shared 2-core VM with other work running "
             "(see the load average): latencies are inflated and each card warns so; sizes and accuracies are not "
             "affected.", "",
             "## 1. SST-2 as the user's CSV folder", "",
             f"`sst2-csv/`: `train.csv` (first {inputs['sst2']['sizes']['train']:,} rows of SST-2 train.tsv), "
             f"`validation.csv` (dev.tsv, {inputs['sst2']['sizes']['validation']:,}), `test.csv` (the labelled "
             f"test.tsv, {inputs['sst2']['sizes']['test']:,}); header `text,label`, string labels, written with "
             "Python's csv module (sentences with a comma or quote are quoted). The first lines:", "",
             "```", *inputs["sst2"]["head"], "```", "",
             "## 2. finetune → quantize → report on that folder", "",
             *md_table([{"command": f"`{runs[k]['command']}`", "exit": runs[k]["exit"], "wall": wall[k]}
                        for k in ("finetune", "quantize", "report")], "lrr"), "",
             *(f"- `{runs[k]['command']}`: {runs[k]['note']}" for k in runs if runs[k].get("note")), "",
             "How sizewise read the folder (the run record's `data`):", "",
             *(f"- {n}" for n in ft["data"]["notes"]),
             f"- sizes {ft['data']['sizes']}; decisions on `{ft['data']['decisions']}` "
             f"(from `{ft['data']['validation_source']}`), reported on `{ft['data']['reported']}`", "",
             "The string labels travel with the model:", "",
             f"- `ft/model/config.json`: `id2label` = `{json.dumps(ft['id2label'])}`, `label2id` = "
             f"`{json.dumps(ft['label2id'])}`",
             f"- `ft/model/sizewise-model.json`: `label_names` = `{json.dumps(ft['manifest_label_names'])}`; "
             f"after quantization `q/model/sizewise-model.json`: `{json.dumps(q['manifest_label_names'])}`", "",
             "Accuracies from the run records (`ft/card.json`, `q/card.json`); validation is what decisions "
             "see, test is scored once for the reported number:", "",
             *md_table([
                 {"run": "finetune: new head, untrained", "split": "validation",
                  "accuracy": metric_cell(ft["validation_before_untrained_head"], "validation"),
                  "where": "steps[0].details.finetune.metrics_before"},
                 {"run": "finetune: after 1 epoch", "split": "validation",
                  "accuracy": metric_cell(ft["validation_after"], "validation"),
                  "where": "steps[0].details.finetune.metrics_after"},
                 {"run": "finetune: after 1 epoch", "split": "test", "accuracy": metric_cell(ft["test_after"]),
                  "where": "after.metrics"},
                 {"run": "quantize: fp32 input (onnxruntime)", "split": "test",
                  "accuracy": metric_cell(q["test_before"]), "where": "before.metrics"},
                 {"run": "quantize: int8-dynamic", "split": "validation",
                  "accuracy": metric_cell(q["validation_step"]), "where": "steps[0].metrics"},
                 {"run": "quantize: int8-dynamic", "split": "test", "accuracy": metric_cell(q["test_after"]),
                  "where": "after.metrics"},
             ]), "",
             f"- finetune verdict: {ft['verdict']}; training itself took {ft['wall_seconds_training']:.0f} s wall.",
             f"- quantize verdict: {q['verdict']}. Disk {q['disk_bytes_before'] / 2**20:.1f} MiB → "
             f"{q['disk_bytes_after'] / 2**20:.1f} MiB; p50 latency on {q['runtime']} "
             f"{q['p50_ms_before']:.1f} → {q['p50_ms_after']:.1f} ms (batch 1, timed on a busy machine: "
             f"{len(q['warnings'])} warning(s) on the card, so no speed claim is made here).", "",
             "`sizewise finetune` output (abridged):", "", *abridged(runs["finetune"]["output"]), "",
             *(["Its `the savings are real` is not a claim this page makes: both latencies were timed while other "
                "processes used a core (the card's own warnings), for a model with the same FLOPs. `sizewise report` "
                "on a busy record now says `speed not judged`, as it does for `q` below.", ""]
               if "the savings are" in runs["finetune"]["output"] else []),
             "`sizewise quantize` output (abridged):", "", *abridged(runs["quantize"]["output"]), "",
             "`sizewise report q` output (abridged):", "", *abridged(runs["report"]["output"], 30), "",
             "## 3. A ViT image classifier directory on an image folder", "",
             f"`vit-cifar/`: `ViTForImageClassification` built from `ViTConfig({vit_args})`, "
             f"{inputs['vit']['parameters']:,} parameters, random weights (seed 0), `id2label` = the folder's class "
             f"names, and a `ViTImageProcessor` (32×32, resize, rescale, normalise with the CIFAR-10 mean/std), "
             "both written with `save_pretrained`; nothing downloaded.", "",
             f"`cifar-folder/`: `train/<class>/*.jpg` ({sum(inputs['cifar']['per_class']['train'].values()):,} "
             f"images, {min(inputs['cifar']['per_class']['train'].values())} per class) and `test/<class>/*.jpg` "
             f"({sum(inputs['cifar']['per_class']['test'].values()):,}, "
             f"{min(inputs['cifar']['per_class']['test'].values())} per class), the first JPEGs of each class in the "
             "packed CIFAR-10 zips.", "",
             *md_table([{"command": f"`{runs[k]['command']}`", "exit": runs[k]["exit"], "wall": wall[k]}
                        for k in ("train", "measure")], "lrr"), "",
             *(f"- {n}" for n in vit["data"]["notes"]),
             f"- sizes {vit['data']['sizes']}; decisions on `{vit['data']['decisions']}` "
             f"(from `{vit['data']['validation_source']}`), reported on `{vit['data']['reported']}`", "",
             *md_table([{"epoch": e["epoch"], "train loss": f"{e['train_loss']:.4f}",
                         "train accuracy": pct(e["train_accuracy"]), "validation accuracy": pct(e["val_accuracy"]),
                         "seconds": f"{e['seconds']:.0f}"} for e in epochs], "rrrrr"), "",
             f"- {len(epochs)} epochs, {train_s:.0f} s of training ({train_s / 60:.1f} min); the whole command "
             f"{wall['train']}.",
             f"- test accuracy: untrained {metric_cell(vit['test_before'])} → trained "
             f"{metric_cell(vit['test_after'])} ({vit['verdict']}).",
             f"- `sizewise measure vit --data cifar-folder`: {metric_cell(vit['measure_metrics'])}, "
             f"{vit['measure_params']:,} parameters, {vit['measure_flops'] / 1e6:.1f} MFLOP per image, p50 "
             f"{vit['measure_p50_ms']:.2f} ms at batch 1.",
             "- Honestly: this is not a good CIFAR-10 model and was not meant to be. A ViT trained from scratch on "
             "4,500 small images for a few CPU minutes stays far below a CNN (zoo:resnet20 reaches ~91% on the full "
             "set); the point is that a Hugging Face image-classifier directory trains on and is measured against "
             "a plain image folder, through its own image processor, with the splits the record names.", "",
             "`sizewise train` output (abridged):", "", *abridged(runs["train"]["output"]), "",
             "`sizewise measure` output (abridged):", "", *abridged(runs["measure"]["output"], 50), "",
             "## 4. Bad inputs: one line, exit code 1, no traceback", "",
             "Tiny models made with `tests/helpers/hf_dirs.py` (random weights) under `bad/`; each command as run "
             "(with `--no-memory`). The same cases are tests in `tests/cli/test_user_data_cli.py`.", "",
             *md_table([{"input": b["case"], "command": f"`{b['command']}`", "exit": b["exit"],
                         "traceback": "yes" if b["traceback"] else "no", "the line": cell(b["line"])}
                        for b in bad], "llrcl"), ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vit-epochs", type=int, default=4)
    parser.add_argument("--train-per-class", type=int, default=500)
    parser.add_argument("--test-per-class", type=int, default=100)
    args = parse_args(parser)
    CACHE.mkdir(parents=True, exist_ok=True)
    meta = new_meta()
    stages = CACHE / "stages"
    inputs = {
        "sst2": cached(stages / "sst2-csv.json", sst2_csv_folder),
        "cifar": cached(stages / "cifar-folder.json",
                        lambda: cifar_image_folder(args.train_per_class, args.test_per_class)),
    }
    inputs["vit"] = cached(stages / "vit-dir.json", vit_directory)
    runs = {
        "finetune": cli_stage("finetune", ["finetune", "minilm", "--data", "sst2-csv", "--head", "new", "--epochs",
                                           "1", "--out", "ft"], out="ft"),
        "quantize": cli_stage("quantize", ["quantize", "ft", "--data", "sst2-csv", "--method", "int8-dynamic",
                                           "--out", "q"], out="q"),
        "report": cli_stage("report", ["report", "q"]),
        "train": cli_stage("train", ["train", "vit-cifar", "--data", "cifar-folder", "--epochs",
                                     str(args.vit_epochs), "--out", "vit"], out="vit"),
        "measure": cli_stage("measure", ["measure", "vit", "--data", "cifar-folder", "--json", "vit-measure.json"]),
    }
    bad = cached(stages / "bad-inputs.json", lambda: {"cases": bad_inputs()})["cases"]
    summary = summarise(runs, inputs)
    meta = finish_meta(meta)
    reused = [k for k, v in runs.items() if v.get("reused")]
    if reused:
        written = sorted(time.strftime("%Y-%m-%d %H:%M", time.localtime((stages / f"{k}.json").stat().st_mtime))
                         for k in runs)
        meta["resumed"] = (f"stages reused from {stages}: {', '.join(reused)} (their wall times are from their own "
                           f"run; stage files written {written[0]} to {written[-1]})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "user_data.json").write_text(json.dumps(
        {"meta": meta, "inputs": inputs, "runs": {k: {kk: vv for kk, vv in v.items() if kk != "output"}
                                                  for k, v in runs.items()},
         "summary": summary, "bad_inputs": bad}, indent=2, default=str))
    (RESULTS / "user_data.md").write_text("\n".join(render(meta, inputs, runs, summary, bad)))
    log(f"wrote {RESULTS / 'user_data.md'} and user_data.json")


if __name__ == "__main__":
    main()
