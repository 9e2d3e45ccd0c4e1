"""``sizewise demo``: the main job on an embedded default, with no data download.

Trains ``zoo:digits-cnn`` on scikit-learn's bundled digits for a few seconds, then shrinks it within a 1% accuracy
budget for latency on onnxruntime, and prints the before/after and where the report is.
"""

from __future__ import annotations

from pathlib import Path

import typer

from sizewise.cli.common import console, err_console, handles_errors


@handles_errors
def demo(
    out: Path = typer.Option(Path("sizewise-demo"), "--out", help="Directory for the trained model and the search."),
    epochs: int = typer.Option(15, "--epochs", help="Training epochs (a fraction of a second each on 2 cores)."),
    trials: int = typer.Option(10, "--trials", help="Search trials."),
) -> None:
    """Train zoo:digits-cnn on bundled digits, then shrink it (max drop 1%, objective latency): no download."""
    from sizewise.cli.shrink_cmd import print_outcome, run_shrink
    from sizewise.core.budget import Budget
    from sizewise.data import load_dataset
    from sizewise.models.artifact import save_model
    from sizewise.models.loader import load
    from sizewise.pipeline import ShrinkConfig
    from sizewise.train import TrainConfig, train

    dataset = load_dataset("digits")
    base = out / "trained"
    if not (base / "model").exists():
        loaded = load("zoo:digits-cnn")
        console.print(f"[bold]sizewise demo[/] · training zoo:digits-cnn on {len(dataset.split('train')):,} digits "
                      f"for {epochs} epochs")
        result = train(loaded, dataset, TrainConfig(epochs=epochs), bar=True)
        err_console.print(f"  trained in {result.seconds:.1f} s · validation accuracy "
                          f"{result.epochs[-1].val_accuracy:.1%}", highlight=False)
        save_model(loaded, base / "model")
    console.print("[bold]shrinking[/] within 1% of the accuracy, for latency on onnxruntime")
    config = ShrinkConfig(max_drop=Budget.parse("0.01"), objective="latency", runtime="onnxruntime", trials=trials,
                          finetune_epochs=2, latency_seconds=0.3)
    results = run_shrink(str(base), "digits", out / "shrink", config,
                         command=f"sizewise demo --out {out} --epochs {epochs} --trials {trials}")
    print_outcome(results, out / "shrink")
