"""MiniLM on STS-B: ``sizewise shrink`` for latency on onnxruntime within 1% of the Spearman, then the chosen model
side by side with torch fp32 eager, onnxruntime fp32 and onnxruntime dynamic int8, timed interleaved in the same run.

Usage (from the repository root):
    .venv/bin/python benchmarks/shrink_minilm.py [--trials N] [--samples N] [--time-budget S] [--out DIR]

Rewrites the MiniLM section of benchmarks/results/shrink.md and benchmarks/results/shrink_minilm.json (the hand-written
benchmarks/results/shrink_minilm_reading.md is appended to the section as it is). ``--render-only`` rebuilds them from
an earlier run's OUT (results.json, side_by_side.json, bench.json); re-running with the same OUT reuses a finished
search and a finished side-by-side unless ``--force`` is given.

Stages:

1. ``sizewise.shrink("minilm", STS-B)``: every trial is scored on STS-B dev (the validation split) and the choice is
   made there; the baselines and the chosen model are then measured once on the STS-B test split, which is what the
   goals are judged on. The search covers the registry's families for this model (head pruning, layer distillation,
   factorization, int8 dynamic/static, int4 weight-only, onnxruntime's BERT fusions); fp16 is left out: it is known to be
   slow on onnxruntime's CPU provider, and a trial of it would spend minutes of the time budget to show that. The search stops
   proposing trials after ``--time-budget`` seconds. torch runs at 1 thread in this process (training, evaluation,
   latency): on a shared 2-core machine a 2-thread pool stalls whenever another process holds a core.
2. Side by side: torch fp32 eager, ORT fp32, ORT dynamic int8 and the chosen model (on onnxruntime, as the search
   measured it), all fed the same tokenization, timed interleaved in a seeded random order every round
   (:func:`sizewise.measure.compare.time_interleaved`), at 1 and at 2 threads, (a) at batch 1 x 128 tokens and (b) at
   the real token lengths of a seeded sample of test sentences, one call per sentence, unpadded. Ratios: (a) median /
   median with a paired bootstrap 95% interval; (b) the median over sentences of each sentence's ratio (the median of
   its passes), with an order-statistics 95% interval. A speed-up is called only when the interval, widened by the
   run-to-run tolerance sizewise uses (:func:`sizewise.measure.compare.judge`), excludes 1.0.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import DATA, RESULTS, MachineLoad, command, cpu_model, log, md_table, versions
from shrink_common import card_of, describe, methods_of, replace_section, trials_table

STSB = DATA / "stsb"
METHODS = ("head", "distill", "factorize", "int8-dynamic", "int8-static", "int4-weight", "ort-optimize")
BUDGET = "1%"  # --max-drop 1%: relative to the baseline's Spearman
SEQ_LEN = 128
# The issue's goals (batch 1 x 128 tokens, interleaved, 1 thread; bytes against the fp32 model; Spearman on test)
GOAL_VS_TORCH, GOAL_VS_ORT, GOAL_BYTES, GOAL_SPEARMAN = 4.0, 3.0, 4.0, 81.2
TORCH, ORT32, INT8, CHOSEN = "torch fp32 eager", "ORT fp32", "ORT dynamic int8", "chosen"


def date_u() -> str:
    return subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def isa_flags() -> list[str]:
    """The CPU's AVX-512, VNNI and AMX flags, as /proc/cpuinfo lists them."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags |= set(line.split(":", 1)[1].split())
    except OSError:
        return []
    return sorted(f for f in flags if f.startswith(("avx512", "amx")) or "vnni" in f)


# --------------------------------------------------------------------------------------------- 1. the search


def run_search(args: argparse.Namespace, out: Path, cmd: str) -> dict[str, Any]:
    import sizewise
    from sizewise.core.budget import Budget
    from sizewise.pipeline import ShrinkConfig

    unlabeled = None
    if args.distill_sentences:  # students learn on unlabeled sentences: STS-B train's and SST-2 train's first N
        from distill_stsb import unlabeled_sentences

        sentences, _ = unlabeled_sentences(sizewise.load_dataset(str(STSB)),
                                           sizewise.load_dataset(str(DATA / "sst2")), 0, args.distill_sentences)
        out.mkdir(parents=True, exist_ok=True)
        unlabeled = out / "unlabeled.txt"
        unlabeled.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    config = ShrinkConfig(max_drop=Budget.parse(BUDGET), objective="latency", runtime="onnxruntime",
                          methods=tuple(args.methods.split(",")), trials=args.trials,
                          time_budget_s=args.time_budget, finetune_epochs=args.epochs, finetune_lr=2e-5,
                          distill_epochs=args.distill_epochs, distill_lr=1e-4 if unlabeled else None,
                          distill_unlabeled=str(unlabeled) if unlabeled else None,
                          finetune_samples=args.samples, threads=1,
                          batch_size=1, seq_len=SEQ_LEN, latency_seconds=args.latency_seconds,
                          compare_seconds=args.compare_seconds)
    bench = {"date_start": date_u(), "uptime_start": uptime()}
    if unlabeled:
        bench["unlabeled_sentences"] = len(sentences)  # recorded: a --render-only needs no OUT/unlabeled.txt
    started = time.time()
    sizewise.shrink("minilm", str(STSB), str(out), config, command=cmd, progress=log)
    bench |= {"search_wall_s": time.time() - started, "date_search_end": date_u(), "uptime_search_end": uptime()}
    return bench


# --------------------------------------------------------------------------------------------- 2. side by side


def _onnx(loaded, path: Path):
    """The module the search times on onnxruntime: the model's own graph, or its export at 128 tokens (dynamic
    batch and sequence axes, so the real-length inputs run on the same graph)."""
    from sizewise.models.convert import to_onnx
    from sizewise.models.onnx_module import OnnxModule

    return loaded.module if loaded.is_onnx else OnnxModule(to_onnx(loaded, path, seq_len=SEQ_LEN))


def _file_bytes(module) -> int | None:
    return module.file_bytes() if hasattr(module, "file_bytes") else None


def side_models(out: Path, results: dict[str, Any], workdir: Path) -> tuple[dict[str, Any], dict[str, str], Any]:
    """The four models (name -> callable module) and where each came from; plus the baseline (its tokenizer)."""
    import sizewise

    baseline = sizewise.load(str(out / "baseline"))
    baseline.module.eval()
    models = {TORCH: baseline.module, ORT32: _onnx(baseline, workdir / "fp32.onnx")}
    source = {TORCH: f"{out}/baseline on torch (eager)", ORT32: f"{out}/baseline exported to ONNX (opset as sizewise)"}
    dyn = next((t for t in results["trials"] if t["state"] == "complete" and methods_of(t["plan"]) == ["int8-dynamic"]),
               None)
    if dyn:
        models[INT8] = _onnx(sizewise.load(dyn["artifact"]), workdir / "int8.onnx")
        source[INT8] = f"the search's trial {dyn['number']} (int8-dynamic alone)"
    else:
        quantized = sizewise.apply(baseline, sizewise.Int8Dynamic(runtime="onnxruntime"))
        models[INT8] = _onnx(quantized, workdir / "int8.onnx")
        source[INT8] = "sizewise.apply(baseline, Int8Dynamic()) (no int8-dynamic-alone trial ran)"
    chosen = results.get("chosen")
    if chosen:
        models[CHOSEN] = _onnx(sizewise.load(chosen["artifact"]), workdir / "chosen.onnx")
        source[CHOSEN] = f"the search's trial {chosen['trial']} ({chosen['description']}), on onnxruntime"
    return models, source, baseline


def _timed(models: dict[str, Any], calls: dict[str, Any], threads: int, *, max_rounds: int, seconds: float,
           min_rounds: int) -> tuple[dict[str, Any], dict[str, float], str, str]:
    import torch

    from sizewise.measure.compare import time_interleaved
    from sizewise.measure.latency import torch_threads
    from sizewise.models.onnx_module import OnnxModule

    for module in models.values():
        if isinstance(module, OnnxModule):
            module.set_threads(threads)
    before = uptime()
    with MachineLoad() as load, torch_threads(threads), torch.inference_mode():
        times = time_interleaved(calls, max_rounds=max_rounds, max_seconds=seconds, min_rounds=min_rounds,
                                 warmup=3, order="random", seed=0)
    return times, load.as_dict(), before, uptime()


def _ratio(speedup: float, ci: tuple[float, float]) -> dict[str, Any]:
    from sizewise.measure.compare import judge
    from sizewise.measure.latency import RUN_TO_RUN_TOLERANCE

    outcome, verdict, interval = judge(speedup, tuple(ci), RUN_TO_RUN_TOLERANCE)
    return {"ratio": speedup, "ci95": list(ci), "decision_interval": list(interval), "outcome": outcome,
            "verdict": verdict}


def fixed_length(models: dict[str, Any], inputs: dict, threads: int, seconds: float) -> dict[str, Any]:
    """Batch 1 x 128 tokens: every model once per round, random order; ratio = median / median, paired bootstrap."""
    import numpy as np

    from sizewise.measure.compare import bootstrap_speedup
    from sizewise.measure.latency import median_ci95

    calls = {name: (lambda m=m: m(**inputs)) for name, m in models.items()}
    times, load, up0, up1 = _timed(models, calls, threads, max_rounds=20_000, seconds=seconds, min_rounds=30)
    result = {"threads": threads, "rounds": len(times[TORCH]), "load": load, "uptime_before": up0, "uptime_after": up1,
              "p50_ms": {n: float(np.median(t)) for n, t in times.items()},
              "p50_ci95_ms": {n: list(median_ci95(t)) for n, t in times.items()}, "vs": {}}
    for ref in (TORCH, ORT32):
        result["vs"][ref] = {n: _ratio(float(np.median(times[ref]) / np.median(t)), bootstrap_speedup(times[ref], t))
                             for n, t in times.items() if n != ref}
    return result


def real_lengths(models: dict[str, Any], sentences: list[dict], threads: int, passes: int,
                 seconds: float) -> dict[str, Any]:
    """One call per sentence at its own (unpadded) length; every model on the same sentence in each round. At least
    one pass over the sentences, at most ``passes``, stopping at the first round past ``seconds`` once one is done.
    Each sentence's ratio is the median of its passes; reported: the median over sentences, order-statistics 95%
    CI."""
    import numpy as np

    from sizewise.measure.latency import median_ci95

    n = len(sentences)
    counters = dict.fromkeys(models, 0)

    def call(name: str, module) -> Any:
        i = counters[name]
        counters[name] = i + 1
        return module(**sentences[i % n])

    calls = {name: (lambda name=name, m=m: call(name, m)) for name, m in models.items()}
    warmup = 3
    times, load, up0, up1 = _timed(models, calls, threads, max_rounds=n * passes, seconds=seconds, min_rounds=n)
    assert len(set(counters.values())) == 1, counters  # every model saw the same sentence in every round
    index = (np.arange(len(times[TORCH])) + warmup) % n  # the sentence each timed round ran
    per_sentence = {name: np.array([np.median(t[index == s]) for s in range(n)]) for name, t in times.items()}
    result = {"threads": threads, "sentences": n, "passes_max": passes, "passes": len(times[TORCH]) / n,
              "rounds": len(times[TORCH]), "load": load,
              "uptime_before": up0, "uptime_after": up1,
              "p50_ms": {name: float(np.median(v)) for name, v in per_sentence.items()}, "vs": {}}
    for ref in (TORCH, ORT32):
        result["vs"][ref] = {}
        for name, v in per_sentence.items():
            if name == ref:
                continue
            r = per_sentence[ref] / v
            result["vs"][ref][name] = _ratio(float(np.median(r)), median_ci95(r))
    return result


def test_sentences(baseline, count: int, seed: int = 0) -> tuple[list[dict], dict[str, Any]]:
    """A seeded sample of STS-B test sentences (both sides of the pairs), each tokenized alone: no padding,
    truncated at 128 tokens, as every model gets it."""
    import numpy as np

    from sizewise.data import load_dataset

    pairs = load_dataset(str(STSB)).split("test").inputs
    pool = [s for pair in pairs for s in pair]
    picked = random.Random(seed).sample(pool, min(count, len(pool)))
    tok = baseline.inputs.tokenizer
    encoded = [dict(tok(s, truncation=True, max_length=SEQ_LEN, return_tensors="pt")) for s in picked]
    lengths = np.array([e["input_ids"].shape[1] for e in encoded])
    return encoded, {"count": len(encoded), "seed": seed, "of": len(pool), "tokens_median": float(np.median(lengths)),
                     "tokens_min": int(lengths.min()), "tokens_max": int(lengths.max()),
                     "tokens_p90": float(np.percentile(lengths, 90))}


def side_by_side(out: Path, results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="shrink-minilm-side-") as tmp:
        models, source, baseline = side_models(out, results, Path(tmp))
        fixed_inputs = baseline.example_inputs(1, SEQ_LEN)
        sentences, sample = test_sentences(baseline, args.sentences)
        data: dict[str, Any] = {"models": source, "bytes": {n: _file_bytes(m) for n, m in models.items()},
                                "sample": sample, "fixed": {}, "real": {}}
        for threads in (1, 2):
            log(f"side by side at {threads} thread(s), batch 1 x {SEQ_LEN} tokens ({args.side_seconds:g} s)")
            data["fixed"][str(threads)] = fixed_length(models, fixed_inputs, threads, args.side_seconds)
            log(f"side by side at {threads} thread(s), {sample['count']} test sentences, 1 to {args.passes} passes")
            data["real"][str(threads)] = real_lengths(models, sentences, threads, args.passes, args.side_seconds)
    data["wall_s"] = time.time() - started
    return data


# --------------------------------------------------------------------------------------------- rendering


def _x(r: dict[str, Any]) -> str:
    from sizewise.measure.compare import _ceil2, _floor2

    mark = {"faster": "", "none": " (no speed-up beyond noise)", "slower": " (slower)"}[r["outcome"]]
    return f"{_floor2(r['ratio'])}x [{_floor2(r['ci95'][0])}-{_ceil2(r['ci95'][1])}]{mark}"


def side_table(side: dict[str, Any], kind: str) -> list[str]:
    rows = []
    for threads, block in side[kind].items():
        load = block["load"]
        for name, p50 in block["p50_ms"].items():
            rows.append([threads, name, f"{p50:.3f}",
                         "1" if name == TORCH else _x(block["vs"][TORCH][name]),
                         "1" if name == ORT32 else _x(block["vs"][ORT32][name]),
                         f"{load['others_cores']:.2f} / {load['steal_cores']:.2f}"])
    what = "p50 ms" if kind == "fixed" else "median over sentences of per-sentence p50, ms"
    return md_table(rows, "rlrrrr", columns=["threads", "model", what, "vs torch fp32 eager [95% CI]",
                                            "vs ORT fp32 [95% CI]", "other load / steal (cores)"])


def goal_rows(speed: dict[str, dict[str, Any]], size: tuple[str, str, float] | None,
              spearman: float | None) -> list[list[str]]:
    """The issue's MiniLM goals as table rows, for this search's choice and for the composed measurement alike.
    ``speed``: a reference's name -> the model's interleaved ratio against it (batch 1 x 128, 1 thread); ``size``: (what
    the bytes are judged against, the measured text, the ratio judged); ``spearman``: the test score."""
    def verdict(met: bool) -> str:
        return "MET" if met else "NOT MET"

    rows = []
    for ref, goal in ((TORCH, GOAL_VS_TORCH), (ORT32, GOAL_VS_ORT)):
        if ref in speed:
            r = speed[ref]
            rows.append([f"≥ {goal:g}x faster than {ref} (batch 1 x 128, interleaved, 1 thread; the 95% CI's lower "
                         "bound must reach it)", _x(r), verdict(r["ci95"][0] >= goal)])
    if size:
        against, measured, ratio = size
        rows.append([f"≥ {GOAL_BYTES:g}x fewer bytes than {against}", measured, verdict(ratio >= GOAL_BYTES)])
    if spearman is not None:
        rows.append([f"Spearman ≥ {GOAL_SPEARMAN} on test", f"{spearman:.2f}", verdict(spearman >= GOAL_SPEARMAN)])
    return rows


def goals(results: dict[str, Any], side: dict[str, Any] | None) -> list[list[str]]:
    from sizewise.core.budget import points

    test = (results.get("chosen") or {}).get("test") or {}
    card = test.get("card")
    one = (side or {}).get("fixed", {}).get("1")
    speed = {ref: one["vs"][ref][CHOSEN] for ref in (TORCH, ORT32) if one and CHOSEN in one["vs"][ref]}
    if not card:
        return goal_rows(speed, None, None)
    # judged against the fp32 ONNX file (the same format as the chosen model) and the torch checkpoint alike
    onnx32 = results["baseline"]["runtime_fp32"]["size"]["disk_bytes"]
    torch32 = results["baseline"]["torch_fp32"]["size"]["disk_bytes"]
    nbytes = card["size"]["disk_bytes"]
    size = (f"fp32 (ONNX fp32 {onnx32:,} B; torch fp32 {torch32:,} B)",
            f"{onnx32 / nbytes:.2f}x / {torch32 / nbytes:.2f}x ({nbytes:,} B)", min(onnx32, torch32) / nbytes)
    return goal_rows(speed, size, points(results["metric"], card["metrics"][results["metric"]]))


def trial_training(trial: dict[str, Any]) -> str:
    """How long a trial's training steps (recovery, distillation) ran, from its step log."""
    path = Path(trial["artifact"]) / "steps.json" if trial.get("artifact") else None
    if path is None or not path.is_file():
        return ""
    try:
        steps = json.loads(path.read_text())
    except json.JSONDecodeError:
        return ""
    parts = []
    for step in steps.get("steps", steps) if isinstance(steps, dict) else steps:
        if not isinstance(step, dict):
            continue
        seconds = step.get("seconds")
        if seconds is None:
            continue
        text = f"{step.get('method', '?')} {seconds:.0f} s"
        training = (step.get("details") or {}).get("training") or (step.get("details") or {}).get("recovery")
        if isinstance(training, dict) and training.get("seconds") is not None:
            text += f" (training {training['seconds']:.0f} s, {len(training.get('epochs', []))} epoch(s))"
        kept = (step.get("details") or {}).get("params_kept")
        if kept is not None:
            text += f", {kept:.0%} of the parameters kept"
        student = ((step.get("details") or {}).get("student") or {})
        if student.get("student_params"):
            text += f", student {student['student_params']:,} of {student['teacher_params']:,} parameters"
        proxy = (step.get("metrics") or {}).get("spearman")
        if proxy is not None:
            text += f", then proxy {proxy:.2f}"
        parts.append(text)
    return ", ".join(parts)


def trials_extra(results: dict[str, Any]) -> list[str]:
    rows = []
    for t in results["trials"]:
        rows.append([t["number"], describe(t), t["state"], f"{t.get('seconds', 0):.0f}", trial_training(t)])
    return md_table(rows, "rllrl", columns=["#", "what it did", "state", "trial wall s",
                                            "steps: seconds, training, Spearman on the dev proxy after the step"])


def budget_points(results: dict[str, Any], split: str) -> str:
    from sizewise.core.budget import Budget

    metric = results["metric"]
    base = (results["baseline"]["validation"] if split == "validation" else results["baseline"]["runtime_fp32"])
    return f"{Budget.parse(BUDGET).allowed_drop(metric, base['metrics'][metric]):.2f} points"


def render(out: Path, cmd: str, section: str = "minilm") -> None:
    from sizewise.core.budget import points

    results = json.loads((out / "results.json").read_text())
    cmd = results.get("command") or cmd  # the command the search ran with (--render-only adds nothing to it)
    bench = json.loads((out / "bench.json").read_text())
    side_path = out / "side_by_side.json"
    side = json.loads(side_path.read_text()) if side_path.is_file() else None
    cfg = results["config"]
    base_torch, base_rt = results["baseline"]["torch_fp32"], results["baseline"]["runtime_fp32"]
    val = results["baseline"]["validation"]
    metric = results["metric"]
    env = results["environment"]
    chosen = results.get("chosen")
    card = (chosen or {}).get("test", {}) and chosen["test"].get("card")
    states = [t["state"] for t in results["trials"]]
    # sections of other searches say what they searched, and their key: two may search the same methods
    scope = f", searching {', '.join(cfg['methods'])} ({section})" if section != "minilm" else ""
    lines = [f"## all-MiniLM-L6-v2 on STS-B: objective latency on onnxruntime, budget 1%{scope}", "",
             f"- date: {bench['date_start']} (search ended {bench['date_search_end']}; run ended {bench['date_end']})",
             f"- command: `{cmd}` (from the repository root); wall time {bench['wall_s'] / 60:.1f} min: search "
             f"{bench['search_wall_s'] / 60:.1f} min (its test measurement and interleaved comparisons included), "
             f"side-by-side {side['wall_s'] / 60:.1f} min" if side else f"- command: `{cmd}`",
             f"- machine: {bench['cpu']}, {env['logical_cores']} cores (VM: {env.get('virtual_machine')}); CPU flags "
             f"(AVX-512/VNNI/AMX): {' '.join(bench['isa_flags']) or 'none'}",
             f"- versions: {', '.join(f'{k} {v}' for k, v in bench['versions'].items())}",
             "- threads: torch at 1 thread for the whole search (training, evaluation, latency); onnxruntime at 1 "
             "intra-op thread for every latency (its evaluation sessions at onnxruntime's default); the side-by-side "
             "at 1 and at 2 threads (torch and onnxruntime alike)",
             f"- load: at start `{bench['uptime_start']}`; at the end of the search `{bench['uptime_search_end']}`; at "
             f"the end `{bench['uptime_end']}` (2 cores, shared with other jobs; every timing below carries the CPU "
             "other processes used while it ran)",
             f"- splits: trials scored and the choice made on STS-B **dev** (the validation split, 1,500 pairs; "
             f"proxy: the first {int(1500 * cfg['proxy_fraction'])}); the baselines and the chosen model reported on "
             "STS-B **test** (1,379 pairs; CC BY-SA 4.0), Spearman x 100 of cosine similarity",
             f"- search: {len(states)} trials ({states.count('complete')} complete, {states.count('pruned')} stopped "
             f"by the proxy, {states.count('failed')} failed, {states.count('skipped')} skipped) of at most "
             f"{cfg['trials']}, time budget {cfg['time_budget_s'] / 60:.0f} min, over {', '.join(cfg['methods'])} (fp16 left "
             "out: known slow on onnxruntime's CPU provider, not worth a trial of the budget); "
             f"recovery after a structure step: {cfg['finetune_epochs']} epoch on the first {cfg['finetune_samples']:,} "
             f"STS-B train pairs at lr {cfg['finetune_lr']}, distilled from the baseline "
             f"(recovery_teacher={cfg['recovery_teacher']}); distillation students: {cfg['distill_epochs']} epochs on "
             + ("both sentences of the same pairs at the same lr" if not cfg.get("distill_unlabeled") else
                f"{_sentence_count(bench, cfg['distill_unlabeled']):,} unlabeled sentences (STS-B train + SST-2 train, "
                f"--distill-sentences) at lr {cfg['distill_lr']}")
             + f"; latency at batch 1, {cfg['seq_len']} tokens, 1 thread, "
             f"{cfg['latency_seconds']:g} s per trial; budget: --max-drop 1% of the baseline's Spearman (dev "
             f"{points(metric, val['metrics'][metric]):.2f}, allowed drop {budget_points(results, 'validation')}; test "
             f"{points(metric, base_rt['metrics'][metric]):.2f}, allowed drop {budget_points(results, 'test')})",
             ""]
    lines += ["### What the search chose", "",
              f"- verdict: {results['verdict']}",
              f"- headline: {results.get('headline') or '(none)'}"]
    if chosen:
        hw = results.get("hardware") or {}
        lines += [f"- chosen: trial {chosen['trial']}, **{chosen['description']}**; Spearman dev "
                  f"{points(metric, chosen['validation']['metric']):.2f} (baseline "
                  f"{points(metric, chosen['validation']['baseline']):.2f}), test "
                  f"{points(metric, chosen['test']['metric']):.2f} (baseline "
                  f"{points(metric, chosen['test']['baseline']):.2f})",
                  f"- its kernels: {'/'.join(hw.get('kernels', []))}; this CPU has "
                  f"{', '.join(hw.get('present', [])) or 'none of them'}"
                  + (f"; lacks {', '.join(hw['absent'])}" if hw.get("absent") else "")]
        for name, c in (results.get("speedups") or {}).items():
            lines.append(f"- the search's own interleaved timing vs {name} ({c['runtime_a']} -> {c['runtime_b']}, "
                         f"{c['rounds']} rounds, other load {c['other_load_cores'] or 0:.2f} cores): {c['verdict']}")
    lines += ["", "Cards measured once on test when the search ended (one after the other, not interleaved; the "
              "ratios below them are what decides):", ""]
    rows = []
    for name, c in (("torch fp32 eager", base_torch), ("onnxruntime fp32", base_rt),
                    *(((f"chosen (trial {chosen['trial']})", card),) if card else ())):
        lat = c["latency"]
        rows.append([name, f"{points(metric, c['metrics'][metric]):.2f}", f"{c['size']['disk_bytes']:,}",
                     f"{c['flops']['total']:,}",
                     f"{lat['p50_ms']:.2f} [{lat['ci95_median_ms'][0]:.2f}-{lat['ci95_median_ms'][1]:.2f}]",
                     f"{lat.get('other_load_cores') or 0:.2f}"])
    lines += md_table(rows, "lrrrrr", columns=["model", "Spearman (test)", "bytes", "FLOPs", "p50 ms [95% CI]",
                                               "other load (cores)"])
    if side:
        s = side["sample"]
        lines += ["", "### Side by side, interleaved (after the search, same run)", "",
                  "Models: " + "; ".join(f"{n}: {v}" for n, v in side["models"].items()) + ".",
                  "Same tokenizer and inputs for all; every round calls each model once in a seeded random order. "
                  "Cells: ratio (>1: the row's model is faster) [95% CI]; a speed-up is named only when the interval, "
                  "widened by sizewise's 5% run-to-run tolerance, excludes 1.0.", "",
                  f"**Batch 1 x {SEQ_LEN} tokens** (ratio of medians, paired bootstrap over rounds; "
                  + ", ".join(f"{b['rounds']} rounds at {t} thread(s)" for t, b in side["fixed"].items()) + "):", "",
                  *side_table(side, "fixed"), "",
                  f"**Real token lengths**: {s['count']} STS-B test sentences drawn with seed {s['seed']} from "
                  f"{s['of']:,}, tokenized alone without padding (median {s['tokens_median']:.0f} tokens, p90 "
                  f"{s['tokens_p90']:.0f}, {s['tokens_min']}-{s['tokens_max']}), one call per sentence ("
                  + ", ".join(f"{b['rounds']} rounds = {b['passes']:.2f} passes at {t} thread(s)"
                              for t, b in side["real"].items())
                  + "); per-sentence ratio = median of its passes; reported: the median over sentences with an "
                  "order-statistics 95% CI:", "",
                  *side_table(side, "real")]
    lines += ["", "### Goals", "", *md_table(goals(results, side), "lrl", columns=["goal", "measured", "verdict"])]
    lines += ["", "### Trials", "", "Scored on STS-B dev; latency measured in each trial (1 thread, minutes apart: "
              "compare trials by their intervals, not their medians).", "", *trials_table(results, "latency"), "",
              "Time per trial and per step (from each trial's step log):", "", *trials_extra(results)]
    if results.get("left_out"):
        lines += ["", f"Left out by the search: {'; '.join(results['left_out'])}"]
    reading = RESULTS / f"shrink_{section}_reading.md"
    if reading.is_file():
        lines += ["", reading.read_text().rstrip()]
    replace_section(section, "\n".join(lines))
    trials = [{k: v for k, v in t.items() if k != "card"} | {"card": slim(card_of(t) if t.get("artifact") else None)}
              for t in results["trials"]]
    chosen_json = chosen and {**chosen, "test": {**chosen["test"], "card": slim(chosen["test"].get("card"))}}
    (RESULTS / f"shrink_{section}.json").write_text(json.dumps(
        {"command": cmd, **bench, "verdict": results["verdict"], "headline": results.get("headline"),
         "hardware": results.get("hardware"), "speedups": results.get("speedups"),
         "selection_split": results.get("selection_split"), "reported_split": results.get("reported_split"),
         "config": cfg, "baseline": {k: slim(v) for k, v in results["baseline"].items()},
         "goals": goals(results, side), "side_by_side": side, "chosen": chosen_json, "pareto": results["pareto"],
         "trials": trials}, indent=2) + "\n")


def _sentence_count(bench: dict[str, Any], path: str) -> int:
    """The students' sentences, as the run recorded them (runs made before it recorded them: counted in the file)."""
    if "unlabeled_sentences" in bench:
        return bench["unlabeled_sentences"]
    return sum(1 for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip())


def slim(card: dict[str, Any] | None) -> dict[str, Any] | None:
    """A card without its per-layer parameter table (OUT keeps the full cards)."""
    if not card:
        return card
    return {**card, "params": {k: v for k, v in card["params"].items() if k != "per_layer"}}


# --------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--samples", type=int, default=1500, help="STS-B train pairs for recovery and distillation")
    parser.add_argument("--epochs", type=int, default=1, help="recovery epochs after a structure step")
    parser.add_argument("--distill-epochs", type=int, default=2)
    parser.add_argument("--section", default="minilm", help="the shrink.md section (and shrink_SECTION.json, "
                        "shrink_SECTION_reading.md) this run writes")
    parser.add_argument("--distill-sentences", type=int, default=0,
                        help="students learn on the STS-B train sentences + the first N SST-2 train sentences "
                             "(unlabeled) instead of the --samples pairs; 0 = the pairs")
    parser.add_argument("--time-budget", type=float, default=1800, help="seconds the search may start trials in")
    parser.add_argument("--latency-seconds", type=float, default=2.0)
    parser.add_argument("--compare-seconds", type=float, default=20.0, help="the search's own interleaved timing")
    parser.add_argument("--side-seconds", type=float, default=30.0, help="side-by-side at 128 tokens, per threads")
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", default="/tmp/shrink-minilm")
    parser.add_argument("--force", action="store_true", help="redo the side-by-side of a finished run")
    parser.add_argument("--render-only", action="store_true", help="rebuild the results from OUT")
    args = parser.parse_args()
    out = Path(args.out)
    cmd = command().replace(" --render-only", "")
    if not args.render_only:
        import torch

        torch.set_num_threads(1)
        t0 = time.time()
        bench_path = out / "bench.json"
        bench = json.loads(bench_path.read_text()) if bench_path.is_file() else None
        if bench is None:
            bench = run_search(args, out, cmd)
            bench_path.write_text(json.dumps(bench, indent=2))  # a finished search is never run again
        results = json.loads((out / "results.json").read_text())
        if not (out / "side_by_side.json").is_file() or args.force:
            (out / "side_by_side.json").write_text(json.dumps(side_by_side(out, results, args), indent=2))
        bench |= {"date_end": date_u(), "uptime_end": uptime(), "wall_s": bench.get("search_wall_s", 0)
                  + json.loads((out / "side_by_side.json").read_text())["wall_s"],
                  "process_wall_s": time.time() - t0, "cpu": cpu_model(), "isa_flags": isa_flags(),
                  "versions": versions() | {"onnx": _version("onnx")}}
        bench_path.write_text(json.dumps(bench, indent=2))
    render(out, cmd, args.section)
    print((RESULTS / "shrink.md").read_text().split(f"<!-- end:{args.section} -->")[0])


def _version(name: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    main()
