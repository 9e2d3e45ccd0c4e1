"""``sizewise finetune MODEL --data D [--head new] [--freeze ...] [--lora R] [--labels N] --out DIR``: a one-step
plan (the step's config is the FinetuneConfig, its training the TrainConfig) run by the one executor. A model whose
head does not fit the data yet (``--head new`` for other classes) has a before card without metrics; the accuracy of
the new, untrained head is in the step's details."""

from __future__ import annotations

from pathlib import Path

import typer

from sizewise.cli.common import (
    with_data_options,
    console,
    handles_errors,
    load_inputs,
    model_options,
    measure_config,
    one_step,
    print_epochs,
    print_result,
    refuse_earlier_run,
    run_plan,
)


def _compute_lines(result: dict) -> list[str]:
    """What the training cost, from the step's ``finetune`` details."""
    from sizewise.core.units import format_flops

    c, a = result["compute"], result["compute"]["energy_assumptions"]
    labels = f"{result['train_examples']:,} train"
    labels += f" + {result['validation_examples']:,} validation" if result["validation_examples"] else ""
    unfreeze = result["config"].get("unfreeze_after")
    unfrozen = f" · all after epoch {unfreeze}" if unfreeze else ""
    return [
        "[bold]what the training cost[/]",
        f"  labelled examples: {labels}",
        f"  trainable parameters: {result['trainable_parameters']:,} of {result['total_parameters']:,} at the start"
        f"{unfrozen}",
        f"  examples seen: {c['examples_seen']:,} over {c['epochs']} epoch(s)",
        f"  training FLOPs: {format_flops(c['training_flops_3x_forward'])} = 3 × forward "
        f"{format_flops(c['forward_flops'])} ([yellow]assumes backward ≈ 2 × forward[/]) · validation "
        f"{format_flops(c['validation_flops'])}",
        f"  time: {c['wall_seconds']:.1f} s wall · {c['cpu_seconds']:.1f} CPU-seconds",
        f"  energy: {c['energy_joules']:,.1f} J ({c['energy_joules'] / 3600:.3g} Wh) · [yellow]estimated[/] "
        f"(CPU-seconds × {a['watts_per_core']} W/core × PUE {a['pue']})",
        f"  CO2e: {c['gco2e']:.3g} g · grid {a['grid_gco2_per_kwh']:g} gCO2e/kWh ({a['region']})",
        *(f"  note: {n}" for n in c["notes"]),
    ]


def _head_line(result: dict) -> str:
    """The held-out metric before (the untrained head, when it is new) and after the training, on validation."""
    from sizewise.report.run_report import format_metrics

    before = "before (new head, untrained)" if result["head_replaced"] else "before"
    return (f"  validation: {before} {format_metrics(result['metrics_before']) or 'not scored'} → after "
            f"{format_metrics(result['metrics_after']) or 'not scored'}")


@handles_errors
@with_data_options
def finetune(
    model: str = typer.Argument(..., help="Pretrained model: minilm, a Hugging Face directory, a run directory, "
                                          "zoo:NAME, ..."),
    data: str = typer.Option(..., "--data", help="Labelled data for the new task: digits, an MNIST .npz, a CIFAR-10 "
                                                 "folder, an SST-2 or STS-B folder."),
    out: Path = typer.Option(..., "--out", help="Run directory: model/, card.json, steps/ (training checkpoints)."),
    head: str = typer.Option("keep", "--head", help="keep, or new: a freshly initialised classifier for the data's "
                                                    "classes."),
    freeze: str = typer.Option("none", "--freeze", help="none, backbone (only the head trains), or N-layers (the "
                                                        "embeddings / first N layers)."),
    unfreeze_after: int | None = typer.Option(None, "--unfreeze-after", help="Unfreeze everything after epoch E "
                                                                              "(gradual unfreezing)."),
    lora: int | None = typer.Option(None, "--lora", help="Train rank-R LoRA adapters on the Linear layers instead "
                                                         "of the weights; merged into them before saving."),
    lora_alpha: float | None = typer.Option(None, "--lora-alpha", help="LoRA scale numerator (default: the rank)."),
    labels: int | None = typer.Option(None, "--labels", help="Train on the first N labelled training examples."),
    epochs: int = typer.Option(3, "--epochs"),
    lr: float | None = typer.Option(None, "--lr", help="Default: 5e-5 when transformer weights train, 1e-3 for a "
                                                       "head, adapters or a small CNN."),
    batch_size: int = typer.Option(32, "--batch-size"),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="0: no validation while training (no early "
                                                                   "stopping); otherwise the data's validation "
                                                                   "split is used."),
    patience: int | None = typer.Option(None, "--patience", help="Early stopping after N epochs without "
                                                                 "validation improvement."),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run in OUT (from its last epoch "
                                                        "checkpoint), or re-measure a finished one. Without it, an "
                                                        "OUT that holds a run is refused."),
    threads: int | None = typer.Option(None, "--threads", help="Threads for training and measuring."),
    no_memory: bool = typer.Option(False, "--no-memory", help="Skip the child-process peak-memory measurement."),
    arch: str | None = typer.Option(None, "--arch", help="Architecture for a weights-only file."),
) -> None:
    """Adapt a pretrained model to a new task with a small labelled set, and show what it gained and cost."""
    from sizewise.compress.registry import get_method
    from sizewise.train import TrainConfig
    from sizewise.train.finetuning import suggested_lr

    given = {"head": head, "freeze": freeze, "unfreeze_after": unfreeze_after, "lora": lora, "lora_alpha": lora_alpha,
             "labels": labels, "task": model_options()["task"]}  # --task: what the result must serve
    config = get_method("finetune").make(**{k: v for k, v in given.items() if v is not None})
    refuse_earlier_run(out, resume)
    loaded, dataset = load_inputs(model, data, arch, model_task=False)  # the model changes task here
    train = TrainConfig(epochs=epochs, lr=suggested_lr(loaded, config) if lr is None else lr, batch_size=batch_size,
                        val_fraction=val_fraction, patience=patience, seed=seed, threads=threads)
    result = run_plan(loaded, one_step("finetune", config, train), dataset, out, kind="finetune",
                      measure=measure_config(threads=threads, no_memory=no_memory), show=False)
    details = result.details.get("finetune") or {}
    print_epochs(details.get("training"))
    print_result(result)
    if details:
        console.print(_head_line(details), highlight=False, soft_wrap=True)
        for line in _compute_lines(details):
            console.print(line, highlight=False, soft_wrap=True)
        if details.get("lora"):
            lora_info = details["lora"]
            console.print(f"  LoRA rank {lora_info['rank']} on {lora_info['target_layers']} Linear layers "
                          f"({lora_info['adapter_parameters']:,} adapter parameters), merged into the weights",
                          highlight=False, soft_wrap=True)
        for warning in details.get("warnings") or []:
            console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.print(f"run directory: {out} (card.json: the run record; use it as MODEL next)", soft_wrap=True)
