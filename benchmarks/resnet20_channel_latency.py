"""Does channel pruning of ResNet-20 deliver its FLOP reduction as onnxruntime speed? (issue goal: a measured speed-up
>= 0.8x the FLOP reduction, at >= 2x fewer FLOPs). Speed depends on the layer shapes, not on trained weights, so this
times the architecture: an untrained ``zoo:resnet20`` against ``ChannelPrune`` copies of it, interleaved on
onnxruntime, 1 thread, batch 1 and 32 (:func:`sizewise.measure.compare.compare`: ratio of medians, paired-bootstrap 95%
interval). No accuracy is measured or decided here, so no data split is involved.

The candidates differ in the kept widths: ``round_to`` keeps a multiple of 8 or 16 channels, the channel blocks in
which onnxruntime's NCHWc convolutions compute (8 wide with AVX2, 16 with AVX-512), against no rounding.
``prune_resnet20.py`` picks its structured variant with :func:`choose` from this file's measurements (shapes only,
before any fine-tuning): the fewest-FLOPs-removed candidate with >= 2x fewer FLOPs whose speed-up at batch 32 is
>= 0.8x its FLOP reduction (interval's lower end), else the one closest to that.

    .venv/bin/python benchmarks/resnet20_channel_latency.py   # ~5 min; writes results/resnet20_channel_latency.{md,json}
"""

from __future__ import annotations

import json
import os
import tempfile

from _common import RESULTS, command, machine, md_table, now_utc, versions

# (sparsity, round_to): 0.3 -> widths 11/22/44 unrounded, 8/24/48 to 8s; 0.35/8 -> 8/24/40; 0.5 -> 8/16/32;
# 0.7/16 -> 16/16/16 (16 is the floor with blocks of 16)
CANDIDATES = ((0.3, 1), (0.3, 8), (0.35, 8), (0.5, 1), (0.7, 16))
GOAL = 0.8  # speed-up >= 0.8 x the FLOP reduction
MIN_REDUCTION = 2.0
SECONDS = 10.0


def name(sparsity: float, round_to: int) -> str:
    return f"ChannelPrune({sparsity}" + (f", round_to={round_to})" if round_to > 1 else ")")


def choose(runs: dict) -> str:
    """The candidate prune_resnet20.py fine-tunes (see the module docstring); ``runs`` as this file's JSON holds them."""
    ok = {k: r for k, r in runs.items() if r["flop_reduction"] >= MIN_REDUCTION}
    met = [k for k, r in ok.items() if r["b32"]["speedup_ci95"][0] >= GOAL * r["flop_reduction"]]
    if met:
        return min(met, key=lambda k: ok[k]["flop_reduction"])
    return max(ok, key=lambda k: ok[k]["b32"]["speedup"] / ok[k]["flop_reduction"])


def main() -> None:
    import torch

    import sizewise
    from sizewise.compress.prune import ChannelPrune
    from sizewise.compress.prune.structured import channel
    from sizewise.compress.registry import StepContext
    from sizewise.measure.compare import CompareConfig, compare
    from sizewise.measure.flops import count_flops

    torch.set_num_threads(1)
    work = tempfile.mkdtemp(prefix="r20-channel-")
    base = sizewise.load("zoo:resnet20")
    sizewise.save_model(base, f"{work}/base")
    flops0 = count_flops(base.module, base.example_inputs(1))[0].total
    rows, raw = [], {"date": now_utc(), "command": command(), "machine": machine(flags=True), "versions": versions(),
                     "goal": f"speed-up >= {GOAL} x FLOP reduction at >= {MIN_REDUCTION}x fewer FLOPs", "runs": {}}
    for sparsity, round_to in CANDIDATES:
        key = name(sparsity, round_to)
        pruned = sizewise.load("zoo:resnet20")
        details = channel(pruned, ChannelPrune(sparsity, importance="l1", round_to=round_to), StepContext())
        path = f"{work}/{sparsity}-{round_to}"
        sizewise.save_model(pruned, path)
        reduction = flops0 / count_flops(pruned.module, pruned.example_inputs(1))[0].total
        widths = details["conv_widths"]
        stages = "/".join(str(widths[f"layer{s}.0.conv2"]) for s in (1, 2, 3))
        run = raw["runs"][key] = {"sparsity": sparsity, "round_to": round_to, "flop_reduction": reduction,
                                  "residual_widths": stages, "conv_widths": widths}
        for batch in (1, 32):
            load = os.getloadavg()[0]
            c = compare(sizewise.load(f"{work}/base"), sizewise.load(path),
                        CompareConfig(batch_size=batch, threads=1, runtime_a="onnxruntime", runtime_b="onnxruntime",
                                      seconds=SECONDS))
            run[f"b{batch}"] = {**c.to_dict(), "load1_before": load, "load1_after": os.getloadavg()[0]}
            lo, hi = c.speedup_ci95
            verdict = "-" if reduction < MIN_REDUCTION else ("met" if lo >= GOAL * reduction else "NOT met")
            rows.append([key, stages, batch, f"{reduction:.2f}x", f"{GOAL * reduction:.2f}x",
                         f"{c.speedup:.2f}x [{lo:.2f}-{hi:.2f}]", verdict, f"{c.other_load_cores or 0:.2f}"])
            print(rows[-1], flush=True)
    raw["chosen_for_prune_resnet20"] = choose(raw["runs"])
    lines = ["# ResNet-20 channel pruning: FLOP reduction against onnxruntime speed-up", "",
             f"- date: {raw['date']}; produced by `{raw['command']}`", f"- machine: {raw['machine']}",
             f"- versions: {', '.join(f'{k} {v}' for k, v in raw['versions'].items())}",
             "- untrained weights (speed depends on shapes only); onnxruntime, 1 thread, interleaved A/B, ratio of "
             "medians with a paired-bootstrap 95% interval; no data split is involved: nothing is decided on "
             "validation and nothing is reported on test (no accuracy is measured; the accuracy side of the goal "
             "needs a trained base, scored on CIFAR-10's test split: `prune.md`)",
             "- every conv narrows, the residual stream too: the option-A shortcuts narrow with their stage "
             "(`ZeroPadShortcut.prune_in_channels/prune_out_channels`); `round_to` keeps a multiple of that many "
             "channels (nearest, at least one)", "",
             *md_table(rows, "llrrrrcr", columns=["pruned model", "residual widths (stage 1/2/3)", "batch",
                                                  "FLOPs fewer", "goal (0.8x)", "speed-up [95% CI]", "goal",
                                                  "other load (cores)"]), "",
             f"`prune_resnet20.py` fine-tunes **{raw['chosen_for_prune_resnet20']}** (the rule in this script's "
             "docstring: the smallest FLOP reduction >= 2x that meets the goal at batch 32, else the best ratio)."]
    (RESULTS / "resnet20_channel_latency.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
    (RESULTS / "resnet20_channel_latency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
