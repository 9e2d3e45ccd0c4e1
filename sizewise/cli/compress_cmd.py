"""``sizewise compress MODEL --recipe NAME|FILE.yaml --data D --out DIR``: a chain of compression steps."""

from __future__ import annotations

from pathlib import Path

import typer

from sizewise.cli.common import console, err_console, handles_errors, print_comparison, print_compressed_file

# the one example recipe; kept here, not in sizewise.pipeline, so the CLI starts without importing torch
EXAMPLE = "recipe file example:\n\n" + """name: my-recipe
steps:
  - prune: {method: gradual, sparsity: 0.9, epochs: 3, lr: 0.001}
  - finetune: {epochs: 1, lr: 0.0003}
  - cluster: {linear_bits: 5, conv_bits: 8}
  - finetune: {epochs: 1, lr: 0.0001}
  - encode: {format: deep-compression}
"""


@handles_errors
def compress(
    model: str = typer.Argument(..., help="Model reference (a run directory from sizewise train, zoo:NAME, ...)."),
    recipe: str = typer.Option(..., "--recipe", help="A built-in recipe (deep-compression) or a YAML file."),
    data: str = typer.Option(..., "--data", help="Data for fine-tuning and held-out accuracy."),
    out: Path = typer.Option(..., "--out", help="Run directory (re-run with the same --out to resume)."),
    runtime: str = typer.Option("torch", "--runtime", help="Runtime the before/after latency is measured on."),
    threads: int | None = typer.Option(None, "--threads"),
    arch: str | None = typer.Option(None, "--arch", help="Architecture for a weights-only file."),
) -> None:
    """Run a compression recipe (e.g. Deep Compression: prune, share weights, Huffman-code) with evidence."""
    from rich.table import Table

    import sizewise
    from sizewise.measure import MeasureConfig
    from sizewise.pipeline.recipes import load_recipe, run_recipe

    plan = load_recipe(recipe)  # validated before any model is loaded
    loaded = sizewise.load(model, arch=arch)
    dataset = sizewise.load_dataset(data)
    with err_console.status(f"recipe {plan.name}") as status:
        result = run_recipe(loaded, plan, dataset, out, MeasureConfig(runtime=runtime, threads=threads),
                            progress=status.update)
    steps = Table(title=f"recipe {plan.name} ({plan.source})", title_justify="left")
    for header in ("#", "step", result.metric, "seconds"):
        steps.add_column(header, justify="left" if header == "step" else "right")
    for record in result.steps:
        steps.add_row(str(record.index + 1), record.description, f"{record.metric:.4f}", f"{record.seconds:.0f}")
    console.print(steps)
    if result.resumed_from:
        console.print(f"resumed: steps 1-{result.resumed_from} were read from {out}/steps.json")
    print_comparison(result.before, result.after)
    print_compressed_file(result.model_dir)
    console.print(f"run directory: {out} (card.json: both cards and every step)")

