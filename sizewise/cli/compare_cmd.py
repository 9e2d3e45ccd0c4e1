"""``sizewise compare A B``."""

from __future__ import annotations

from pathlib import Path

import typer

from sizewise.cli.common import console, err_console, handles_errors


@handles_errors
def compare(
    model_a: str = typer.Argument(..., help="Model A, the baseline (any model reference: zoo:NAME, run dir, "
                                            "FILE.onnx, HF dir, package.module:factory)."),
    model_b: str = typer.Argument(..., help="Model B, the one that should be faster."),
    runtime_a: str = typer.Option("torch", "--runtime-a", help="Runtime of A: torch, onnxruntime, or llamacpp (causal LMs: decode steps are timed)."),
    runtime_b: str = typer.Option("torch", "--runtime-b", help="Runtime of B: torch, onnxruntime, or llamacpp."),
    batch_size: int = typer.Option(1, "--batch-size", help="Batch size of the inputs (the same tensors for both)."),
    seq_len: int | None = typer.Option(None, "--seq-len", help="Tokens per example for text models (default 128)."),
    threads: int | None = typer.Option(None, "--threads", help="Intra-op threads for both (default: torch's setting)."),
    seconds: float = typer.Option(10.0, "--seconds", help="Time spent in the timed rounds."),
    order: str = typer.Option("abba", "--order", help="abba (A B, B A, A B, ...) or random (a seeded shuffle per "
                                                      "round, no call repeated across rounds: with two models, "
                                                      "A B A B ...)."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the comparison as JSON here."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Let a model run Python code it names "
                                           "(a Hugging Face directory's auto_map, a factory named in a run "
                                           "directory): only for models you trust."),
) -> None:
    """Is B faster than A? Both timed call by call in alternation; the speed-up with its 95% interval."""
    from sizewise.measure.compare import CompareConfig
    from sizewise.measure.compare import compare as run_compare
    from sizewise.models.loader import load
    from sizewise.report.compare_view import comparison_table

    config = CompareConfig(batch_size=batch_size, seq_len=seq_len, threads=threads, runtime_a=runtime_a,
                           runtime_b=runtime_b, seconds=seconds, order=order)
    with err_console.status("loading models") as status:
        a, b = (load(m, trust_remote_code=trust_remote_code) for m in (model_a, model_b))
        status.update(f"timing A and B interleaved for {seconds:g} s")
        result = run_compare(a, b, config)
    console.print(comparison_table(result))
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if json_path:
        result.to_json(json_path)
        console.print(f"comparison written to {json_path}")
