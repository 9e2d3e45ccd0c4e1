"""``sizewise demo``: the main job on an embedded default, with no data download.

Until the shrink search lands, the demo trains the built-in digits CNN on scikit-learn's bundled digits for a few
seconds, saves it as a run directory, and prints its measured card.
"""

from __future__ import annotations

from pathlib import Path

import typer

from sizewise.cli.common import console, err_console, handles_errors


@handles_errors
def demo(
    out: Path = typer.Option(Path("sizewise-demo"), "--out", help="Run directory to write (model/ and card.json)."),
    epochs: int = typer.Option(15, "--epochs", help="Training epochs (about half a second each on 2 cores)."),
) -> None:
    """Train zoo:digits-cnn on scikit-learn's digits, then measure it: no data download needed."""
    import sizewise
    from sizewise.core.serialize import write_json_atomic
    from sizewise.measure import MeasureConfig
    from sizewise.report.card_view import print_card

    dataset = sizewise.load_dataset("digits")
    loaded = sizewise.load("zoo:digits-cnn")
    console.print(f"[bold]sizewise demo[/] · training zoo:digits-cnn on {len(dataset.split('train')):,} digits "
                  f"for {epochs} epochs")
    result = sizewise.train(loaded, dataset, sizewise.TrainConfig(epochs=epochs),
                            on_epoch=lambda s: err_console.print(
                                f"  epoch {s.epoch:>2}: loss {s.train_loss:.3f} · train accuracy "
                                f"{s.train_accuracy:.1%} · {s.seconds:.2f} s", highlight=False))
    model_dir = sizewise.save_model(loaded, out / "model")
    with err_console.status("measuring") as status:
        card = sizewise.measure(sizewise.load(str(out)), MeasureConfig(), dataset=dataset, progress=status.update)
    write_json_atomic(out / "card.json", {"card": card.to_dict(), "training": result})
    print_card(card, console, title=f"zoo:digits-cnn after {epochs} epochs ({result.seconds:.1f} s of training)")
    console.print(f"model saved to {model_dir}; card written to {out / 'card.json'}")
    console.print(f"next: sizewise measure {out} --data digits --runtime onnxruntime")
