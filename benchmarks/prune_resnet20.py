"""Pruning benchmark 2: ResNet-20 on CIFAR-10, (a) 90% unstructured sparsity, (b) structured channel pruning.

    .venv/bin/python benchmarks/prune_resnet20.py   # ~60 min on a 2-core VM; writes results/prune_resnet20.json + prune.md
    .venv/bin/python benchmarks/prune_resnet20.py --base RUN_DIR --ft-epochs 15   # prune a base trained elsewhere
    .venv/bin/python benchmarks/prune_resnet20.py --render [--note TEXT ...]     # rebuild the markdown (with notes)

Everything is resumable: the baseline checkpoints every epoch under /tmp/prune-bench/resnet20/baseline
(``sizewise.train(..., out=, resume=True)``), and each finished pruning variant is cached in its run directory, so
running the same command again continues where it stopped.

- ``--base RUN_DIR``: the baseline is a finished ``sizewise train`` run directory (e.g. one trained by
  ``sizewise train zoo:resnet20 --epochs 50 --augment auto ...``) instead of the one this script trains; the result
  describes it from its own record (``card.json``: command, schedule, per-epoch history and seconds, augmentation and
  precision it ran with, test accuracy). The fine-tunes then use what the training loop offers: SGD lr 0.01 (cosine),
  weight decay 5e-4, random crop + flip, bf16 autocast where the CPU has it (``precision="auto"``), 1 thread
  (``--ft-threads``: one epoch of a 2-thread ResNet-20 training took 392 s while other jobs held a core, the epoch
  before it 73 s), and
  knowledge distillation from the baseline (``RunOptions(recovery_teacher=True)``). Latency is also compared on
  onnxruntime (``sizewise.measure.compare.compare``, interleaved, batch 1 and 32, 1 thread), and goal (b)'s speed-up
  is judged there (the issue's runtime); the torch rows stay for reference.
- Without ``--base`` (as before): ``zoo:resnet20`` trained from scratch with a shortened CPU schedule (SGD +
  Nesterov momentum 0.9, lr 0.1, weight decay 5e-4, cosine, batch 128), without data augmentation (``TrainConfig``'s
  default ``augment="none"``), so that baseline is weaker than the paper's 91.25% even apart from the short schedule.
- (a) ``GradualPrune(0.9, scope="global", ramp_fraction=0.5)`` while fine-tuning (SGD lr 0.01, cosine).
- (b) ``ChannelPrune(r, importance="l1", round_to=k)`` then fine-tuning: every conv narrows, the residual stream too
  (the option-A shortcuts narrow with their stage). (r, k) is the candidate ``resnet20_channel_latency.py`` chose from
  its onnxruntime timings of the pruned shapes (run it first): >= 2x fewer FLOPs and the best speed for them.
- Latency at batch 1 and batch 32, 1 thread: cards, and before/after interleaved call by call.

Each variant is a one-step plan run by the executor (``prune_common.run_variant``). Split discipline: per-epoch
validation reads the validation split ``load_dataset`` carves from CIFAR-10's train split (10%, seeded, stratified);
accuracies are reported on the 10,000 test images. The committed result (results/prune_resnet20.json) PREDATES this:
its training loop held out 10% of train itself (an unstratified draw) and its variants ran through the removed
``sizewise.compress.compress``; a re-run trains on a slightly different 90% of train, so its numbers can differ.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import prune_common as pc  # noqa: E402
from _common import TrainRecord  # noqa: E402

BATCH_N = 32
RAMP = 0.5  # gradual: ramp over the first half of fine-tuning (as in prune_lenet.py), recover in the second half
PAPER_ACC = 91.25  # He et al. 2016, ResNet-20 on CIFAR-10 (with augmentation, 64k iterations)
ORT_SECONDS = 20.0  # interleaved onnxruntime timing per comparison (rounds stop after the first one past this)
ROOT = Path(__file__).resolve().parents[1]


def base_from_run(run_dir: Path) -> dict:
    """What a finished ``sizewise train`` run directory says about itself (its ``card.json``): nothing assumed."""
    record = TrainRecord.read(run_dir)
    if record is None:
        raise SystemExit(f"--base {run_dir}: no card.json with a train step (give a `sizewise train --out` folder)")
    training = record.training
    hist = [{"epoch": e["epoch"], "train_loss": e["train_loss"], "train_accuracy": e["train_accuracy"],
             "val_metric": e["val_accuracy"], "lr_end": e["lr"], "seconds": e["seconds"]} for e in record.epochs]
    card, env = record.card, record.environment
    return {"source": "run_dir", "run_dir": str(run_dir), "command": card.get("command"), "model": card.get("model"),
            "config": record.config, "history": hist, "epoch_seconds": record.epoch_seconds,
            "train_seconds": training.get("seconds"), "step_seconds": record.step["seconds"],
            "resumed_from_epoch": training.get("resumed_from_epoch", 0), "best_epoch": training.get("best_epoch"),
            "stopped_early": training.get("stopped_early"),
            "precision_used": training.get("precision_used"), "precision_reason": training.get("precision_reason"),
            "augment_used": training.get("augment_used"), "augment_reason": training.get("augment_reason"),
            "validation": record.step["metrics"], "test_metrics": record.test_metrics,
            "environment": {k: env.get(k) for k in ("cpu", "threads", "libraries")},
            "data_splits": card.get("data") and {k: card["data"].get(k) for k in
                                                 ("sizes", "reported", "decisions", "validation_source")},
            "card_mtime": os.path.getmtime(run_dir / "card.json")}


def finetune_config(epochs: int, lr: float, threads: int):
    """The fine-tuning recipe of every variant on a ``--base`` (also ``prune_resnet20_controls.py``'s)."""
    import sizewise

    return sizewise.TrainConfig(epochs=epochs, lr=lr, batch_size=128, optimizer="sgd", momentum=0.9,
                                weight_decay=5e-4, schedule="cosine", augment="crop+flip", precision="auto",
                                threads=threads, seed=0)


def ort_compare(before_ref: str, after_ref: str, batch: int) -> dict:
    """Before vs after on onnxruntime, interleaved (``sizewise compare``'s loop and statistics), 1 thread."""
    import sizewise
    from sizewise.measure.compare import CompareConfig, compare

    load_before = os.getloadavg()[0]
    result = compare(sizewise.load(before_ref), sizewise.load(after_ref),
                     CompareConfig(batch_size=batch, threads=pc.TIMING_THREADS, runtime_a="onnxruntime",
                                   runtime_b="onnxruntime", seconds=ORT_SECONDS)).to_dict()
    env = result.pop("environment", {}) or {}
    result |= {"load1_before": load_before, "load1_after": os.getloadavg()[0],
               "onnxruntime": (env.get("libraries") or {}).get("onnxruntime")}
    pc.log(f"  onnxruntime interleaved batch {batch}: {result['speedup']:.3f}x "
           f"({result['median_a_ms']:.3f} -> {result['median_b_ms']:.3f} ms, {result['rounds']} rounds)")
    return result


PROFILE_RUNS = {1: 300, BATCH_N: 60}


def stage_of(name: str) -> str:
    import re

    m = re.search(r"layer(\d)", name)
    return f"layer{m.group(1)}" if m else "rest: stem, head, layout reorders"


def conv_flops_by_stage(ref: str) -> dict[str, int]:
    """Conv FLOPs (2 x MACs) per stage at batch 1, from the torch module's actual conv shapes."""
    import sizewise
    import torch

    loaded = sizewise.load(ref)
    flops: dict[str, int] = {}
    hooks = []
    for name, m in loaded.module.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            def hook(mod, inp, out, name=name):
                k = mod.weight.shape[1] * mod.weight.shape[2] * mod.weight.shape[3]
                flops[stage_of(name)] = flops.get(stage_of(name), 0) + 2 * out.numel() * k
            hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        loaded.module.eval()(**loaded.example_inputs(1))
    for h in hooks:
        h.remove()
    return flops


def ort_profiles(refs: dict[str, str], batch: int, workdir: Path) -> dict[str, dict]:
    """onnxruntime's own per-node profiles of the models in ``refs`` (1 thread, the session options sizewise's
    OnnxModule uses, plus profiling), their runs **interleaved** (ABAB...), so a change of load hits both alike: the
    median time of every node over PROFILE_RUNS[batch] runs, its op type, and the node's stage."""
    import statistics

    import onnxruntime as ort

    import sizewise
    from sizewise.models.convert import to_onnx

    sessions, feeds = {}, {}
    for key, ref in refs.items():
        (workdir / key).mkdir(parents=True, exist_ok=True)
        loaded = sizewise.load(ref)
        path = to_onnx(loaded, workdir / key / "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        options.enable_profiling, options.profile_file_prefix = True, str(workdir / key / f"profile-b{batch}")
        sessions[key] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds[key] = {k: v.numpy() for k, v in loaded.example_inputs(batch).items()}
    load_before = os.getloadavg()[0]
    for _ in range(PROFILE_RUNS[batch]):
        for key, session in sessions.items():
            session.run(None, feeds[key])
    load_after = os.getloadavg()[0]
    out = {}
    for key, session in sessions.items():
        events = json.loads(Path(session.end_profiling()).read_text())
        times: dict[str, list[float]] = {}
        ops: dict[str, str] = {}
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                node = e["name"].removesuffix("_kernel_time")
                times.setdefault(node, []).append(e["dur"])
                ops[node] = e.get("args", {}).get("op_name", "?")
        out[key] = {"batch": batch, "runs": PROFILE_RUNS[batch], "interleaved": True, "onnxruntime": ort.__version__,
                    "nodes": {n: {"op": ops[n], "stage": stage_of(n), "us": statistics.median(v), "calls": len(v)}
                              for n, v in times.items()},
                    "load1_before": load_before, "load1_after": load_after}
    return out


def profile_summary(prof: dict) -> dict[str, dict[str, float]]:
    """Per stage: conv time (Conv/FusedConv nodes) and the time of every other node, in microseconds."""
    out: dict[str, dict[str, float]] = {}
    for node in prof["nodes"].values():
        key = "conv_us" if node["op"] in ("Conv", "FusedConv") else "other_us"
        stage = out.setdefault(node["stage"], {"conv_us": 0.0, "other_us": 0.0})
        stage[key] += node["us"]
    return out


def channel_diagnosis(base_ref: str, run: dict, work: Path) -> dict:
    """Where the channel-pruned model's onnxruntime time goes against the base's: per stage, conv FLOPs and
    profiled conv / other-op time at batch 1 and BATCH_N (cached)."""
    def compute() -> dict:
        after_ref = str(work / run["name"])
        return {"flops": {"before": conv_flops_by_stage(base_ref), "after": conv_flops_by_stage(after_ref)},
                "profiles": {str(b): ort_profiles({"before": base_ref, "after": after_ref}, b,
                                                  work / "profile" / run["name"]) for b in (1, BATCH_N)}}

    return pc._common.cached(work / run["name"] / "ort_profile.json", compute)


def diagnosis_lines(d: dict) -> list[str]:
    stages = sorted(set(d["flops"]["before"]) | set(d["flops"]["after"]), key=lambda s: (not s.startswith("layer"), s))
    rows = []
    sums = {}
    for b, pair in d["profiles"].items():
        sums[b] = {side: profile_summary(pair[side]) for side in ("before", "after")}
    for stage in stages + ["all"]:
        fb = sum(d["flops"]["before"].values()) if stage == "all" else d["flops"]["before"].get(stage, 0)
        fa = sum(d["flops"]["after"].values()) if stage == "all" else d["flops"]["after"].get(stage, 0)
        row = [stage, f"{fb:,} -> {fa:,} ({fb / fa:.2f}x)" if fa else "-"]
        for b in d["profiles"]:
            for key in ("conv_us", "other_us"):
                def total(side, key=key, b=b):
                    per = sums[b][side]
                    return sum(v[key] for v in per.values()) if stage == "all" else per.get(stage, {}).get(key, 0.0)
                tb, ta = total("before"), total("after")
                row.append(f"{tb:,.0f} -> {ta:,.0f} ({tb / ta:.2f}x)" if ta else (f"{tb:,.0f} -> 0" if tb else "-"))
        rows.append(row)
    cols = ["stage", "conv FLOPs, batch 1 (reduction)"]
    for b in d["profiles"]:
        cols += [f"conv time, batch {b}, µs", f"other ops' time, batch {b}, µs"]
    first = next(iter(d["profiles"].values()))["before"]
    return [f"Where the onnxruntime time goes (onnxruntime {first['onnxruntime']}'s own per-node profile, 1 thread, "
            "baseline and pruned model run alternately, the median of each node over "
            + ", ".join(f"{p['before']['runs']} runs at batch {b}" for b, p in d["profiles"].items())
            + "; conv = Conv/FusedConv nodes after onnxruntime's graph optimizations, other = every other node: "
            "layout reorders, Add, Relu, the option-A shortcut's Slice/Pad (and Gather once pruned), pooling, Gemm). The sum of node medians "
            "is not the end-to-end latency (session overhead is outside the nodes):", "",
            *pc.md_table(rows, "l" + "r" * (len(cols) - 1), columns=cols)]


def ort_variant(base_ref: str, run: dict, workdir: Path) -> dict:
    return pc._common.cached(workdir / "ort.json", lambda: {"ort1": ort_compare(base_ref, str(workdir), 1),
                                                           "ortN": ort_compare(base_ref, str(workdir), BATCH_N)})


def choose_channel_config() -> tuple[float, int, dict]:
    """The structured variant: the candidate ``resnet20_channel_latency.py`` chose from its onnxruntime measurements of
    the pruned shapes (run it first, on the machine that runs this), with what it measured for every candidate."""
    raw = json.loads((pc.RESULTS / "resnet20_channel_latency.json").read_text())
    key = raw["chosen_for_prune_resnet20"]
    chosen = raw["runs"][key]
    pc.log(f"structured variant: {key} (widths {chosen['residual_widths']}, {chosen['flop_reduction']:.2f}x fewer "
           f"FLOPs), chosen by resnet20_channel_latency.py on {raw['date']}")
    tried = [{"candidate": k, "flop_reduction": r["flop_reduction"], "residual_widths": r["residual_widths"],
              **{f"speedup_b{b}": r[f"b{b}"]["speedup"] for b in (1, 32)},
              **{f"speedup_b{b}_ci95": r[f"b{b}"]["speedup_ci95"] for b in (1, 32)}} for k, r in raw["runs"].items()]
    return chosen["sparsity"], chosen["round_to"], {"chosen": key, "measured": raw["date"], "candidates": tried,
                                                    "rule": raw["goal"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-epochs", type=int, default=8)
    parser.add_argument("--ft-epochs", type=int, default=3, help="fine-tuning epochs of each pruning variant")
    parser.add_argument("--base", default=None, help="a finished `sizewise train` run directory to prune instead of "
                                                      "training a baseline here")
    parser.add_argument("--ft-lr", type=float, default=0.01, help="fine-tuning learning rate")
    parser.add_argument("--ft-threads", type=int, default=1,
                        help="fine-tuning threads with --base (1: a 2-thread loop crawls while another job holds a "
                             "core)")
    parser.add_argument("--render", action="store_true", help="only rebuild the markdown from the saved JSON")
    parser.add_argument("--note", action="append", default=None,
                        help="with --render: a reading to print under the verdict (repeatable; replaces earlier notes)")
    args = pc.parse_args(parser)
    if args.render:
        payload = json.loads((pc.RESULTS / "prune_resnet20.json").read_text())
        if args.note is not None:
            payload["notes"] = args.note
        runs = list(zip(payload["labels"], payload["variants"].values()))
        payload["markdown"] = markdown(payload, runs)
        pc.write_result("resnet20", payload)
        return

    import sizewise
    from sizewise.compress.prune import ChannelPrune, GradualPrune
    from sizewise.measure import measure

    import torch

    torch.set_num_threads(pc.TIMING_THREADS)  # evaluation too: see the header of prune.md on 2-thread contention
    pc.log(f"sizewise imported from {sizewise.__file__}")
    meta = pc.new_meta()  # its git line names benchmark scripts edited since the commit
    meta["package_path"] = str(Path(sizewise.__file__).parent)
    meta["work_dir"] = str(pc.WORK / "resnet20")
    work = pc.WORK / "resnet20"
    pc.log("loading CIFAR-10 (first time: decodes 60k JPEGs, then cached)")
    dataset = sizewise.load_dataset(str(pc.DATA / "cifar10"))
    if args.base:
        # a stronger base trained elsewhere: fine-tune with what the training loop offers, and learn from the base
        base_ref = str(Path(args.base).resolve())
        baseline = base_from_run(Path(base_ref))
        ft_cfg = finetune_config(args.ft_epochs, args.ft_lr, args.ft_threads)
        teacher = True
    else:
        base_cfg = sizewise.TrainConfig(epochs=args.base_epochs, lr=0.1, batch_size=128, optimizer="sgd",
                                        momentum=0.9, weight_decay=5e-4, schedule="cosine", threads=1, seed=0)
        ft_cfg = sizewise.TrainConfig(epochs=args.ft_epochs, lr=args.ft_lr, batch_size=128, optimizer="sgd",
                                      momentum=0.9, weight_decay=5e-4, schedule="cosine", threads=1, seed=0)
        pc.log(f"baseline: {base_cfg}")
        baseline = pc.train_baseline("zoo:resnet20", dataset, base_cfg, work / "baseline")
        base_ref = str(work / "baseline")
        teacher = False
    load_before = os.getloadavg()[0]
    base_bN = pc.card_summary(measure(sizewise.load(base_ref), pc.measure_cfg(BATCH_N)))
    base_bN["load1_before"], base_bN["load1_after"] = load_before, os.getloadavg()[0]

    ratio, round_to, tried = choose_channel_config()
    specs = [("90% unstructured (gradual, global)", "unstructured-90",
              GradualPrune(0.9, scope="global", ramp_fraction=RAMP)),
             (f"channels {ratio:.0%} per layer, widths rounded to {round_to}s (structured)",
              f"channel-{ratio}-r{round_to}", ChannelPrune(ratio, importance="l1", round_to=round_to))]
    runs = []
    for label, name, config in specs:
        r = pc.run_variant(name, base_ref, config, dataset, ft_cfg, work / name, BATCH_N, teacher=teacher)
        if args.base:  # the runtime: interleaved before/after on onnxruntime as well
            r |= ort_variant(base_ref, r, work / name)
        runs.append((label, r))
    diagnosis = channel_diagnosis(base_ref, runs[1][1], work) if args.base else None

    meta = pc.finish_meta(meta)
    payload = {"benchmark": "resnet20", "meta": meta, "baseline": baseline, "baseline_batchN": base_bN,
               "channel_search": tried, "variants": {r["name"]: r for _, r in runs},
               "labels": [label for label, _ in runs], "notes": [], "channel_diagnosis": diagnosis}
    payload["markdown"] = markdown(payload, runs)
    path = pc.write_result("resnet20", payload)
    pc.log(f"wrote {path}")


def conv_widths(model_dir: str) -> str:
    """Read back from the saved artifact, so the text says what was actually shipped."""
    import sizewise

    try:
        module = sizewise.load(str(Path(model_dir).parent)).module
    except Exception as exc:  # /tmp/prune-bench cleaned up since the run: say so rather than fail the render
        return f"not available ({type(exc).__name__}: the run directory {Path(model_dir).parent} is gone)"
    return ", ".join(f"`{name.removesuffix('.weight')}` {p.shape[0]}x{p.shape[1]}"
                     for name, p in module.named_parameters() if p.dim() == 4)


def acc(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.2f}%"


def ort_cell(o: dict | None) -> str:
    if not o:
        return "-"
    lo, hi = o["speedup_ci95"]
    return (f"{pc.ratio(o['speedup'])} ({pc.ratio(lo)}-{pc.ratio(hi)}; {pc.ms(o['median_a_ms'])} -> "
            f"{pc.ms(o['median_b_ms'])} ms, {o['rounds']:,} rounds, others {o['other_load_cores'] or 0:.2f} cores)")


def schedule_text(cfg: dict) -> str:
    """A TrainConfig as a sentence, with the fields the newer loop has (warm-up, augmentation, precision)."""
    opt = cfg["optimizer"] + (f" (Nesterov momentum {cfg['momentum']})" if cfg["optimizer"] == "sgd" else "")
    warm = f" after {cfg['warmup_epochs']:g} linear warm-up epoch(s)" if cfg.get("warmup_epochs") else ""
    threads = "torch's default thread count" if cfg.get("threads") is None else f"{cfg['threads']} thread(s)"
    extra = "".join(f", {k.replace('_', ' ')} {cfg[k]}" for k in ("augment", "precision") if k in cfg)
    smooth = f", label smoothing {cfg['label_smoothing']:g}" if cfg.get("label_smoothing") else ""
    return (f"{cfg['epochs']} epoch(s), {opt}, lr {cfg['lr']:g}, {cfg['schedule']} schedule (per step){warm}, batch "
            f"{cfg['batch_size']}, weight decay {cfg['weight_decay']:g}{smooth}{extra}, {threads}, seed {cfg['seed']}"
            + ("" if cfg.get("patience") else ", no early stopping (the last epoch's weights are kept)"))


def base_lines(p: dict, base_acc: float) -> list[str]:
    b = p["baseline"]
    if b.get("source") != "run_dir":  # trained by this script (the committed 8-epoch run and its like)
        return [f"- baseline (`sizewise.train`, `zoo:resnet20` from scratch): {pc.schedule_line(b['config'])}; "
                f"{sum(e['seconds'] for e in b['history']) / 60:.1f} min of epochs"
                + (f" (trained by an earlier invocation of this same command with the same settings; the recorded run "
                   f"found its finished checkpoint at epoch {b['resumed_from_epoch']} and reused it. That earlier "
                   "invocation was stopped 3 minutes into variant (a), which then used the default ramp over 75% of "
                   "fine-tuning; it was restarted with the 50% ramp that worked better for LeNet before any of its "
                   "results existed)" if b["resumed_from_epoch"] else "")
                + ". **No data augmentation** (sizewise's loop had none: no random crop, no flip) and a "
                f"{b['config']['epochs']}-epoch schedule instead of He et al.'s ~182 epochs (64k iterations at batch "
                f"128). The baseline reaches {base_acc:.2f}% test accuracy"
                + (f", **weaker than the paper's {PAPER_ACC}%** by {PAPER_ACC - base_acc:.2f} pp"
                   if base_acc < PAPER_ACC else "") + "."]
    hist = b["history"]
    own = b["test_metrics"]
    env = b.get("environment") or {}
    mean = b["epoch_seconds"] / max(1, len(hist))
    return [f"- baseline: **not trained by this script**: the finished `sizewise train` run directory `{b['run_dir']}` "
            f"given with `--base`, recorded (its `card.json`) as `{b['command']}` on {env.get('cpu') or 'this CPU'}: "
            f"{schedule_text(b['config'])}. Augmentation that ran: {b['augment_reason'] or b['augment_used']}. "
            f"Precision that ran: {b['precision_reason'] or b['precision_used']}. Time: {len(hist)} epochs, "
            f"{b['epoch_seconds'] / 60:.1f} min of epochs ({mean:.0f} s per epoch on average, from its per-epoch "
            f"history; the whole training step {b['step_seconds'] / 60:.1f} min including saving and scoring)"
            + (f", resumed from a checkpoint at epoch {b['resumed_from_epoch']}" if b.get("resumed_from_epoch") else "")
            + f". Test accuracy in its own record: {own['accuracy'] * 100:.2f}% on {int(own['examples']):,} "
            f"{own.get('split', 'test')} images; measured again by this run: {base_acc:.2f}% "
            f"(He et al. 2016 report {PAPER_ACC}% after ~182 epochs; "
            f"{'above' if base_acc >= PAPER_ACC else 'below'} it by {abs(base_acc - PAPER_ACC):.2f} pp)."]


def finetune_lines(p: dict, runs: list) -> list[str]:
    (_, u), (_, c) = runs
    b = p["baseline"]
    if b.get("source") != "run_dir":
        return [f"- fine-tuning of each pruned model (starting from the baseline): {pc.schedule_line(u['finetune'])}. "
                f"(a) prunes along the cubic schedule over the first {RAMP:.0%} of the steps (10 mask updates, global "
                "magnitude ranking over all conv and linear weights), then recovers at 90%; (b) removes the channels "
                "once, then fine-tunes.",
                "- Caveat on the <= 1 pp comparisons: the baseline's short schedule is far from converged, so the "
                f"{u['finetune']['epochs']} extra fine-tuning epochs each pruned model gets are also extra training "
                "the baseline did not get; a dense model trained for the same extra epochs was not run (time budget). "
                "This flatters the pruned models."]
    used = (u.get("finetune_used") or [{}])[0]
    kd = u["details"].get("recovery_teacher")
    return [f"- fine-tuning of each pruned model (starting from the baseline): {schedule_text(u['finetune'])}; "
            f"augmentation that ran: {used.get('augment_reason') or '?'}; precision that ran: "
            f"{used.get('precision_reason') or '?'}; "
            + (f"learning from the dense baseline as well as the labels (knowledge distillation: {kd})"
               if kd else "labels only (no distillation recorded)")
            + f". (a) prunes along the cubic schedule over the first {RAMP:.0%} of the steps (10 mask updates, "
            "global magnitude ranking over all conv and linear weights), then recovers at 90%; (b) removes the "
            "channels once, then fine-tunes.",
            "- Caveat on the <= 1 pp comparisons: each pruned model gets "
            f"{u['finetune']['epochs']} more epochs of training (with the baseline as teacher) that the baseline did "
            "not get (the baseline's cosine schedule had ended at lr 0). A dense model fine-tuned the same way is "
            "not run by this script: `prune_resnet20_controls.py` runs it (`prune_resnet20_controls.md`)."]


def markdown(p: dict, runs: list) -> str:
    (ul, u), (cl, c) = runs
    b = p["baseline"]
    has_ort = bool(u.get("ort1") and c.get("ort1"))
    columns = [{"label": "baseline (dense)", "b1": u["before"], "bN": p["baseline_batchN"]}]
    columns += [{"label": label, "b1": r["after"], "bN": r["afterN"], "ab1": r["ab1"], "abN": r["abN"]}
                for label, r in runs]
    extra = []
    if has_ort:
        extra += [("speedup, batch 1, **onnxruntime** interleaved [95% CI]", ["-", ort_cell(u["ort1"]),
                                                                              ort_cell(c["ort1"])]),
                  (f"speedup, batch {BATCH_N}, **onnxruntime** interleaved [95% CI]",
                   ["-", ort_cell(u["ortN"]), ort_cell(c["ortN"])])]
    extra += [("conv/linear weight sparsity", ["0", f"{u['details']['weight_sparsity']:.5%}", "0 (channels removed)"]),
              ("pruning + fine-tuning wall time", ["-"] + [f"{r['method_seconds'] / 60:.1f} min" for _, r in runs])]
    if "load1_before" in u:
        extra.append(("load average (1 min) before / after pruning + fine-tuning",
                      ["-"] + [f"{r['load1_before']:.2f} / {r['load1_after']:.2f}" for _, r in runs]))
    table = pc.comparison_table("accuracy", "test accuracy (10,000 images)", acc, columns, extra)
    base_acc = u["before"]["metrics"]["accuracy"] * 100
    lines = [f"## {pc.TITLES['resnet20']}", ""] + pc.meta_lines(p["meta"])
    if p["meta"].get("package_path"):
        lines.append(f"- sizewise imported from `{p['meta']['package_path']}`; intermediate run directories under "
                     f"`{p['meta']['work_dir']}`")
    lines += [""]
    runtime_words = ("measured latency speed-up on **onnxruntime** (the issue's runtime; interleaved, 1 thread, "
                     f"batch 1 and {BATCH_N}) >= 0.8 x the FLOP reduction" if has_ort else
                     "measured CPU latency speedup >= 0.8 x the FLOP reduction")
    lines += ["Goals: (a) 90% unstructured sparsity with <= 1 pp accuracy loss (\"ResNet can be pruned ~90% without "
              f"impacting accuracy\"); (b) structured channel pruning with >= 2x fewer FLOPs, <= 1 pp loss, and "
              f"{runtime_words} (Torch-Pruning: 2.13x MACs at +0.24 pp on ResNet-56).", ""]
    if has_ort:
        lines += ["Splits: the channel variant is chosen from timings of its shapes alone (no accuracy looked at); "
                  "per-epoch "
                  f"validation during fine-tuning reads {pc.validation_words(u)}, and nothing is selected on it (no "
                  "early stopping: the last epoch's weights are kept); every accuracy in the table is on the 10,000 "
                  "test images, scored once per model by torch in fp32. Latency: the torch rows are the executor's "
                  "cards and `_common.interleaved` (ABBA, median of per-pair ratios, order-statistic 95% interval); "
                  "the onnxruntime rows are `sizewise.measure.compare.compare` (each model exported to ONNX, ABBA, "
                  f"{ORT_SECONDS:g} s per comparison, speed-up = ratio of the two medians, 95% interval by paired "
                  "bootstrap over rounds), onnxruntime "
                  f"{u['ort1'].get('onnxruntime') or '?'} with 1 intra-op thread.", ""]
    lines += [table, "",
              "Structured variant chosen before any fine-tuning, from onnxruntime timings of the pruned shapes "
              f"(`resnet20_channel_latency.py`, {p['channel_search']['measured']}; no accuracy looked at): "
              + "; ".join(f"{t['candidate']} (widths {t['residual_widths']}) {t['flop_reduction']:.2f}x fewer FLOPs, "
                          f"{t['speedup_b1']:.2f}x at batch 1 / {t['speedup_b32']:.2f}x at batch 32"
                          for t in p["channel_search"]["candidates"])
              + f". Rule: {p['channel_search']['rule']}, the fewest FLOPs removed that meet it at batch 32, else the "
                f"best speed-up per FLOP reduction: **{p['channel_search']['chosen']}**. Every conv narrows, the "
                "residual stream too (the option-A shortcuts narrow with their stage). Conv widths of the saved "
                f"pruned model (out x in channels): {conv_widths(c['model_dir'])}.", "",
              "### Training schedule actually used", ""]
    lines += base_lines(p, base_acc) + finetune_lines(p, runs)
    lines += ["", f"<details><summary>per-epoch history (validation = {pc.validation_words(b)})</summary>", "",
              "Baseline:", "", pc.history_table(b["history"]), ""]
    for label, r in runs:
        for h in r["finetune_history"]:
            lines += [f"Fine-tuning, {label}:", "", pc.history_table(h), ""]
    lines += ["</details>", "", "### Verdict", ""]
    ua = u["after"]["metrics"]["accuracy"] * 100
    sparsity = u["details"]["weight_sparsity"]
    # sizewise zeroes round(0.9 x N) weights, so the sparsity can sit a fraction of one weight below 90%
    ok_a = sparsity >= 0.9 - 1e-5 and base_acc - ua <= 1.0 + 1e-9
    ort_a = (f"; onnxruntime {pc.ratio(u['ort1']['speedup'])} at batch 1, {pc.ratio(u['ortN']['speedup'])} at batch "
             f"{BATCH_N}" if has_ort else "")
    lines.append(f"- **(a) 90% unstructured: {'MET' if ok_a else 'NOT MET'}**: weight sparsity {sparsity:.5%} "
                 "(90% of the conv/linear weights to the nearest whole weight), "
                 f"test accuracy {base_acc:.2f}% -> {ua:.2f}% ({ua - base_acc:+.2f} pp; the limit is -1.00 pp). "
                 f"Non-zero params {u['before']['params']:,} -> {u['after']['nonzero']:,}, artifact "
                 f"{u['before']['disk_bytes']:,} -> {u['after']['disk_bytes']:,} bytes. Dense kernels skip no zeros, "
                 f"so no speed-up is expected: interleaved torch {pc.ratio(u['ab1']['ratio_median'])} at batch 1, "
                 f"{pc.ratio(u['abN']['ratio_median'])} at batch {BATCH_N}{ort_a}; effective FLOPs "
                 f"{pc.ratio(u['before']['flops_effective'] / u['after']['flops_effective'])} fewer (what a sparse "
                 "kernel could skip at best).")
    if not ok_a:
        vals = ", ".join(pc.pct(e["val_metric"]) for h in u["finetune_history"] for e in h)
        lines.append(f"  Measured: validation accuracy per fine-tuning epoch {vals} (baseline's last epoch: "
                     f"{pc.pct(b['history'][-1]['val_metric'])}).")
    ca = c["after"]["metrics"]["accuracy"] * 100
    fr = c["before"]["flops"] / c["after"]["flops"]
    need = 0.8 * fr
    lat_ok, lat_txt = {}, []
    if has_ort:
        for key, batch in (("ort1", 1), ("ortN", BATCH_N)):
            o = c[key]
            lat_ok[batch] = o["speedup_ci95"][0] >= need  # the interval's lower end, not the median
            lat_txt.append(f"batch {batch}: {pc.ratio(o['speedup'])} (95% CI {pc.ratio(o['speedup_ci95'][0])}-"
                           f"{pc.ratio(o['speedup_ci95'][1])}; {pc.ms(o['median_a_ms'])} -> {pc.ms(o['median_b_ms'])} "
                           f"ms) {'>=' if lat_ok[batch] else '<'} {need:.3f}x -> "
                           f"{'met' if lat_ok[batch] else 'not met'}")
        torch_ref = (f" For reference, torch eager interleaved: {pc.ratio(c['ab1']['ratio_median'])} at batch 1 "
                     f"(95% CI {pc.ratio(c['ab1']['ratio_ci95'][0])}-{pc.ratio(c['ab1']['ratio_ci95'][1])}), "
                     f"{pc.ratio(c['abN']['ratio_median'])} at batch {BATCH_N} (95% CI "
                     f"{pc.ratio(c['abN']['ratio_ci95'][0])}-{pc.ratio(c['abN']['ratio_ci95'][1])}).")
        where = "on onnxruntime, 1 thread, interleaved"
    else:
        for key, batch in (("ab1", 1), ("abN", BATCH_N)):
            ab = c[key]
            lat_ok[batch] = ab["ratio_median"] >= need
            lat_txt.append(f"batch {batch}: {pc.ratio(ab['ratio_median'])} (95% CI {pc.ratio(ab['ratio_ci95'][0])}-"
                           f"{pc.ratio(ab['ratio_ci95'][1])}) {'>=' if lat_ok[batch] else '<'} {need:.3f}x "
                           f"-> {'met' if lat_ok[batch] else 'not met'}")
        torch_ref, where = "", "1 thread, interleaved"
    ok_b = fr >= 2.0 and base_acc - ca <= 1.0 + 1e-9 and all(lat_ok.values())
    lines.append(f"- **(b) structured channels: {'MET' if ok_b else 'NOT MET'}**: FLOPs {pc.ratio(fr, 3)} fewer "
                 f"({'>=' if fr >= 2 else '<'} 2x); test accuracy {base_acc:.2f}% -> {ca:.2f}% ({ca - base_acc:+.2f} pp; "
                 f"limit -1.00 pp, {'met' if base_acc - ca <= 1.0 + 1e-9 else 'not met'}); measured speedup {where}, "
                 f"must be >= 0.8 x {fr:.3f} = {need:.3f}x: " + "; ".join(lat_txt)
                 + f". Params {c['before']['params']:,} -> {c['after']['params']:,}, artifact "
                 f"{c['before']['disk_bytes']:,} -> {c['after']['disk_bytes']:,} bytes. (Both latency sub-goals are "
                 "required for MET.)" + torch_ref)
    if base_acc - ca > 1.0 + 1e-9:
        vals = ", ".join(pc.pct(e["val_metric"]) for h in c["finetune_history"] for e in h)
        lines.append(f"  Measured: validation accuracy per fine-tuning epoch {vals} (baseline's last epoch: "
                     f"{pc.pct(b['history'][-1]['val_metric'])}).")
    if b.get("source") == "run_dir":
        lines += ["", f"Baseline: {base_acc:.2f}% test accuracy after {len(b['history'])} epochs with "
                  f"augmentation '{b['augment_used']}' and precision '{b['precision_used']}'; the <= 1 pp goals are "
                  "judged against this measured baseline, not the paper's number.", ""]
    else:
        lines += ["", f"Baseline: {base_acc:.2f}% after {b['config']['epochs']} epochs without augmentation"
                  + (f", {PAPER_ACC - base_acc:.2f} pp below He et al.'s {PAPER_ACC}%" if base_acc < PAPER_ACC else "")
                  + "; the <= 1 pp goals are judged against this measured baseline, not the paper's number.", ""]
    if p.get("channel_diagnosis"):
        lines += diagnosis_lines(p["channel_diagnosis"]) + [""]
    if p.get("notes"):
        lines += ["### Reading", ""] + [f"- {n}" for n in p["notes"]] + [""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
