"""``sizewise cluster MODEL --data D --bits B --out DIR``: weight sharing (centroid fine-tuning is the step's
training), a one-step plan run by the one executor; the artifact is a Huffman-coded ``model.swz``."""

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
    print_compressed_file,
    run_plan,
)


@handles_errors
@with_data_options
def cluster(
    model: str = typer.Argument(..., help="Model reference (a run directory from sizewise train/prune, zoo:NAME, "
                                          "...)."),
    data: str = typer.Option(..., "--data", help="Data for centroid fine-tuning and held-out accuracy."),
    out: Path = typer.Option(..., "--out", help="Run directory to write (model/model.swz, card.json, steps/)."),
    bits: int | None = typer.Option(None, "--bits", help="Bits per weight index for every layer (2**bits shared "
                                                         "values); default: --conv-bits / --linear-bits."),
    conv_bits: int | None = typer.Option(None, "--conv-bits", help="Bits for convolution layers (default 8, the "
                                                                   "paper's)."),
    linear_bits: int | None = typer.Option(None, "--linear-bits", help="Bits for fully connected layers (default 5, "
                                                                       "the paper's)."),
    init: str | None = typer.Option(None, "--init", help="Centroid initialisation: linear (default) | density | "
                                                         "random."),
    finetune_epochs: int = typer.Option(1, "--finetune-epochs", help="Epochs of centroid fine-tuning (0 skips it)."),
    lr: float = typer.Option(1e-4, "--lr", help="Centroid fine-tuning learning rate."),
    batch_size: int = typer.Option(64, "--batch-size"),
    runtime: str = typer.Option("torch", "--runtime", help="Runtime the before/after latency is measured on."),
    threads: int | None = typer.Option(None, "--threads"),
    no_memory: bool = typer.Option(False, "--no-memory", help="Skip the child-process peak-memory measurement."),
    arch: str | None = typer.Option(None, "--arch", help="Architecture for a weights-only file."),
) -> None:
    """Share weights (per-layer k-means codebooks), fine-tune the centroids, and write a Huffman-coded artifact."""
    from sizewise.compress.registry import get_method
    from sizewise.models.compressed_format import WEIGHTS
    from sizewise.train import TrainConfig

    given = {"bits": bits, "conv_bits": conv_bits, "linear_bits": linear_bits, "init": init}
    config = get_method("cluster").make(**{k: v for k, v in given.items() if v is not None})
    train = TrainConfig(epochs=finetune_epochs, lr=lr, batch_size=batch_size, weight_decay=0.0) \
        if finetune_epochs else None
    loaded, dataset = load_inputs(model, data, arch)
    result = run_plan(loaded, one_step("cluster", config, train), dataset, out, kind="cluster",
                      measure=measure_config(runtime, threads, no_memory=no_memory))
    print_compressed_file(result.model_dir)
    console.print(f"run directory: {out} (card.json: the run record; `sizewise inspect {result.model_dir / WEIGHTS}` "
                  f"shows the table again)", soft_wrap=True)
