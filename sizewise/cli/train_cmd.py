"""``sizewise train MODEL --data D --out DIR``: how users (and our benchmarks) make baselines. A one-step plan (the
``train`` method, its config the TrainConfig) run by the one executor, so the run directory is like any other:
``OUT/model`` (use OUT as the next command's MODEL), ``OUT/card.json`` (before = untrained, after = trained).

Every epoch is checkpointed under ``OUT/steps/01-train/work``; ``--resume`` continues a killed run from there (or
re-measures a finished one). Without ``--resume`` an OUT that already holds a run is refused rather than
overwritten, so a typo in --out never destroys a long training run.

The defaults are the TrainConfig's, chosen to give a strong baseline without tuning: augmentation picked per dataset,
no weight decay on biases and norms, bf16 autocast where the CPU has native bf16. Label smoothing stays off by
default because a baseline here is often the teacher of a later ``distill``, and a teacher trained with smoothed
labels distils worse (Müller et al. 2019, "When does label smoothing help?").
"""

from __future__ import annotations

from pathlib import Path

import typer

from sizewise.cli.common import (
    with_data_options,
    console,
    handles_errors,
    load_inputs,
    measure_config,
    one_step,
    refuse_earlier_run,
    run_plan,
)


@handles_errors
@with_data_options
def train(
    model: str = typer.Argument(..., help="Model reference, usually zoo:NAME."),
    data: str = typer.Option(..., "--data", help="Training data: digits, an MNIST .npz, a CIFAR-10 folder."),
    out: Path = typer.Option(..., "--out", help="Run directory: model/, card.json, steps/01-train/work (the "
                                                "checkpoint while training)."),
    epochs: int = typer.Option(10, "--epochs"),
    lr: float = typer.Option(3e-3, "--lr", help="Peak learning rate."),
    batch_size: int = typer.Option(64, "--batch-size"),
    optimizer: str = typer.Option("adamw", "--optimizer", help="adamw or sgd (momentum 0.9, Nesterov)."),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine, onecycle (up to --lr over the first 30%, "
                                                              "then down), step (x0.1 at 50% and 75%) or constant."),
    warmup_epochs: float = typer.Option(0.0, "--warmup-epochs", help="Linear warm-up before the cosine decay "
                                                                     "(fractions allowed, e.g. 0.5)."),
    weight_decay: float = typer.Option(1e-4, "--weight-decay", help="On weight matrices and kernels only; biases "
                                                                    "and norm layers are not decayed."),
    augment: str = typer.Option("auto", "--augment", help="auto, none, crop or crop+flip. auto: random crop "
                                                          "(padding size/8, 4 for 32x32) + horizontal flip for "
                                                          "colour photos, crop alone for 1-channel or digit data "
                                                          "(a mirrored digit is another digit), none for text."),
    label_smoothing: float = typer.Option(0.0, "--label-smoothing", help="In [0, 1), e.g. 0.1; classification "
                                                                         "only."),
    precision: str = typer.Option("auto", "--precision", help="auto, fp32 or bf16 (autocast). auto: bf16 where the "
                                                              "CPU has native bf16 (avx512_bf16/amx_bf16) and the "
                                                              "model is a plain conv/linear model, else fp32."),
    patience: int | None = typer.Option(None, "--patience", help="Early stopping after N epochs without "
                                                                 "validation improvement."),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run in OUT from its last epoch (the "
                                                        "same options), or re-measure a finished one. Without it, "
                                                        "an OUT that already holds a run is refused, not "
                                                        "overwritten; other options than the run began with are "
                                                        "refused too."),
    runtime: str = typer.Option("torch", "--runtime", help="Runtime the before/after latency is measured on."),
    threads: int | None = typer.Option(None, "--threads", help="torch threads for the training and the "
                                                               "measurements (default: torch's own count)."),
    no_memory: bool = typer.Option(False, "--no-memory", help="Skip the child-process peak-memory measurement."),
    arch: str | None = typer.Option(None, "--arch", help="Architecture for a weights-only file."),
) -> None:
    """Train a model; every epoch is checkpointed so a killed run resumes with --resume."""
    from sizewise.compress.registry import get_method

    config = get_method("train").make(epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer,
                                      schedule=schedule, weight_decay=weight_decay, patience=patience, seed=seed,
                                      augment=augment, label_smoothing=label_smoothing, warmup_epochs=warmup_epochs,
                                      precision=precision)
    refuse_earlier_run(out, resume)
    import torch

    from sizewise.train.loop import torch_threads

    torch.manual_seed(seed)  # a zoo or factory model is built with random weights: --seed fixes them too
    loaded, dataset = load_inputs(model, data, arch)
    with torch_threads(threads):  # the training runs at the threads asked for, not only the measurements
        result = run_plan(loaded, one_step("train", config), dataset, out, kind="train",
                          measure=measure_config(runtime, threads, no_memory=no_memory),
                          title=f"{model} trained for {epochs} epochs", before_name="untrained",
                          after_name="trained")
    training = result.details.get("training") or {}
    for reason in (training.get("augment_reason"), training.get("precision_reason")):
        if reason:  # which augmentation and precision "auto" chose, so a reported accuracy can say how it was made
            console.print(f"training: {reason}", highlight=False, soft_wrap=True)
    console.print(f"run directory: {out} (use it as MODEL in the next command)", soft_wrap=True)
