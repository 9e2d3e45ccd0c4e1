"""Does channel pruning of ResNet-20 deliver its FLOP reduction as onnxruntime speed? (issue goal: a measured speed-up
>= 0.8x the FLOP reduction). Speed depends on the layer shapes, not on trained weights, so this times the
architecture: an untrained ``zoo:resnet20`` against its ``ChannelPrune`` copies, interleaved on onnxruntime, 1 thread,
batch 1 and 32 (:func:`sizewise.measure.compare.compare`: ratio of medians, paired-bootstrap 95% interval). No accuracy
is measured or decided here, so no data split is involved.

    .venv/bin/python benchmarks/resnet20_channel_latency.py   # ~1 min; writes results/resnet20_channel_latency.{md,json}
"""

from __future__ import annotations

import json
import os
import tempfile

from _common import RESULTS, command, machine, md_table, now_utc, versions

RATIOS = (0.5, 0.55)  # 0.55 is the smallest of prune_resnet20.py's candidates with >= 2x fewer FLOPs
GOAL = 0.8  # speed-up >= 0.8 x the FLOP reduction


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
                     "runs": {}}
    for ratio in RATIOS:
        pruned = sizewise.load("zoo:resnet20")
        channel(pruned, ChannelPrune(ratio, importance="l1", skip_unprunable=True), StepContext())
        sizewise.save_model(pruned, f"{work}/c{ratio}")
        reduction = flops0 / count_flops(pruned.module, pruned.example_inputs(1))[0].total
        widths = sorted({p.shape[0] for n, p in pruned.module.named_parameters()
                         if n.endswith("conv1.weight") and "layer" in n})
        for batch in (1, 32):
            load = os.getloadavg()[0]
            c = compare(sizewise.load(f"{work}/base"), sizewise.load(f"{work}/c{ratio}"),
                        CompareConfig(batch_size=batch, threads=1, runtime_a="onnxruntime", runtime_b="onnxruntime",
                                      seconds=10))
            raw["runs"][f"{ratio}/b{batch}"] = {"flop_reduction": reduction, "widths": widths, **c.to_dict(),
                                               "load1_before": load, "load1_after": os.getloadavg()[0]}
            lo, hi = c.speedup_ci95
            rows.append([f"ChannelPrune({ratio}) (first-conv widths {'/'.join(map(str, widths))})", batch,
                         f"{reduction:.3f}x", f"{GOAL * reduction:.2f}x", f"{c.speedup:.2f}x [{lo:.2f}-{hi:.2f}]",
                         "met" if lo >= GOAL * reduction else "NOT met", f"{c.other_load_cores or 0:.2f}"])
    lines = ["# ResNet-20 channel pruning: FLOP reduction against onnxruntime speed-up", "",
             f"- date: {raw['date']}; produced by `{raw['command']}`", f"- machine: {raw['machine']}",
             f"- versions: {', '.join(f'{k} {v}' for k, v in raw['versions'].items())}",
             "- untrained weights (speed depends on shapes only); onnxruntime, 1 thread, interleaved A/B, ratio of "
             "medians with a paired-bootstrap 95% interval; no data split is involved: nothing is decided on validation and "
             "nothing is reported on test (no accuracy is measured; the accuracy side of the goal needs a trained base, "
             "scored on CIFAR-10's test split)", "",
             *md_table(rows, "lrrrrcr", columns=["pruned model", "batch", "FLOPs fewer", "goal (0.8x)",
                                                 "speed-up [95% CI]", "goal", "other load (cores)"]), "",
             "Only the first convolution of each block narrows: ResNet-20's option-A shortcuts (zero-padded identity) "
             "tie the residual channels of a stage together, so `skip_unprunable` leaves them whole."]
    (RESULTS / "resnet20_channel_latency.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
    (RESULTS / "resnet20_channel_latency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
