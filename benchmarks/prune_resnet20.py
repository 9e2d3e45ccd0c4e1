"""Pruning benchmark 2: ResNet-20 on CIFAR-10, (a) 90% unstructured sparsity, (b) structured channel pruning.

    .venv/bin/python benchmarks/prune_resnet20.py   # ~60 min on a 2-core VM; writes results/prune_resnet20.json + prune.md

Everything is resumable: the baseline checkpoints every epoch under /tmp/prune-bench/resnet20/baseline
(``sizewise.train(..., out=, resume=True)``), and each finished pruning variant is cached in its run directory, so
running the same command again continues where it stopped.

- Baseline: ``zoo:resnet20`` trained from scratch with a shortened CPU schedule (SGD + Nesterov momentum 0.9, lr 0.1,
  weight decay 5e-4, cosine, batch 128). sizewise's training loop has **no data augmentation** (no random crop or
  flip), unlike He et al. 2016, so the baseline is weaker than the paper's 91.25% even apart from the short schedule.
- (a) ``GradualPrune(0.9, scope="global", ramp_fraction=0.5)`` while fine-tuning (SGD lr 0.01, cosine).
- (b) ``ChannelPrune(r, importance="l1", skip_unprunable=True)`` then fine-tuning (SGD lr 0.01, cosine): the option-A
  shortcuts make the residual-stream groups unprunable, so only the first conv of each block loses output channels.
  r is the smallest of a few candidates whose pruned model has >= 2x fewer FLOPs, chosen from FLOP counts alone.
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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import prune_common as pc  # noqa: E402

BATCH_N = 32
RAMP = 0.5  # gradual: ramp over the first half of fine-tuning (as in prune_lenet.py), recover in the second half
CHANNEL_CANDIDATES = (0.5, 0.55, 0.6, 0.65, 0.7)
PAPER_ACC = 91.25  # He et al. 2016, ResNet-20 on CIFAR-10 (with augmentation, 64k iterations)


def choose_channel_ratio(base_ref: str) -> tuple[float, list[dict]]:
    import sizewise
    from sizewise.compress.prune import ChannelPrune
    from sizewise.compress.prune.structured import channel
    from sizewise.compress.registry import StepContext
    from sizewise.measure.flops import count_flops

    tried = []
    base = sizewise.load(base_ref)
    inputs = base.example_inputs(1)
    flops0 = count_flops(base.module, inputs)[0].total
    for r in CHANNEL_CANDIDATES:
        loaded = sizewise.load(base_ref)
        details = channel(loaded, ChannelPrune(r, importance="l1", skip_unprunable=True), StepContext())
        flops = count_flops(loaded.module, inputs)[0].total
        tried.append({"ratio": r, "flops_before": flops0, "flops_after": flops, "reduction": flops0 / flops,
                      "params_kept": details["params_kept"], "left_unpruned": details["left_unpruned"]})
        pc.log(f"ChannelPrune({r}): FLOPs {flops0:,} -> {flops:,} ({flops0 / flops:.3f}x), "
               f"{len(details['left_unpruned'])} groups left unpruned")
        if flops0 / flops >= 2.0:
            return r, tried
    return CHANNEL_CANDIDATES[-1], tried


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-epochs", type=int, default=8)
    parser.add_argument("--ft-epochs", type=int, default=3, help="fine-tuning epochs of each pruning variant")
    parser.add_argument("--render", action="store_true", help="only rebuild the markdown from the saved JSON")
    args = pc.parse_args(parser)
    if args.render:
        payload = json.loads((pc.RESULTS / "prune_resnet20.json").read_text())
        runs = list(zip(payload["labels"], payload["variants"].values()))
        payload["markdown"] = markdown(payload, runs)
        pc.write_result("resnet20", payload)
        return

    import sizewise
    from sizewise.compress.prune import ChannelPrune, GradualPrune
    from sizewise.measure import measure

    import torch

    torch.set_num_threads(pc.TIMING_THREADS)  # evaluation too: see the header of prune.md on 2-thread contention
    meta = pc.new_meta()
    work = pc.WORK / "resnet20"
    pc.log("loading CIFAR-10 (first time: decodes 60k JPEGs, then cached)")
    dataset = sizewise.load_dataset(str(pc.DATA / "cifar10"))
    base_cfg = sizewise.TrainConfig(epochs=args.base_epochs, lr=0.1, batch_size=128, optimizer="sgd", momentum=0.9,
                                    weight_decay=5e-4, schedule="cosine", threads=1, seed=0)
    ft_cfg = sizewise.TrainConfig(epochs=args.ft_epochs, lr=0.01, batch_size=128, optimizer="sgd", momentum=0.9,
                                  weight_decay=5e-4, schedule="cosine", threads=1, seed=0)
    pc.log(f"baseline: {base_cfg}")
    baseline = pc.train_baseline("zoo:resnet20", dataset, base_cfg, work / "baseline")
    base_ref = str(work / "baseline")
    base_bN = pc.card_summary(measure(sizewise.load(base_ref), pc.measure_cfg(BATCH_N)))

    ratio, tried = choose_channel_ratio(base_ref)
    runs = [("90% unstructured (gradual, global)",
             pc.run_variant("unstructured-90", base_ref, GradualPrune(0.9, scope="global", ramp_fraction=RAMP), dataset,
                            ft_cfg,
                            work / "unstructured-90", BATCH_N)),
            (f"channels {ratio:.0%} per block (structured)",
             pc.run_variant(f"channel-{ratio}", base_ref,
                            ChannelPrune(ratio, importance="l1", skip_unprunable=True), dataset, ft_cfg,
                            work / f"channel-{ratio}", BATCH_N))]

    meta = pc.finish_meta(meta)
    payload = {"benchmark": "resnet20", "meta": meta, "baseline": baseline, "baseline_batchN": base_bN,
               "channel_search": tried, "variants": {r["name"]: r for _, r in runs},
               "labels": [label for label, _ in runs]}
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


def markdown(p: dict, runs: list) -> str:
    (ul, u), (cl, c) = runs
    columns = [{"label": "baseline (dense)", "b1": u["before"], "bN": p["baseline_batchN"]}]
    columns += [{"label": label, "b1": r["after"], "bN": r["afterN"], "ab1": r["ab1"], "abN": r["abN"]}
                for label, r in runs]
    extra = [("conv/linear weight sparsity", ["0", f"{u['details']['weight_sparsity']:.5%}", "0 (channels removed)"]),
             ("pruning + fine-tuning wall time", ["-"] + [f"{r['method_seconds'] / 60:.1f} min" for _, r in runs])]
    table = pc.comparison_table("accuracy", "test accuracy (10,000 images)", acc, columns, extra)
    b = p["baseline"]
    base_acc = u["before"]["metrics"]["accuracy"] * 100
    lines = [f"## {pc.TITLES['resnet20']}", ""] + pc.meta_lines(p["meta"]) + [""]
    lines += ["Goals: (a) 90% unstructured sparsity with <= 1 pp accuracy loss (\"ResNet can be pruned ~90% without "
              "impacting accuracy\"); (b) structured channel pruning with >= 2x fewer FLOPs, <= 1 pp loss, and measured "
              "CPU latency speedup >= 0.8 x the FLOP reduction (Torch-Pruning: 2.13x MACs at +0.24 pp on ResNet-56).",
              "", table, "",
              "Channel ratio search (FLOP counts only, no accuracy looked at): "
              + "; ".join(f"ChannelPrune({t['ratio']}) -> {t['reduction']:.3f}x fewer FLOPs "
                          f"({t['params_kept']:.1%} of params kept)" for t in p["channel_search"])
              + ". The first reaching 2x is used. Dependency groups left unpruned by `skip_unprunable`: "
              + ", ".join(f"`{g}`" for g in p["channel_search"][-1]["left_unpruned"])
              + " (the residual stream tied to the option-A zero-padding shortcuts). Conv widths of the saved pruned "
                f"model (out x in channels): {conv_widths(c['model_dir'])}.", "",
              "### Training schedule actually used", "",
              f"- baseline (`sizewise.train`, `zoo:resnet20` from scratch): {pc.schedule_line(b['config'])}; "
              f"{sum(e['seconds'] for e in b['history']) / 60:.1f} min of epochs"
              + (f" (trained by an earlier invocation of this same command with the same settings; the recorded run "
                 f"found its finished checkpoint at epoch {b['resumed_from_epoch']} and reused it. That earlier "
                 "invocation was stopped 3 minutes into variant (a), which then used the default ramp over 75% of "
                 "fine-tuning; it was restarted with the 50% ramp that worked better for LeNet before any of its "
                 "results existed)" if b["resumed_from_epoch"] else "")
              + ". **No data augmentation** (sizewise's loop has none: no random crop, no flip) and a "
              f"{b['config']['epochs']}-epoch schedule instead of He et al.'s ~182 epochs (64k iterations at batch "
              f"128). The baseline reaches {base_acc:.2f}% test accuracy"
              + (f", **weaker than the paper's {PAPER_ACC}%** by {PAPER_ACC - base_acc:.2f} pp"
                 if base_acc < PAPER_ACC else "") + ".",
              f"- fine-tuning of each pruned model (starting from the baseline): {pc.schedule_line(u['finetune'])}. "
              f"(a) prunes along the cubic schedule over the first {RAMP:.0%} of the steps (10 mask updates, global "
              "magnitude ranking over all conv and linear weights), then recovers at 90%; (b) removes the channels "
              "once, then fine-tunes.",
              "- Caveat on the <= 1 pp comparisons: the baseline's short schedule is far from converged, so the "
              f"{u['finetune']['epochs']} extra fine-tuning epochs each pruned model gets are also extra training the "
              "baseline did not get; a dense model trained for the same extra epochs was not run (time budget). "
              "This flatters the pruned models.", "",
              f"<details><summary>per-epoch history (validation = {pc.validation_words(b)})</summary>", "",
              "Baseline:", "", pc.history_table(b["history"]), ""]
    for label, r in runs:
        for h in r["finetune_history"]:
            lines += [f"Fine-tuning, {label}:", "", pc.history_table(h), ""]
    lines += ["</details>", "", "### Verdict", ""]
    ua = u["after"]["metrics"]["accuracy"] * 100
    sparsity = u["details"]["weight_sparsity"]
    # sizewise zeroes round(0.9 x N) weights, so the sparsity can sit a fraction of one weight below 90%
    ok_a = sparsity >= 0.9 - 1e-5 and base_acc - ua <= 1.0 + 1e-9
    lines.append(f"- **(a) 90% unstructured: {'MET' if ok_a else 'NOT MET'}**: weight sparsity {sparsity:.5%} "
                 "(90% of the conv/linear weights to the nearest whole weight), "
                 f"test accuracy {base_acc:.2f}% -> {ua:.2f}% ({ua - base_acc:+.2f} pp; the limit is -1.00 pp). "
                 f"Non-zero params {u['before']['params']:,} -> {u['after']['nonzero']:,}, artifact "
                 f"{u['before']['disk_bytes']:,} -> {u['after']['disk_bytes']:,} bytes. As expected for dense kernels, "
                 f"no speedup: interleaved {pc.ratio(u['ab1']['ratio_median'])} at batch 1, "
                 f"{pc.ratio(u['abN']['ratio_median'])} at batch {BATCH_N}; effective FLOPs "
                 f"{pc.ratio(u['before']['flops_effective'] / u['after']['flops_effective'])} fewer (what a sparse "
                 "kernel could skip at best).")
    if not ok_a:
        vals = ", ".join(pc.pct(e["val_metric"]) for h in u["finetune_history"] for e in h)
        lines.append(f"  Why: {u['finetune']['epochs']} fine-tuning epochs (the time budget) are not enough for this "
                     "270k-parameter network to re-learn what 90% of its weights held; validation accuracy per "
                     f"fine-tuning epoch was {vals} (baseline's last epoch: "
                     f"{pc.pct(b['history'][-1]['val_metric'])}). The "
                     "\"~90% without loss\" results come from schedules many times longer, with augmentation.")
    ca = c["after"]["metrics"]["accuracy"] * 100
    fr = c["before"]["flops"] / c["after"]["flops"]
    need = 0.8 * fr
    lat_ok = {}
    lat_txt = []
    for key, batch in (("ab1", 1), ("abN", BATCH_N)):
        ab = c[key]
        lat_ok[batch] = ab["ratio_median"] >= need
        lat_txt.append(f"batch {batch}: {pc.ratio(ab['ratio_median'])} (95% CI {pc.ratio(ab['ratio_ci95'][0])}-"
                       f"{pc.ratio(ab['ratio_ci95'][1])}) {'>=' if lat_ok[batch] else '<'} {need:.3f}x "
                       f"-> {'met' if lat_ok[batch] else 'not met'}")
    ok_b = fr >= 2.0 and base_acc - ca <= 1.0 + 1e-9 and all(lat_ok.values())
    lines.append(f"- **(b) structured channels: {'MET' if ok_b else 'NOT MET'}**: FLOPs {pc.ratio(fr, 3)} fewer "
                 f"({'>=' if fr >= 2 else '<'} 2x); test accuracy {base_acc:.2f}% -> {ca:.2f}% ({ca - base_acc:+.2f} pp; "
                 f"limit -1.00 pp, {'met' if base_acc - ca <= 1.0 + 1e-9 else 'not met'}); measured speedup, 1 thread, "
                 f"interleaved, must be >= 0.8 x {fr:.3f} = {need:.3f}x: " + "; ".join(lat_txt)
                 + f". Params {c['before']['params']:,} -> {c['after']['params']:,}, artifact "
                 f"{c['before']['disk_bytes']:,} -> {c['after']['disk_bytes']:,} bytes. (Both latency sub-goals are "
                 "required for MET.)")
    lines += ["", f"Baseline: {base_acc:.2f}% after {b['config']['epochs']} epochs without augmentation"
              + (f", {PAPER_ACC - base_acc:.2f} pp below He et al.'s {PAPER_ACC}%" if base_acc < PAPER_ACC else "")
              + "; the <= 1 pp goals are judged against this measured baseline, not the paper's number.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
