"""``sizewise distill TEACHER --student SPEC --data D --out DIR``: knowledge distillation into a smaller student, a
one-step plan run by the one executor (the record's roles: teacher and student)."""

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

STUDENT_HELP = ("layers:K (keep K evenly spaced transformer layers, from the teacher's), width:F (a copy with F of "
                "the hidden width), or any model reference")


@handles_errors
@with_data_options
def distill(
    teacher: str = typer.Argument(..., help="The teacher: a run directory from sizewise train, minilm, ..."),
    student: str = typer.Option(..., "--student", help=STUDENT_HELP),
    data: str = typer.Option(..., "--data", help="Training data (and held-out data for the metric)."),
    out: Path = typer.Option(..., "--out", help="Run directory: model/, card.json, steps/ (training checkpoints)."),
    temperature: float = typer.Option(2.0, "--temperature", help="Softmax temperature of the logit loss."),
    alpha: float = typer.Option(0.5, "--alpha", help="Weight of the teacher's loss; 1 - alpha goes to the labels."),
    hidden_loss: bool = typer.Option(False, "--hidden-loss", help="Also match hidden states / features (through a "
                                                                  "learned projection where widths differ)."),
    hidden_weight: float = typer.Option(1.0, "--hidden-weight"),
    unlabeled: Path | None = typer.Option(None, "--unlabeled", help="A text file of sentences (one per line) to "
                                                                    "distil on instead of the labelled train split."),
    epochs: int = typer.Option(3, "--epochs"),
    lr: float = typer.Option(3e-3, "--lr"),
    batch_size: int = typer.Option(64, "--batch-size"),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run in OUT (from its last epoch "
                                                        "checkpoint). Without it, an OUT that holds a run is refused."),
    runtime: str = typer.Option("torch", "--runtime", help="Runtime teacher and student are timed on."),
    threads: int | None = typer.Option(None, "--threads"),
    no_memory: bool = typer.Option(False, "--no-memory", help="Skip the child-process peak-memory measurement."),
) -> None:
    """Distil a teacher into a smaller student; shows teacher vs student measured the same way."""
    from sizewise.compress.distill import Distill
    from sizewise.train import TrainConfig

    config = Distill(student=student, temperature=temperature, alpha=alpha, hidden_loss=hidden_loss,
                     hidden_weight=hidden_weight, unlabeled=str(unlabeled) if unlabeled else None)
    train = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    refuse_earlier_run(out, resume)
    loaded, dataset = load_inputs(teacher, data)
    result = run_plan(loaded, one_step("distill", config, train), dataset, out, kind="distill",
                      measure=measure_config(runtime, threads, no_memory=no_memory),
                      title="teacher → student (measured the same way)")
    verdict, before, after = result.verdict, result.before, result.after
    share = after.params.total / max(1, before.params.total)
    if verdict.metric and verdict.baseline:
        console.print(f"the student keeps {verdict.value / verdict.baseline:.2%} of the teacher's {verdict.metric} "
                      f"with {share:.1%} of its parameters", highlight=False)
    else:
        console.print(f"the student has {share:.1%} of the teacher's parameters", highlight=False)
    console.print(f"run directory: {out} (card.json: the run record; `sizewise report {out}` renders it)",
                  soft_wrap=True)
