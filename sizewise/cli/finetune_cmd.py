"""``sizewise finetune MODEL --data D [--head new] [--freeze ...] [--lora R] [--labels N] --out DIR``."""

from __future__ import annotations

from pathlib import Path

import typer

from sizewise.cli.common import console, err_console, handles_errors


def _compute_lines(result) -> list[str]:
    from sizewise.core.units import format_flops

    c, a = result.compute, result.compute.energy_assumptions
    labels = f"{result.labelled_examples:,} ({result.train_examples:,} train"
    labels += f" + {result.validation_examples:,} validation)" if result.validation_examples else ")"
    unfrozen = f" · all after epoch {result.config.unfreeze_after}" if result.config.unfreeze_after else ""
    return [
        "[bold]what the training cost[/]",
        f"  labelled examples: {labels}",
        f"  trainable parameters: {result.trainable_parameters:,} of {result.total_parameters:,} at the start{unfrozen}",
        f"  examples seen: {c.examples_seen:,} over {c.epochs} epoch(s)",
        f"  training FLOPs: {format_flops(c.training_flops_3x_forward)} = 3 × forward {format_flops(c.forward_flops)} "
        f"([yellow]assumes backward ≈ 2 × forward[/]) · validation {format_flops(c.validation_flops)}",
        f"  time: {c.wall_seconds:.1f} s wall · {c.cpu_seconds:.1f} CPU-seconds",
        f"  energy: {c.energy_joules:,.1f} J ({c.energy_joules / 3600:.3g} Wh) · [yellow]estimated[/] "
        f"(CPU-seconds × {a['watts_per_core']} W/core × PUE {a['pue']})",
        f"  CO2e: {c.gco2e:.3g} g · grid {a['grid_gco2_per_kwh']:g} gCO2e/kWh ({a['region']})",
        *(f"  note: {n}" for n in c.notes),
    ]


@handles_errors
def finetune(
    model: str = typer.Argument(..., help="Pretrained model: minilm, a Hugging Face directory, a run directory, "
                                          "zoo:NAME, ..."),
    data: str = typer.Option(..., "--data", help="Labelled data for the new task: digits, an MNIST .npz, a CIFAR-10 "
                                                 "folder, an SST-2 or STS-B folder."),
    out: Path = typer.Option(..., "--out", help="Run directory: model/, card.json, checkpoint.pt."),
    task: str | None = typer.Option(None, "--task", help="The task the result must serve (image-classification, "
                                                         "text-classification, sentence-similarity); checked "
                                                         "against the data."),
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
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Share of the labelled examples held out for "
                                                                   "validation (0 trains on all)."),
    patience: int | None = typer.Option(None, "--patience", help="Early stopping after N epochs without "
                                                                 "validation improvement."),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint.pt."),
    threads: int | None = typer.Option(None, "--threads", help="Threads for training and measuring."),
    no_memory: bool = typer.Option(False, "--no-memory", help="Skip the child-process peak-memory measurement."),
    arch: str | None = typer.Option(None, "--arch", help="Architecture for a weights-only file."),
) -> None:
    """Adapt a pretrained model to a new task with a small labelled set, and show what it gained and cost."""
    import sizewise
    from sizewise.measure import MeasureConfig
    from sizewise.report.card_view import compare_table
    from sizewise.train.finetuning import FinetuneConfig, finetune, suggested_lr

    config = FinetuneConfig(head=head, freeze=freeze, unfreeze_after=unfreeze_after, lora=lora,
                            lora_alpha=lora_alpha, labels=labels, task=task)
    loaded = sizewise.load(model, arch=arch)
    dataset = sizewise.load_dataset(data)
    train_config = sizewise.TrainConfig(epochs=epochs, lr=suggested_lr(loaded, config) if lr is None else lr, batch_size=batch_size,
                                        val_fraction=val_fraction, patience=patience, seed=seed, threads=threads)

    def report(s) -> None:
        val = f" · val {s.val_accuracy:.2%}" if s.val_accuracy is not None else ""
        err_console.print(f"  epoch {s.epoch:>3}: loss {s.train_loss:.4f}{val} · {s.seconds:.1f} s", highlight=False)

    result = finetune(loaded, dataset, config, train_config, out=out, resume=resume,
                      measure_config=MeasureConfig(threads=threads, measure_memory=not no_memory), on_epoch=report,
                      progress=True, status=lambda text: err_console.print(f"  {text}…", highlight=False))
    if result.training.resumed_from_epoch:
        console.print(f"resumed after epoch {result.training.resumed_from_epoch}")
    before = "before (new head, untrained)" if result.head_replaced else "before"
    console.print(compare_table(result.before, result.after, before_name=before))
    for line in _compute_lines(result):
        console.print(line, highlight=False, soft_wrap=True)
    if result.lora:
        console.print(f"  LoRA rank {result.lora['rank']} on {result.lora['target_layers']} Linear layers "
                      f"({result.lora['adapter_parameters']:,} adapter parameters), merged into the weights",
                      highlight=False, soft_wrap=True)
    for warning in dict.fromkeys([*result.before.warnings, *result.after.warnings, *result.warnings]):
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.print(f"run directory: {out} (card.json has both cards and the compute; use it as MODEL next)")
