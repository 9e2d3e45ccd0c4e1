"""Which of the ResNet-20 baseline's recipe choices cost accuracy? A paired ablation at a short schedule.

    RECIPE_BENCH_DIR=/work/runs/recipe-ablation .venv/bin/python benchmarks/resnet20_recipe_ablation.py \\
        --base /work/runs/r20-150/base --epochs 15 --threads 2     # ~18 min an arm in bf16, ~31 in fp32, 2 cores
    .venv/bin/python benchmarks/resnet20_recipe_ablation.py --base /work/runs/r20-150/base --epochs 15 --render \\
        [--note TEXT ...]

The 150-epoch baseline (``resnet20_base150.md``) reached 88.13% against the issue's 90%. Its recipe departs from the
paper's in choices sizewise made: bf16 autocast (``--precision auto`` on a CPU with native bf16), label smoothing 0.1
and weight decay 5e-4; and its data is a JPEG copy, which no lossless copy here can be compared against. This script
retrains the same recipe, read from the baseline's own record, at ``--epochs`` with one choice changed an arm:

- ``reference``: the recipe as it is (seed 0);
- ``reference-seed1``: the same with seed 1 (initial weights, data order, crops): the run-to-run spread a difference
  must exceed before it is read as an effect;
- ``fp32``: fp32 instead of bf16 autocast;
- ``fp32-seed1``: fp32 with seed 1, to read bf16's cost from two seeds on each side (only with ``--arms``);
- ``no-smoothing``: label smoothing 0;
- ``wd-1e-4``: the paper's weight decay (only with ``--arms``);
- ``jpeg-q50``: the data, not the recipe: every image (train, validation and test) re-encoded once more, at JPEG
  quality 50 with 4:2:0 chroma, the copy's own subsampling (only with ``--arms``). No lossless CIFAR-10 is here to
  train on, so how much the copy's own JPEG generation costs cannot be measured; how much one more, harsher generation
  costs this recipe can, and the result gives each re-encoding's PSNR against the copy (q75 and q50) to say how hard
  it is.

Each arm is a real ``sizewise train`` run (its own ``card.json``, resumable with ``--resume``) under
``RECIPE_BENCH_DIR``; an arm whose run finished is read, not rerun. The validation split is the baseline's (carved
from train with seed 0, whatever the run's seed); nothing is chosen here, and each model's test accuracy is the one its
run scored once. A short schedule is what 2 cores allow (a 150-epoch arm is 3-5 h); an effect found here is an effect at
this schedule, stated as such. Accuracy only: epoch seconds are recorded, not compared (arms may share the machine).
Writes ``results/resnet20_recipe_ablation.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common as bench  # noqa: E402

NAME = "resnet20_recipe_ablation"
RUNS = Path(os.environ.get("RECIPE_BENCH_DIR", bench.ROOT.parent / "runs" / "recipe-ablation"))


@dataclass(frozen=True)
class Arm:
    changed: str  # in words, for the table
    recipe: dict = field(default_factory=dict)  # the train options that differ from the baseline's recipe
    jpeg_quality: int | None = None  # the data, not the recipe: every image re-encoded at this quality


ARMS = {
    "reference": Arm("nothing (the baseline's recipe)"),
    "fp32": Arm("fp32 instead of bf16 autocast", {"precision": "fp32"}),
    "no-smoothing": Arm("label smoothing 0 instead of 0.1", {"label_smoothing": 0.0}),
    "reference-seed1": Arm("seed 1: the run-to-run spread", {"seed": 1}),
    "fp32-seed1": Arm("fp32, seed 1: a second fp32 run", {"precision": "fp32", "seed": 1}),
    "wd-1e-4": Arm("weight decay 1e-4 instead of 5e-4", {"weight_decay": 1e-4}),
    "jpeg-q50": Arm("images re-encoded at JPEG quality 50, 4:2:0", jpeg_quality=50),
}
PSNR_QUALITIES = (75, 50)  # re-encodings whose pixel change against the copy the result states
DEFAULT_ARMS = ("reference", "fp32", "no-smoothing", "reference-seed1")
SEED_PAIRS = (("reference", "reference-seed1"), ("fp32", "fp32-seed1"))  # one recipe, seeds 0 and 1
# the recipe options a train command takes, in the baseline record's names
RECIPE_OPTIONS = ("lr", "batch_size", "optimizer", "schedule", "warmup_epochs", "weight_decay", "augment",
                  "label_smoothing", "precision", "seed")


def arm_recipe(base_config: dict, arm: str, epochs: int) -> dict:
    recipe = {k: base_config[k] for k in RECIPE_OPTIONS} | {"epochs": epochs}
    return recipe | ARMS[arm].recipe


def train_command(recipe: dict, out: Path, data: Path, threads: int, model: str = "zoo:resnet20") -> list[str]:
    cmd = [str(bench.ROOT / ".venv" / "bin" / "sizewise"), "train", model, "--data", str(data),
           "--out", str(out), "--threads", str(threads), "--no-memory", "--resume"]
    for key, value in recipe.items():
        cmd += ["--" + key.replace("_", "-"), str(value)]
    return cmd


def arm_data(arm: str, data: Path) -> Path:
    """The data an arm trains on: ``data`` itself, or its re-encoded copy."""
    quality = ARMS[arm].jpeg_quality
    return data if quality is None else reencoded_copy(data, quality)


def reencode(jpeg: bytes, quality: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).convert("RGB").save(out, "JPEG", quality=quality, subsampling=2)  # 2: 4:2:0
    return out.getvalue()


def reencoded_copy(data: Path, quality: int) -> Path:
    """``data``'s train.zip and test.zip with every image re-encoded at ``quality``, same names (so the same carved
    validation split), built once under RUNS."""
    out = RUNS / "data" / f"{data.name}-jpeg-q{quality}"
    if all((out / f"{split}.zip").is_file() for split in ("train", "test")):
        return out
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        tmp = out / f"{split}.zip.tmp"
        with zipfile.ZipFile(data / f"{split}.zip") as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as dst:
            for name in src.namelist():
                dst.writestr(name, reencode(src.read(name), quality) if name.lower().endswith(".jpg")
                             else src.read(name))
        os.replace(tmp, out / f"{split}.zip")
    bench.log(f"re-encoded {data} at JPEG quality {quality} into {out}")
    return out


def psnr_of_reencoding(data: Path, quality: int) -> dict:
    """PSNR (dB, 8-bit RGB, from the mean squared error over all pixels) of the test images re-encoded at ``quality``
    against the copy's own pixels, and the share of images that come back pixel-identical."""
    import numpy as np
    from PIL import Image

    def pixels(jpeg: bytes):
        return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=np.float64)

    errors = []
    with zipfile.ZipFile(data / "test.zip") as src:
        for name in (n for n in src.namelist() if n.lower().endswith(".jpg")):
            jpeg = src.read(name)
            errors.append(np.mean((pixels(jpeg) - pixels(reencode(jpeg, quality))) ** 2))
    mse = float(np.mean(errors))
    return {"psnr_db": float(10 * np.log10(255.0 ** 2 / mse)) if mse > 0 else float("inf"),
            "identical_share": float(np.mean(np.asarray(errors) == 0)), "images": len(errors)}


def finished(run_dir: Path, epochs: int) -> bench.TrainRecord | None:
    record = bench.TrainRecord.read(run_dir)
    return record if record is not None and len(record.epochs) == epochs else None


def run_arm(arm: str, recipe: dict, data: Path, threads: int,
            model: str = "zoo:resnet20") -> tuple[bench.TrainRecord, bool]:
    """The arm's finished run record (run directory RUNS/arm), and whether it was read from an earlier invocation
    rather than run now."""
    out = RUNS / arm
    record = finished(out, recipe["epochs"])
    if record is not None:
        bench.log(f"{arm}: finished run in {out}, read not rerun")
        return record, True
    cmd = train_command(recipe, out, data, threads, model)
    bench.log(f"{arm}: {' '.join(cmd)}")
    RUNS.mkdir(parents=True, exist_ok=True)
    with open(RUNS / f"{arm}.log", "a") as log:
        subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=True)
    record = finished(out, recipe["epochs"])
    if record is None:
        raise SystemExit(f"{arm}: the run in {out} did not finish {recipe['epochs']} epochs (see {RUNS / arm}.log)")
    return record, False


def splits_text(card_data: dict) -> str:
    """A run card's data splits in words."""
    sizes = card_data["sizes"]
    return (f"train {sizes['train']:,}, validation {sizes['validation']:,} ({card_data['validation_source']}), "
            f"test {sizes['test']:,}")


def arm_row(arm: str, record: bench.TrainRecord) -> dict:
    training = record.training
    return {"arm": arm, "changed": ARMS[arm].changed, "run_dir": str(record.run_dir), "command": record.card["command"],
            "data": record.card["data"]["source"],
            "config": record.config, "precision_used": training["precision_used"],
            "precision_reason": training["precision_reason"], "augment_used": training["augment_used"],
            "epochs": len(record.epochs), "median_epoch_s": statistics.median(e["seconds"] for e in record.epochs),
            "validation_accuracy": record.epochs[-1]["val_accuracy"],
            "test_accuracy": record.test_metrics["accuracy"], "test_examples": int(record.test_metrics["examples"]),
            "environment": {k: record.environment.get(k) for k in ("cpu", "logical_cores", "cpu_flags")}}


def spread(rows: dict, arm: str, other: str, key: str) -> float:
    """How far apart two runs of one recipe ended, in percentage points."""
    return abs(rows[arm][key] - rows[other][key]) * 100


def mean_difference(rows: dict, arms: tuple[str, ...], against: tuple[str, ...], key: str) -> float:
    """Mean of ``key`` over ``arms`` minus its mean over ``against``, in percentage points."""
    return (statistics.mean(rows[a][key] for a in arms) - statistics.mean(rows[a][key] for a in against)) * 100


def render(result: dict, notes: list[str]) -> str:
    rows = {r["arm"]: r for r in result["arms"]}
    ref = rows.get("reference")
    table = []
    for r in result["arms"]:
        vs = (lambda key: f"{(r[key] - ref[key]) * 100:+.2f} pp") if ref and r is not ref else (lambda key: "-")
        table.append([r["arm"], r["changed"], r["precision_used"], f"{r['config']['label_smoothing']:g}",
                      f"{r['config']['weight_decay']:g}", r["config"]["seed"], f"{r['median_epoch_s']:.0f}",
                      f"{r['validation_accuracy']:.2%}", vs("validation_accuracy"), f"{r['test_accuracy']:.2%}",
                      vs("test_accuracy")])
    meta = result["meta"]
    base = result["base"]
    lines = [f"# ResNet-20 / CIFAR-10: which recipe choice costs accuracy ({result['epochs']}-epoch paired ablation)",
             "", *bench.header_lines(meta),
             f"- baseline whose recipe is retrained: `{base['run_dir']}` ({base['epochs']} epochs, test "
             f"{base['test_accuracy']:.2%}); recipe: {json.dumps(base['config'])}",
             f"- each arm: that recipe at {result['epochs']} epochs (cosine to 0 over them, the baseline's warm-up) "
             "with one choice changed; a `sizewise train` run of its own (the command in the JSON)",
             f"- splits: {result['splits']}; nothing is chosen from these runs, each test accuracy is its run's "
             "single score",
             f"- data note: {result['data_note']}", "",
             *bench.md_table(table, "lllrrrrrrrr", columns=[
                 "arm", "what changed", "precision", "label smoothing", "weight decay", "seed", "s / epoch (median)",
                 "validation (last epoch)", "vs reference", "test", "vs reference"])]
    pairs = [pair for pair in SEED_PAIRS if set(pair) <= rows.keys()]
    if pairs:
        lines += ["", "Run-to-run spread (seed 0 vs seed 1, same recipe): " + "; ".join(
            f"{rows[a]['precision_used']} {spread(rows, a, b, 'validation_accuracy'):.2f} pp on validation, "
            f"{spread(rows, a, b, 'test_accuracy'):.2f} pp on test" for a, b in pairs)
            + ". A difference no larger than this is not read as an effect."]
    bf16_pair, fp32_pair = SEED_PAIRS
    # "auto" resolves to fp32 on a CPU without native bf16: then both pairs are fp32 and there is no cost to state
    if len(pairs) == len(SEED_PAIRS) and all(rows[a]["precision_used"] == "bf16" for a in bf16_pair):
        lines += ["", "bf16 autocast's cost from two seeds each (mean of fp32 seeds 0 and 1 minus mean of bf16 seeds 0 "
                      "and 1): " + ", ".join(f"{split} {mean_difference(rows, fp32_pair, bf16_pair, key):+.2f} pp"
                                             for split, key in (("validation", "validation_accuracy"),
                                                                ("test", "test_accuracy"))) + "."]
    if result.get("reencoding_vs_copy"):
        lines += ["", "How hard a re-encoding is: the test images re-encoded (4:2:0) against the copy's own pixels, "
                      "PSNR over all pixels: " + "; ".join(
                          f"quality {q} {p['psnr_db']:.1f} dB ({p['identical_share']:.1%} of {p['images']:,} images "
                          "pixel-identical)" for q, p in result["reencoding_vs_copy"].items()) + "."]
    if notes:
        lines += ["", "## Reading", "", *(f"- {n}" for n in notes)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", type=Path, required=True, help="the baseline's `sizewise train` run directory")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--arms", default=",".join(DEFAULT_ARMS), help=f"comma-separated, of {', '.join(ARMS)}")
    parser.add_argument("--render", action="store_true", help="only rewrite the Markdown from the JSON")
    parser.add_argument("--note", action="append", default=[],
                        help="a reading, printed under the table (repeatable; replaces the saved ones)")
    args = bench.parse_args(parser)
    json_path, md_path = bench.RESULTS / f"{NAME}.json", bench.RESULTS / f"{NAME}.md"
    if args.render:
        return bench.write_with_readings(json.loads(json_path.read_text()), args.note, json_path, md_path, render)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise SystemExit(f"unknown arm(s) {unknown}; known: {', '.join(ARMS)}")
    base = bench.TrainRecord.read(args.base)
    if base is None:
        raise SystemExit(f"{args.base}: no `sizewise train` run record (card.json with a train step)")
    data = Path(base.card["data"]["source"])
    meta = bench.new_meta()
    runs = {arm: run_arm(arm, arm_recipe(base.config, arm, args.epochs), arm_data(arm, data), args.threads)
            for arm in arms}
    records = {arm: record for arm, (record, _) in runs.items()}
    reused = [arm for arm, (_, was_reused) in runs.items() if was_reused]
    card_data = base.card["data"]
    if reused:
        meta["resumed"] = f"arms read from runs an earlier invocation finished: {', '.join(reused)}"
    result = {"meta": bench.finish_meta(meta), "epochs": args.epochs, "threads": args.threads,
              "base": {"run_dir": str(args.base), "config": base.config, "epochs": len(base.epochs),
                       "test_accuracy": base.test_metrics["accuracy"]},
              "splits": splits_text(card_data),
              "data_note": card_data["notes"][0], "arms": [arm_row(a, r) for a, r in records.items()]}
    if any(ARMS[a].jpeg_quality is not None for a in arms):
        result["reencoding_vs_copy"] = {str(q): psnr_of_reencoding(data, q) for q in PSNR_QUALITIES}
    bench.write_with_readings(result, args.note, json_path, md_path, render)
    bench.log(f"wrote {md_path}")


if __name__ == "__main__":
    main()
