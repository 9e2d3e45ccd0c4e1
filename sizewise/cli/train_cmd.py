"""``sizewise train MODEL --data D --out DIR``: how users (and our benchmarks) make baselines."""

from __future__ import annotations

from pathlib import Path

import typer

from sizewise.cli.common import console, err_console, handles_errors


@handles_errors
def train(
    model: str = typer.Argument(..., help="Model reference, usually zoo:NAME."),
    data: str = typer.Option(..., "--data", help="Training data: digits, an MNIST .npz, a CIFAR-10 folder."),
    out: Path = typer.Option(..., "--out", help="Run directory: model/, card.json, checkpoint.pt."),
    epochs: int = typer.Option(10, "--epochs"),
    lr: float = typer.Option(3e-3, "--lr", help="Peak learning rate."),
    batch_size: int = typer.Option(64, "--batch-size"),
    optimizer: str = typer.Option("adamw", "--optimizer", help="adamw or sgd (momentum 0.9, Nesterov)."),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine, step (x0.1 at 50% and 75%) or constant."),
    weight_decay: float = typer.Option(1e-4, "--weight-decay"),
    patience: int | None = typer.Option(None, "--patience", help="Early stopping after N epochs without "
                                                                 "validation improvement."),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint.pt."),
    arch: str | None = typer.Option(None, "--arch", help="Architecture for a weights-only file."),
) -> None:
    """Train a model; every epoch is checkpointed so a killed run resumes with --resume."""
    import sizewise
    from sizewise.core.serialize import write_json_atomic
    from sizewise.report.card_view import print_card

    config = sizewise.TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer,
                                  schedule=schedule, weight_decay=weight_decay, patience=patience, seed=seed)
    loaded = sizewise.load(model, arch=arch)
    dataset = sizewise.load_dataset(data)

    def report(s) -> None:
        val = f" · val {s.val_accuracy:.2%}" if s.val_accuracy is not None else ""
        train_acc = f" · train {s.train_accuracy:.2%}" if s.train_accuracy is not None else ""
        err_console.print(f"  epoch {s.epoch:>3}: loss {s.train_loss:.4f}{train_acc}{val} · "
                          f"{s.seconds:.1f} s", highlight=False)

    result = sizewise.train(loaded, dataset, config, out=out, resume=resume, on_epoch=report, progress=True)
    if result.resumed_from_epoch:
        console.print(f"resumed after epoch {result.resumed_from_epoch}")
    sizewise.save_model(loaded, out / "model")
    with err_console.status("measuring the trained model") as status:
        card = sizewise.measure(sizewise.load(str(out)), dataset=dataset, progress=status.update)
    write_json_atomic(out / "card.json", {"card": card.to_dict(), "training": result, "config": config})
    print_card(card, console, title=f"{model} trained for {len(result.epochs)} epochs")
    console.print(f"run directory: {out} (use it as MODEL in the next command)")
