"""``sizewise compress MODEL --recipe NAME|FILE.yaml --data D --out DIR``: a plan read from a recipe, run by the one
executor (re-running with the same --out continues after the last finished step)."""

from __future__ import annotations

from pathlib import Path

import typer

from sizewise.cli.common import (
    with_data_options,
    console,
    handles_errors,
    load_inputs,
    measure_config,
    model_options,
    print_compressed_file,
    print_result,
    run_plan,
)

# the one example recipe; kept here, not in sizewise.pipeline, so the CLI starts without importing torch
EXAMPLE_RECIPE = """name: my-recipe
steps:
  - prune: {method: gradual, sparsity: 0.9, epochs: 3, lr: 0.001}
  - finetune: {epochs: 1, lr: 0.0003}
  - quantize: {method: int8-dynamic}
"""
EXAMPLE = f"""recipe file example:

{EXAMPLE_RECIPE}
A step is a registered method (- gradual: {{...}}) or a family with its
method (- prune: {{method: gradual}}); training fields (epochs, lr,
batch_size, ...) sit beside the method's own. A step that makes an ONNX
graph (quantization on onnxruntime) comes last. For Deep Compression end
with cluster, finetune and encode steps instead of quantizing (the
built-in recipe deep-compression).
"""


@handles_errors
@with_data_options
def compress(
    model: str = typer.Argument(..., help="Model reference (a run directory from sizewise train, zoo:NAME, ...)."),
    recipe: str = typer.Option(..., "--recipe", help="A built-in recipe (deep-compression) or a YAML file."),
    data: str = typer.Option(..., "--data", help="Data for fine-tuning and held-out accuracy."),
    out: Path = typer.Option(..., "--out", help="Run directory (re-run with the same --out to resume)."),
    runtime: str | None = typer.Option(None, "--runtime", help="Runtime the before/after latency is measured on "
                                                               "(default: onnxruntime when a step makes an ONNX "
                                                               "graph, else torch)."),
    threads: int | None = typer.Option(None, "--threads"),
    no_memory: bool = typer.Option(False, "--no-memory", help="Skip the child-process peak-memory measurement."),
    arch: str | None = typer.Option(None, "--arch", help="Architecture for a weights-only file."),
) -> None:
    """Run a compression recipe (e.g. Deep Compression: prune, share weights, Huffman-code) with evidence."""
    from rich.table import Table

    from sizewise.compress.registry import get_method
    from sizewise.pipeline.plan import load_plan
    from sizewise.report.run_report import step_rows

    plan = load_plan(recipe, trust_remote_code=model_options()["trust_remote_code"])  # before any model is loaded
    makes_onnx = any(get_method(s.method).makes_onnx(s.config) for s in plan.steps)
    runtime = runtime or ("onnxruntime" if makes_onnx else "torch")
    loaded, dataset = load_inputs(model, data, arch)
    result = run_plan(loaded, plan, dataset, out, kind="compress",
                      measure=measure_config(runtime, threads, no_memory=no_memory),
                      references=("torch",) if runtime != "torch" else (), show=False)
    named = f"recipe {plan.name}" + (f" ({plan.source})" if plan.source != plan.name else "")
    steps = Table(title=named, title_justify="left")
    for header in ("#", "method", "step", "validation", "seconds"):
        steps.add_column(header, justify="right" if header in ("#", "seconds") else "left")
    for row in step_rows(result.record):
        steps.add_row(*row)
    console.print(steps)
    print_result(result)
    print_compressed_file(result.model_dir)
    console.print(f"run directory: {out} (card.json: the run record with both cards and every step; "
                  f"`sizewise report {out}` renders it)", soft_wrap=True)
