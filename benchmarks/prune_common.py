"""Shared helpers for the pruning benchmarks (``prune_lenet.py``, ``prune_minilm.py``, ``prune_resnet20.py``).

Each benchmark writes ``benchmarks/results/prune_<name>.json`` (numbers + its markdown section); ``render()`` then
rebuilds ``benchmarks/results/prune.md`` from whichever of the three JSON files exist, so every number in the markdown
comes from a committed script's own output. Intermediate run directories live under ``/tmp/prune-bench/``.

A variant is a one-step plan (the pruning config, with its fine-tuning as the step's ``TrainConfig``) run by the
executor (``sizewise.pipeline.executor.run``): card before, the step (its decisions and per-epoch validation on the
validation split), the artifact saved, reloaded and measured after, both cards on the test split. ``method_seconds``
is the executor's step time: pruning + fine-tuning + saving, reloading and scoring the step on validation.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _common import DATA, RESULTS, floor_to, interleaved, log, md_table, parse_args  # noqa: E402,F401  (re-exported)

WORK = Path(os.environ.get("PRUNE_BENCH_DIR", "/tmp/prune-bench"))
VERSIONED = ("sizewise", "torch", "torch-pruning", "transformers", "numpy", "scipy")
ORDER = ("lenet", "resnet20", "minilm")
TITLES = {"lenet": "1. LeNet-300-100 on MNIST (unstructured magnitude pruning)",
          "minilm": "3. all-MiniLM-L6-v2 on STS-B (attention heads + FFN neurons)",
          "resnet20": "2. ResNet-20 on CIFAR-10 (unstructured 90% and structured channels)"}
TIMING_THREADS = 1  # every latency in these benchmarks is measured at 1 thread (see the header of prune.md)


class Stopwatch:
    """Wall time of named phases, kept in a JSON file so a resumed run still reports the first run's phases."""

    def __init__(self, path: Path):
        self.path = path
        self.phases: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}

    def record(self, name: str, seconds: float, **extra: Any) -> None:
        self.phases[name] = {"seconds": seconds, "finished": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                             **extra}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.phases, indent=2))


# --------------------------------------------------------------------------------------------- instrumentation


class TrainRecorder:
    """Wraps ``train`` in the modules given (default: ``sizewise.train``, where a step's ``StepContext.fit`` imports
    it from at call time), to keep the fine-tuning history it returns.

    Pure observation: the wrapper calls the original with the same arguments and returns its result unchanged.
    """

    def __init__(self, *modules):
        if not modules:
            import sizewise.train  # noqa: F401  (the package: ``sizewise.train`` the attribute is the verb)

            modules = (sys.modules["sizewise.train"],)
        self.modules, self.results = modules, []

    def __enter__(self) -> TrainRecorder:
        self.saved = [(m, m.train) for m in self.modules]
        for m, original in self.saved:
            def wrapper(*args, _original=original, **kwargs):
                result = _original(*args, **kwargs)
                self.results.append(result)
                return result
            m.train = wrapper
        return self

    def __exit__(self, *exc) -> None:
        for m, original in self.saved:
            m.train = original


def dataclasses_asdict(obj) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(obj)


def history(result) -> list[dict[str, Any]]:
    return [{"epoch": e.epoch, "train_loss": e.train_loss, "train_accuracy": e.train_accuracy,
             "val_metric": e.val_accuracy, "lr_end": e.lr, "seconds": e.seconds} for e in result.epochs]


def splits_of(dataset) -> dict[str, Any]:
    """Which split decided and which was reported, and where validation came from (for the markdown)."""
    from sizewise.data.dataset import carve_validation

    return carve_validation(dataset).describe_splits()


def validation_words(p: dict[str, Any], default: str = "10% of the train split") -> str:
    """What the per-epoch validation numbers were computed on, for a payload (old payloads: the training loop's
    ``val_fraction`` of train)."""
    splits = p.get("data_splits")
    if not splits:
        return default
    source = splits.get("validation_source") or "the dataset's validation split"
    size = (splits.get("sizes") or {}).get("validation")
    return f"the validation split ({source}{f'; {size:,} examples' if size and 'examples' not in source else ''})"


# --------------------------------------------------------------------------------------------- formatting


def card_summary(card) -> dict[str, Any]:
    lat = card.latency
    return {"params": card.params.total, "nonzero": card.params.nonzero, "disk_bytes": card.size.disk_bytes,
            "artifact": card.size.artifact, "zip_bytes": card.size.zip_bytes,
            "flops": card.flops.total, "flops_effective": card.flops.effective, "flops_coverage": card.flops.coverage,
            "input_shape": card.flops.input_shape,
            "latency": None if lat is None else {
                "batch": lat.batch_size, "threads": lat.threads, "p50_ms": lat.p50_ms, "p90_ms": lat.p90_ms,
                "ci95": list(lat.ci95_median_ms), "runs": lat.runs, "noisy": lat.noisy,
                "other_cores": getattr(lat, "other_load_cores", None)},
            "metrics": dict(card.metrics), "warnings": list(card.warnings)}


def n(x: float | int | None) -> str:
    return "-" if x is None else f"{x:,}"


def ms(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:,.1f}"


def ratio(x: float, digits: int = 2) -> str:
    return f"{floor_to(x, digits):.{digits}f}x"


def pct(x: float, digits: int = 2) -> str:
    return f"{x * 100:.{digits}f}%"


def lat_cell(lat: dict | None) -> str:
    if not lat:
        return "-"
    noisy = " (noisy)" if lat["noisy"] else ""
    return f"{ms(lat['p50_ms'])} [{ms(lat['ci95'][0])}-{ms(lat['ci95'][1])}]{noisy}"


def ab_cell(ab: dict) -> str:
    lo, hi = ab["ratio_ci95"]
    return (f"{ratio(ab['ratio_median'])} ({ratio(lo)}-{ratio(hi)}; {ms(ab['before_p50_ms'])} -> "
            f"{ms(ab['after_p50_ms'])} ms, {ab['pairs']} pairs, others {ab['other_cores']:.2f} cores)")


meta_lines = _common.header_lines


def new_meta() -> dict[str, Any]:
    return _common.new_meta(VERSIONED)


finish_meta = _common.finish_meta


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"prune_{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    render()
    return path


HEADER = """# Pruning benchmarks: LeNet-300-100 (MNIST), ResNet-20 (CIFAR-10), all-MiniLM-L6-v2 (STS-B)

Each section below is written by its own script (`benchmarks/prune_lenet.py`, `benchmarks/prune_resnet20.py`,
`benchmarks/prune_minilm.py`); the raw numbers are in `benchmarks/results/prune_<name>.json` beside this file, and
this file is regenerated from those JSON files by whichever script ran last. No number here was typed by hand.

How to read the tables (applies to every section):

- **Latency on this shared 2-core VM is noisy.** Another engineer's test suites run beside these benchmarks. All
  latencies are measured at **1 thread** (`MeasureConfig(threads=1)`): with 2 threads, a competing process on one
  core makes torch's OpenMP pool wait at every parallel region (see `measure.md`: up to 150x slower), so a 2-thread
  number here would measure the contention, not the model. Each card's p50 comes with the 95% interval of the median
  and "(noisy)" when sizewise flagged it. Because the before and after cards are measured minutes apart, each
  section also times the two models **interleaved** (ABBA, call by call, same inputs) and reports the median of the
  per-pair ratios with its 95% interval: that is the speedup to quote.
- Training and fine-tuning also run at 1 thread (`TrainConfig(threads=1)`), for the same reason and to leave the
  other core to the other workload; wall times are therefore single-core times on a shared machine.
- The "speedup, cards" rows divide two `measure()` cards taken minutes apart (the run's before and after cards);
  when the load on the machine changed in between they can be far off, so read the interleaved rows.
- **Unstructured sparsity gives no CPU speedup**: the pruned weights are zeros inside dense tensors and PyTorch runs
  dense kernels, so latency and FLOPs (`flops.total`) stay where they were. The card therefore also shows
  **effective FLOPs** (multiply-accumulates against zero weights skipped): what a sparse kernel could at best save,
  not what was measured. Structured pruning (channels, heads, neurons) makes the tensors physically smaller, so there
  both FLOPs and latency can drop.
- **Disk bytes** are the saved artifact a user would ship (`model.safetensors` for the zoo models, which sizewise
  stores as bitmask + non-zero values when that is smaller; `config.json + model.safetensors` for MiniLM). Params and
  non-zero params count every parameter (weights, biases, norms), not only the pruned weight matrices.
- Accuracies / Spearman are on the **test** split, which training and fine-tuning never see; their per-epoch
  validation reads a validation split, named in each section (runs made before sizewise's split discipline held out
  10% of the train split in the training loop; since, `load_dataset` gives a validation split: carved from train,
  stratified, for MNIST and CIFAR-10, and STS-B's dev file). Ratios that a goal depends on are rounded **down**.
- Data fidelity (from `shared/data/README.md`): MNIST test images are the official t10k bytes; the training images
  were recovered from a PNG re-encoding (99.998% of pixels within one grey level). CIFAR-10 images are JPEG
  re-encodings of the originals (lossy), so accuracies can differ slightly from papers that used the original pickles.
  STS-B is the STS Benchmark release (CC BY-SA 4.0).
"""


def render() -> Path:
    parts = [HEADER]
    for name in ORDER:
        path = RESULTS / f"prune_{name}.json"
        if path.exists():
            parts.append(json.loads(path.read_text())["markdown"])
        else:
            parts.append(f"## {TITLES[name]}\n\n**NOT RUN**: `benchmarks/results/prune_{name}.json` does not exist "
                         f"(run `.venv/bin/python benchmarks/prune_{name}.py`).\n")
    out = RESULTS / "prune.md"
    out.write_text("\n".join(parts))
    return out


def comparison_table(metric: str, metric_label: str, metric_fmt, columns: list[dict[str, Any]],
                     extra_rows: list[tuple[str, list[str]]] = ()) -> str:
    """Rows = quantities, columns = models. ``columns[0]`` is the baseline; each column has ``label``, ``b1`` and
    ``bN`` (card summaries at batch 1 and the larger batch) and, after the first, ``ab1``/``abN`` (interleaved)."""
    base, b = columns[0], columns[0]["b1"]
    bN = base["bN"]["latency"]["batch"] if base.get("bN") else None

    def each(fn) -> list[str]:
        return [fn(c) for c in columns]

    def vs_base(fn) -> list[str]:
        return ["-" if i == 0 else fn(c) for i, c in enumerate(columns)]

    def ab(key: str):
        return vs_base(lambda c: ab_cell(c[key]) if c.get(key) else "-")

    rows = [(metric_label, each(lambda c: metric_fmt(c["b1"]["metrics"].get(metric)))),
            ("params", each(lambda c: n(c["b1"]["params"]))),
            ("non-zero params", each(lambda c: n(c["b1"]["nonzero"]))),
            ("fewer non-zero params than baseline", vs_base(lambda c: ratio(b["nonzero"] / c["b1"]["nonzero"]))),
            ("disk bytes (saved artifact)", each(lambda c: n(c["b1"]["disk_bytes"]))),
            ("disk bytes, smaller by", vs_base(lambda c: ratio(b["disk_bytes"] / c["b1"]["disk_bytes"]))),
            ("FLOPs (batch 1)", each(lambda c: n(c["b1"]["flops"]))),
            ("effective FLOPs (zeros skipped)", each(lambda c: n(c["b1"]["flops_effective"]))),
            ("FLOP reduction", vs_base(lambda c: ratio(b["flops"] / c["b1"]["flops"]))),
            ("effective FLOP reduction", vs_base(lambda c: ratio(b["flops_effective"] / c["b1"]["flops_effective"]))),
            ("p50 ms, batch 1, card [95% CI]", each(lambda c: lat_cell(c["b1"]["latency"]))),
            ("speedup, batch 1, cards", vs_base(lambda c: ratio(b["latency"]["p50_ms"] / c["b1"]["latency"]["p50_ms"]))),
            ("speedup, batch 1, interleaved [95% CI]", ab("ab1"))]
    if bN:
        rows += [(f"p50 ms, batch {bN}, card [95% CI]",
                  each(lambda c: lat_cell(c["bN"]["latency"]) if c.get("bN") else "-")),
                 (f"speedup, batch {bN}, cards",
                  vs_base(lambda c: ratio(base["bN"]["latency"]["p50_ms"] / c["bN"]["latency"]["p50_ms"])
                          if c.get("bN") else "-")),
                 (f"speedup, batch {bN}, interleaved [95% CI]", ab("abN"))]
    rows += list(extra_rows)
    return "\n".join(md_table([[label, *cells] for label, cells in rows], "l" + "r" * len(columns),
                              columns=["", *(c["label"] for c in columns)]))


def measure_cfg(batch: int, seq_len: int | None = None):
    import sizewise

    return sizewise.MeasureConfig(batch_size=batch, seq_len=seq_len, threads=TIMING_THREADS, throughput_sweep=(),
                                  measure_memory=False)


def compare_latency(before_ref: str, after_ref: str, batch_n: int, seq_len: int | None = None) -> dict[str, Any]:
    """Card of the *saved* after-artifact at the larger batch, and interleaved before/after timings at batch 1 and N."""
    import sizewise
    from sizewise.measure import measure

    before, after = sizewise.load(before_ref), sizewise.load(after_ref)
    out = {"afterN": card_summary(measure(after, measure_cfg(batch_n, seq_len)))}
    for key, batch in (("ab1", 1), ("abN", batch_n)):
        inputs = before.example_inputs(batch, seq_len)
        load_before = os.getloadavg()[0]
        out[key] = interleaved(before.module.eval(), after.module.eval(), inputs)
        out[key] |= {"load1_before": load_before, "load1_after": os.getloadavg()[0]}
        log(f"  interleaved batch {batch}: {out[key]['ratio_median']:.3f}x "
            f"({out[key]['before_p50_ms']:.3f} -> {out[key]['after_p50_ms']:.3f} ms)")
    return out


def run_variant(name: str, baseline_ref: str, config, dataset, finetune, workdir: Path, batch_n: int,
                seq_len: int | None = None, latency: bool = True, teacher: bool = False) -> dict[str, Any]:
    """Run the one-step plan ``config`` (fine-tuned with ``finetune``) on the baseline run directory into
    ``workdir``; cached in ``workdir/bench.json``. ``teacher``: the fine-tuning also learns from the baseline
    (knowledge distillation, the executor's ``RunOptions(recovery_teacher=True)``)."""
    return _common.cached(workdir / "bench.json", lambda: _run_variant(name, baseline_ref, config, dataset, finetune,
                                                                      workdir, batch_n, seq_len, latency, teacher))


def _run_variant(name, baseline_ref, config, dataset, finetune, workdir, batch_n, seq_len, latency, teacher=False):
    import dataclasses

    import sizewise
    from sizewise.pipeline.executor import RunOptions, run
    from sizewise.pipeline.plan import Plan, Step

    log(f"{name}: {config} with fine-tuning {finetune}")
    loaded = sizewise.load(baseline_ref)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    with TrainRecorder() as rec:
        result = run(loaded, Plan((Step.of(config, finetune),), name=name), dataset, workdir,
                     RunOptions(measure=measure_cfg(1, seq_len), kind="prune", command=_common.command(),
                                progress=lambda m: log(f"  run: {m}"), recovery_teacher=teacher))
    wall = time.perf_counter() - t0
    step = result.steps[-1]
    out = {"name": name, "config": {"type": type(config).__name__, **dataclasses.asdict(config)},
           "finetune": finetune and dataclasses.asdict(finetune), "details": dict(result.details),
           "before": card_summary(result.before), "after": card_summary(result.after),
           "method_seconds": step.seconds, "compress_seconds": wall, "validation_metrics": step.metrics,
           "data_splits": result.record["data"] and {k: result.record["data"][k] for k in
                                                     ("sizes", "reported", "decisions", "validation_source")},
           "finetune_history": [history(r) for r in rec.results], "model_dir": str(result.model_dir),
           "recovery_teacher": teacher, "load1_before": load_before, "load1_after": os.getloadavg()[0],
           # what each fine-tuning actually ran with (the loop resolves "auto"), and why
           "finetune_used": [{k: getattr(r, k, None) for k in ("precision_used", "precision_reason", "augment_used",
                                                                "augment_reason", "seconds")} for r in rec.results]}
    log(f"{name}: after {out['after']['metrics']} nonzero {out['after']['nonzero']:,} "
        f"(method {out['method_seconds']:.0f} s)")
    if latency:
        out |= compare_latency(baseline_ref, str(workdir), batch_n, seq_len)
    return out


def train_baseline(ref: str, dataset, config, workdir: Path) -> dict[str, Any]:
    """``sizewise.train`` with a checkpoint every epoch in ``workdir`` (resumed if present), saved as a run dir."""
    import dataclasses

    import sizewise

    loaded = sizewise.load(ref)
    t0 = time.perf_counter()
    result = sizewise.train(loaded, dataset, config, out=workdir, resume=True, bar=True)
    sizewise.save_model(loaded, workdir / "model")
    hist = history(result)
    return {"config": dataclasses.asdict(config), "history": hist, "resumed_from_epoch": result.resumed_from_epoch,
            "this_run_seconds": time.perf_counter() - t0, "epoch_seconds": sum(e["seconds"] for e in hist),
            "best_epoch": result.best_epoch, "run_dir": str(workdir), "data_splits": splits_of(dataset)}


def schedule_line(cfg: dict[str, Any]) -> str:
    opt = cfg["optimizer"] + (f" (Nesterov momentum {cfg['momentum']})" if cfg["optimizer"] == "sgd" else "")
    return (f"{cfg['epochs']} epoch(s), {opt}, lr {cfg['lr']:g}, {cfg['schedule']} schedule (per step), batch "
            f"{cfg['batch_size']}, weight decay {cfg['weight_decay']:g}, {cfg['threads']} thread(s), "
            f"val_fraction {cfg['val_fraction']:g}, seed {cfg['seed']}")


def history_table(hist: list[dict[str, Any]], metric: str = "val accuracy") -> str:
    def val(x: float | None) -> str:
        return "-" if x is None else (pct(x) if x <= 1 else f"{x:.2f}")

    return "\n".join(md_table([{"epoch": e["epoch"], "train loss": f"{e['train_loss']:.4f}",
                                "train acc": "-" if e["train_accuracy"] is None else pct(e["train_accuracy"]),
                                metric: val(e["val_metric"]), "lr at end": f"{e['lr_end']:.2e}",
                                "seconds": f"{e['seconds']:.0f}"} for e in hist], "rrrrrr",
                              columns=["epoch", "train loss", "train acc", metric, "lr at end", "seconds"]))
