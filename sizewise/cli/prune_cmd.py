"""``sizewise prune MODEL --data D --method M --sparsity S --out DIR``."""

from __future__ import annotations

from pathlib import Path

import typer

from sizewise.cli.common import console, handles_errors, run_compression

METHOD_HELP = "magnitude | gradual | lottery | channel | head | nm"


def _config(method: str, sparsity: float | None, scope: str | None, importance: str, rounds: int, pattern: str,
            skip_unprunable: bool):
    from sizewise.compress import prune
    from sizewise.core.errors import ConfigError

    def need_sparsity() -> float:
        if sparsity is None:
            raise ConfigError(f"--method {method} needs --sparsity S (the fraction to remove, in [0, 1))")
        return sparsity

    if method == "magnitude":
        return prune.MagnitudePrune(need_sparsity(), scope or "global")
    if method == "gradual":
        return prune.GradualPrune(need_sparsity(), scope or "global")
    if method == "lottery":
        return prune.LotteryPrune(need_sparsity(), scope or "global", rounds=rounds)
    if method == "channel":
        return prune.ChannelPrune(need_sparsity(), importance, scope or "layer", skip_unprunable)
    if method == "head":
        return prune.HeadPrune(need_sparsity(), importance)
    if method == "nm":
        try:
            n, m = (int(v) for v in pattern.split(":"))
        except ValueError:
            raise ConfigError(f"--pattern must look like 2:4, got '{pattern}'") from None
        return prune.NMPrune(n, m)
    raise ConfigError(f"unknown pruning method '{method}'", hint=f"choose one of: {METHOD_HELP}")


@handles_errors
def prune(
    model: str = typer.Argument(..., help="Model reference (a run directory from sizewise train, zoo:NAME, ...)."),
    data: str = typer.Option(..., "--data", help="Data for fine-tuning and held-out accuracy."),
    out: Path = typer.Option(..., "--out", help="Run directory to write (model/ and card.json)."),
    method: str = typer.Option("magnitude", "--method", help=METHOD_HELP),
    sparsity: float | None = typer.Option(None, "--sparsity", help="Fraction removed: weights (unstructured) or "
                                                                   "channels/heads per layer (structured)."),
    scope: str | None = typer.Option(None, "--scope", help="global or layer (default: global for unstructured, "
                                                           "layer for channel)."),
    importance: str = typer.Option("l1", "--importance", help="Structured: l1, l2, bn (BN scale) or taylor."),
    pattern: str = typer.Option("2:4", "--pattern", help="N:M pattern for --method nm."),
    rounds: int = typer.Option(3, "--rounds", help="Lottery: prune-rewind-retrain rounds."),
    finetune_epochs: int = typer.Option(1, "--finetune-epochs", help="Recovery fine-tuning epochs after pruning "
                                                                      "(0 skips it; gradual and lottery need >= 1)."),
    lr: float = typer.Option(3e-3, "--lr", help="Fine-tuning learning rate (default: the training default; after "
                                                "removing most weights the network must relearn, not be nudged: see "
                                                "benchmarks/results/prune_acceptance.txt)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Fine-tuning batch size."),
    skip_unprunable: bool = typer.Option(False, "--skip-unprunable", help="Leave layers the dependency graph "
                                                                           "cannot handle unpruned."),
    runtime: str = typer.Option("torch", "--runtime", help="Runtime the before/after latency is measured on."),
    threads: int | None = typer.Option(None, "--threads"),
    arch: str | None = typer.Option(None, "--arch", help="Architecture for a weights-only file."),
) -> None:
    """Prune a model and show, measured, whether it became smaller and faster."""
    import sizewise

    config = _config(method, sparsity, scope, importance, rounds, pattern, skip_unprunable)
    finetune = sizewise.TrainConfig(epochs=finetune_epochs, lr=lr, batch_size=batch_size) if finetune_epochs else None
    result = run_compression(model, arch, data, config, finetune, out, runtime, threads, "pruning")
    for key, value in result.details.items():
        if key not in ("schedule",):
            console.print(f"  {key}: {value}", highlight=False)
    console.print(f"run directory: {out} (card.json has both cards)")
