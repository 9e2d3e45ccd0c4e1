"""``sizewise factorize MODEL --data D --out DIR (--rank R | --energy E | --target-params F)``: a one-step plan
(recovery fine-tuning is the step's training), run by the one executor."""

from __future__ import annotations

from pathlib import Path

import typer

from sizewise.cli.common import (
    console,
    handles_errors,
    load_inputs,
    measure_config,
    one_step,
    run_plan,
    with_data_options,
)


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
@with_data_options
def factorize(
    model: str = typer.Argument(..., help="Model reference (a run directory, minilm, zoo:NAME, HF dir, ...)."),
    data: str = typer.Option(..., "--data", help="Data for fine-tuning and held-out accuracy."),
    out: Path = typer.Option(..., "--out", help="Run directory to write (model/, card.json, steps/)."),
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
    no_memory: bool = typer.Option(False, "--no-memory", help="Skip the child-process peak-memory measurement."),
    arch: str | None = typer.Option(None, "--arch", help="Architecture for a weights-only file."),
) -> None:
    """Replace weight matrices by low-rank (truncated SVD) factors and show, measured, what it saved."""
    from sizewise.compress.registry import get_method
    from sizewise.train import TrainConfig

    given = {"rank": rank, "energy": energy, "target_params": target_params, "layers": layers,
             "include_conv": False if no_conv else None}
    config = get_method("factorize").make(**{k: v for k, v in given.items() if v is not None})
    train = TrainConfig(epochs=finetune_epochs, lr=lr, batch_size=batch_size) if finetune_epochs else None
    loaded, dataset = load_inputs(model, data, arch)
    result = run_plan(loaded, one_step("factorize", config, train), dataset, out, kind="factorize",
                      measure=measure_config(runtime, threads, no_memory=no_memory))
    console.print(_rank_table(result.details))
    d = result.details
    console.print(f"  factorized {d['factorized']} of {len(d['layers'])} layer(s): {d['params_before']:,} → "
                  f"{d['params_after']:,} parameters ({d['params_kept']:.1%} kept)", highlight=False)
    for name, why in d["skipped"].items():
        console.print(f"  skipped {name}: {why}", highlight=False)
    console.print(f"run directory: {out} (card.json: the run record; `sizewise report {out}` renders it)",
                  soft_wrap=True)
