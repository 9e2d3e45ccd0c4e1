"""``sizewise cluster MODEL --data D --bits B --out DIR``: weight sharing, written as a Huffman-coded ``model.swz``."""

from __future__ import annotations

from pathlib import Path

import typer

from sizewise.cli.common import console, handles_errors, print_compressed_file, run_compression


@handles_errors
def cluster(
    model: str = typer.Argument(..., help="Model reference (a run directory from sizewise train/prune, zoo:NAME, ...)."),
    data: str = typer.Option(..., "--data", help="Data for centroid fine-tuning and held-out accuracy."),
    out: Path = typer.Option(..., "--out", help="Run directory to write (model/model.swz and card.json)."),
    bits: int | None = typer.Option(None, "--bits", help="Bits per weight index for every layer (2**bits shared "
                                                         "values); default: --conv-bits / --linear-bits."),
    conv_bits: int = typer.Option(8, "--conv-bits", help="Bits for convolution layers (the paper used 8)."),
    linear_bits: int = typer.Option(5, "--linear-bits", help="Bits for fully connected layers (the paper used 5)."),
    init: str = typer.Option("linear", "--init", help="Centroid initialisation: linear | density | random."),
    finetune_epochs: int = typer.Option(1, "--finetune-epochs", help="Epochs of centroid fine-tuning (0 skips it)."),
    lr: float = typer.Option(1e-4, "--lr", help="Centroid fine-tuning learning rate."),
    batch_size: int = typer.Option(64, "--batch-size"),
    runtime: str = typer.Option("torch", "--runtime", help="Runtime the before/after latency is measured on."),
    threads: int | None = typer.Option(None, "--threads"),
    arch: str | None = typer.Option(None, "--arch", help="Architecture for a weights-only file."),
) -> None:
    """Share weights (per-layer k-means codebooks), fine-tune the centroids, and write a Huffman-coded artifact."""
    import sizewise
    from sizewise.compress.cluster import ClusterWeights
    from sizewise.models.compressed_format import WEIGHTS

    config = ClusterWeights(bits, conv_bits, linear_bits, init)
    finetune = sizewise.TrainConfig(epochs=finetune_epochs, lr=lr, batch_size=batch_size, weight_decay=0.0) \
        if finetune_epochs else None
    result = run_compression(model, arch, data, config, finetune, out, runtime, threads, "sharing weights")
    print_compressed_file(result.model_dir)
    swz = result.model_dir / WEIGHTS
    console.print(f"run directory: {out} (card.json has both cards; `sizewise inspect {swz}` shows the table again)")
