"""``sizewise factorize MODEL --data D --out DIR (--rank R | --energy E | --target-params F)``."""

from __future__ import annotations

from pathlib import Path

import typer

from sizewise.cli.common import console, handles_errors, run_compression


def _rank_table(details: dict):
    from rich.table import Table

    t = Table(title="low-rank layers (params include the bias)", title_justify="left")
    for column in ("layer", "weight shape", "rank / full", "energy kept", "params before → after"):
        t.add_column(column, justify="left" if column in ("layer", "weight shape") else "right")
    for name, row in details["layers"].items():
        rank = (f"{row['rank']} / {row['full_rank']}" if row["factorized"]
                else f"dense (rank {row['chosen_rank']} saves nothing)")
        t.add_row(name, "×".join(str(d) for d in row["shape"]), rank, f"{row['energy_kept']:.1%}",
                  f"{row['params_before']:,} → {row['params_after']:,}")
    return t


@handles_errors
def factorize(
    model: str = typer.Argument(..., help="Model reference (a run directory, minilm, zoo:NAME, HF dir, ...)."),
    data: str = typer.Option(..., "--data", help="Data for fine-tuning and held-out accuracy."),
    out: Path = typer.Option(..., "--out", help="Run directory to write (model/ and card.json)."),
    rank: int | None = typer.Option(None, "--rank", help="The same rank for every layer (capped at its full rank)."),
    energy: float | None = typer.Option(None, "--energy", help="Fraction of each layer's singular-value energy "
                                                               "(sum of S²) to keep, in (0, 1]."),
    target_params: float | None = typer.Option(None, "--target-params", help="Fraction of the factorized layers' "
                                                                             "parameters to keep overall, in (0, 1)."),
    layers: str | None = typer.Option(None, "--layers", help="Only layers whose name matches this pattern, e.g. "
                                                             "'*intermediate.dense' (default: every Linear/Conv2d)."),
    no_conv: bool = typer.Option(False, "--no-conv", help="Leave Conv2d layers dense."),
    finetune_epochs: int = typer.Option(1, "--finetune-epochs", help="Recovery fine-tuning epochs after "
                                                                      "factorizing (0 skips it)."),
    lr: float = typer.Option(1e-3, "--lr", help="Fine-tuning learning rate (below training's 3e-3: the factors start "
                                                "from the trained weights; not tuned by a benchmark)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Fine-tuning batch size."),
    runtime: str = typer.Option("torch", "--runtime", help="Runtime the before/after latency is measured on."),
    threads: int | None = typer.Option(None, "--threads"),
    arch: str | None = typer.Option(None, "--arch", help="Architecture for a weights-only file."),
) -> None:
    """Replace weight matrices by low-rank (truncated SVD) factors and show, measured, what it saved."""
    import sizewise
    from sizewise.compress.factorize import Factorize

    config = Factorize(rank=rank, energy=energy, target_params=target_params, layers=layers, include_conv=not no_conv)
    finetune = sizewise.TrainConfig(epochs=finetune_epochs, lr=lr, batch_size=batch_size) if finetune_epochs else None
    result = run_compression(model, arch, data, config, finetune, out, runtime, threads, "factorizing")
    console.print(_rank_table(result.details))
    d = result.details
    console.print(f"  factorized {d['factorized']} of {len(d['layers'])} layer(s): {d['params_before']:,} → "
                  f"{d['params_after']:,} parameters ({d['params_kept']:.1%} kept)", highlight=False)
    for name, why in d["skipped"].items():
        console.print(f"  skipped {name}: {why}", highlight=False)
    console.print(f"run directory: {out} (card.json has both cards)")
