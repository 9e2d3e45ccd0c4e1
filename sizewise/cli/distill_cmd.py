"""``sizewise distill TEACHER --student SPEC --data D --out DIR``: knowledge distillation into a smaller student."""

from __future__ import annotations

from pathlib import Path

import typer

from sizewise.cli.common import console, err_console, handles_errors, print_comparison

STUDENT_HELP = ("layers:K (keep K evenly spaced transformer layers, from the teacher's), width:F (a copy with F of "
                "the hidden width), or any model reference")


@handles_errors
def distill(
    teacher: str = typer.Argument(..., help="The teacher: a run directory from sizewise train, minilm, ..."),
    student: str = typer.Option(..., "--student", help=STUDENT_HELP),
    data: str = typer.Option(..., "--data", help="Training data (and held-out data for the metric)."),
    out: Path = typer.Option(..., "--out", help="Run directory: model/, card.json, checkpoint.pt."),
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
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint.pt."),
    runtime: str = typer.Option("torch", "--runtime", help="Runtime teacher and student are timed on."),
    threads: int | None = typer.Option(None, "--threads"),
) -> None:
    """Distil a teacher into a smaller student; shows teacher vs student measured the same way."""
    import sizewise
    from sizewise.compress.distill import DistillConfig, build_student, params, read_unlabeled
    from sizewise.compress.distill import distill as run_distill
    from sizewise.core.serialize import write_json_atomic
    from sizewise.measure import MeasureConfig

    config = DistillConfig(temperature, alpha, hidden_loss, hidden_weight)
    train_config = sizewise.TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    dataset = sizewise.load_dataset(data)
    teacher_model = sizewise.load(teacher)
    sentences = read_unlabeled(unlabeled) if unlabeled else None
    student_model, info = build_student(teacher_model, student, seed=seed)
    err_console.print(f"teacher {params(teacher_model.module):,} parameters → student {student} "
                      f"{params(student_model.module):,}", highlight=False)

    def report(s) -> None:
        val = f" · val {s.val_accuracy:.4f}" if s.val_accuracy is not None else ""
        err_console.print(f"  epoch {s.epoch:>3}: loss {s.train_loss:.4f}{val} · {s.seconds:.1f} s", highlight=False)

    result = run_distill(teacher_model, student_model, dataset, config, train_config, out=out, resume=resume,
                         unlabeled=sentences)
    for stats in result.epochs[result.resumed_from_epoch:]:
        report(stats)
    if result.resumed_from_epoch:
        console.print(f"resumed after epoch {result.resumed_from_epoch}")
    sizewise.save_model(student_model, out / "model")
    mc = MeasureConfig(runtime=runtime, threads=threads)
    with err_console.status("measuring teacher and student") as status:
        teacher_card = sizewise.measure(teacher_model, mc, dataset=dataset, progress=status.update)
        student_card = sizewise.measure(sizewise.load(str(out)), mc, dataset=dataset, progress=status.update)
    metric = next(k for k in teacher_card.metrics if k != "examples")
    kept = student_card.metrics[metric] / teacher_card.metrics[metric]
    write_json_atomic(out / "card.json", {
        "schema": "sizewise.distill/1", "teacher": teacher_card.to_dict(), "student": student_card.to_dict(),
        "student_spec": info, "config": config, "training": result,
        "retention": kept, "params_ratio": student_card.params.total / teacher_card.params.total})
    print_comparison(teacher_card, student_card, title="teacher → student (measured the same way)",
                     before_name="teacher", after_name="student")
    console.print(f"the student keeps {kept:.2%} of the teacher's {metric} with "
                  f"{student_card.params.total / teacher_card.params.total:.1%} of its parameters", highlight=False)
    console.print(f"run directory: {out} (card.json has both cards)")
