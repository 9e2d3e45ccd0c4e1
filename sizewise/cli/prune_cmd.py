"""``sizewise prune MODEL --data D --method M --sparsity S --out DIR``: a one-step plan of a registered pruning
method (recovery fine-tuning is the step's training), run by the one executor."""

from __future__ import annotations

from pathlib import Path

import typer

from sizewise.cli.common import (
    console,
    handles_errors,
    load_inputs,
    measure_config,
    method_config,
    one_step,
    run_plan,
    with_data_options,
)

HIDDEN_DETAILS = ("schedule", "training", "conv_widths")  # long lists; the record keeps them


def _pattern(text: str | None) -> dict[str, int | None]:
    from sizewise.core.errors import ConfigError

    if text is None:
        return {"n": None, "m": None}
    try:
        n, m = (int(v) for v in text.split(":"))
    except ValueError:
        raise ConfigError(f"--pattern must look like 2:4, got '{text}'") from None
    return {"n": n, "m": m}


@handles_errors
@with_data_options
def prune(
    model: str = typer.Argument(..., help="Model reference (a run directory from sizewise train, zoo:NAME, ...)."),
    data: str = typer.Option(..., "--data", help="Data for fine-tuning and held-out accuracy."),
    out: Path = typer.Option(..., "--out", help="Run directory to write (model/, card.json, steps/); re-running "
                                                "the same command with it resumes."),
    method: str = typer.Option("magnitude", "--method", help="A registered pruning method (an unknown name "
                                                             "lists them all)."),
    sparsity: float | None = typer.Option(None, "--sparsity", help="Fraction removed: weights (unstructured) or "
                                                                   "channels/heads per layer (structured)."),
    scope: str | None = typer.Option(None, "--scope", help="global or layer (default: global for unstructured, "
                                                           "layer for channel)."),
    importance: str | None = typer.Option(None, "--importance", help="Structured: l1 (default), l2, bn (BN scale) "
                                                                     "or taylor."),
    pattern: str | None = typer.Option(None, "--pattern", help="N:M pattern for --method nm (default 2:4); "
                                                                "wanda: unstructured (default) or 2:4."),
    rounds: int | None = typer.Option(None, "--rounds", help="Lottery: prune-rewind-retrain rounds (default 3)."),
    blocks: int | None = typer.Option(None, "--blocks", help="Depth (decoder LLMs): how many blocks to remove."),
    finetune_epochs: int = typer.Option(1, "--finetune-epochs", help="Recovery fine-tuning epochs after pruning "
                                                                      "(0 skips it; gradual and lottery need >= 1)."),
    lr: float = typer.Option(3e-3, "--lr", help="Fine-tuning learning rate (default: the training default; after "
                                                "removing most weights the network must relearn, not be nudged: see "
                                                "benchmarks/results/prune_acceptance.txt)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Fine-tuning batch size."),
    skip_unprunable: bool = typer.Option(False, "--skip-unprunable", help="Leave layers the dependency graph "
                                                                           "cannot handle unpruned."),
    round_to: int | None = typer.Option(None, "--round-to", help="Channel pruning: keep a multiple of this many "
                                                                 "channels per layer (8 or 16: the channel blocks "
                                                                 "onnxruntime's CPU convolutions compute in)."),
    runtime: str = typer.Option("torch", "--runtime", help="Runtime the before/after latency is measured on."),
    threads: int | None = typer.Option(None, "--threads"),
    no_memory: bool = typer.Option(False, "--no-memory", help="Skip the child-process peak-memory measurement."),
    arch: str | None = typer.Option(None, "--arch", help="Architecture for a weights-only file."),
) -> None:
    """Prune a model and show, measured, whether it became smaller and faster."""
    from sizewise.compress.registry import get_method, list_methods
    from sizewise.core.errors import ConfigError
    from sizewise.train import TrainConfig

    # nm takes the pattern as N and M; wanda as its name ("unstructured" or "2:4")
    named_pattern = method in list_methods("prune") and "pattern" in get_method(method).options
    config = method_config("prune", method, {"sparsity": sparsity, "scope": scope, "importance": importance,
                                             "rounds": rounds, "blocks": blocks, "skip_unprunable": skip_unprunable or None,
                                             "round_to": round_to,
                                             **({"pattern": pattern} if named_pattern else _pattern(pattern))},
                           flags={"n": "--pattern", "m": "--pattern"})
    if get_method(method).trains and not finetune_epochs:
        raise ConfigError(f"{method} pruning trains while it prunes", hint="give it --finetune-epochs N (N >= 1)")
    train = TrainConfig(epochs=finetune_epochs, lr=lr, batch_size=batch_size) if finetune_epochs else None
    loaded, dataset = load_inputs(model, data, arch)
    result = run_plan(loaded, one_step(method, config, train), dataset, out, kind="prune",
                      measure=measure_config(runtime, threads, no_memory=no_memory))
    for key, value in result.details.items():
        if key not in HIDDEN_DETAILS:
            console.print(f"  {key}: {value}", highlight=False)
    console.print(f"run directory: {out} (card.json: the run record; `sizewise report {out}` renders it)",
                  soft_wrap=True)
