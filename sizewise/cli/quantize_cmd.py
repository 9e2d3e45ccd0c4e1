"""``sizewise quantize MODEL --method M [--runtime R] [--max-drop B] --out DIR``: a one-step plan of a registered
quantization method, run by the one executor; the accuracy budget makes the step keep sensitive layers in float."""

from __future__ import annotations

from pathlib import Path

import typer

from sizewise.cli.common import (
    with_data_options,
    console,
    handles_errors,
    load_inputs,
    measure_config,
    method_config,
    one_step,
    print_comparison,
    print_verdict,
    run_plan,
)


def sensitivity_table(rows: list[dict]):
    from rich.table import Table

    table = Table(title="per-layer sensitivity (each layer quantized alone), most sensitive first",
                  title_justify="left")
    for col in ("layer", "op", "output error", "metric drop (points)"):
        table.add_column(col, justify="left" if col in ("layer", "op") else "right")
    for row in rows[:12]:
        table.add_row(row["node"], row["op_type"], f"{row['output_error']:.3g}",
                      "" if row.get("metric_drop") is None else f"{row['metric_drop']:.2f}")
    return table


@handles_errors
@with_data_options
def quantize(
    model: str = typer.Argument(..., help="Model reference (run directory, minilm, zoo:NAME, HF dir, ...)."),
    out: Path = typer.Option(..., "--out", help="Run directory to write (model/, card.json, report.html)."),
    data: str | None = typer.Option(None, "--data", help="Held-out data for the accuracy check; its train split "
                                                         "calibrates int8-static."),
    method: str = typer.Option("int8-dynamic", "--method", help="A registered quantization method (an unknown name "
                                                                "lists them all)."),
    runtime: str | None = typer.Option(None, "--runtime", help="onnxruntime (default) or torch: where it will be "
                                                               "deployed (int4-rtn / int4-awq: llamacpp; "
                                                               "int4-ortgenai, int8-smoothquant: ortgenai)."),
    max_drop: str | None = typer.Option(None, "--max-drop", help="Accuracy budget: 0.01 = 1% of the baseline, "
                                                                 "0.5pp = half a point. Layers are kept in float "
                                                                 "until it holds."),
    calibration: str | None = typer.Option(None, "--calibration", help="Static and QAT observer: minmax (default), "
                                                                       "percentile, entropy."),
    calibration_samples: int | None = typer.Option(None, "--calibration-samples", help="Default 128."),
    group_size: int | None = typer.Option(None, "--group-size", help="Weight-only: weights per scale (default 32)."),
    symmetric: bool | None = typer.Option(None, "--symmetric/--asymmetric", help="int4-rtn / int4-awq: w = d(q-8) "
                                                                               "(GGUF Q4_0) or w = dq+m (Q4_1, "
                                                                               "default)."),
    max_size: str | None = typer.Option(None, "--max-size", help="int4-rtn / int4-awq: fill the GGUF file up to "
                                                                 "this size (100MB, 95.5MiB) with the Q5_0 / Q8_0 "
                                                                 "layers that help most."),
    alpha: float | None = typer.Option(None, "--alpha", help="int8-smoothquant: how much of the activations' range "
                                                             "moves into the weights, 0-1 (default: chosen on "
                                                             "validation from 0, 0.5, 0.8)."),
    per_channel: bool = typer.Option(False, "--per-channel", help="int8-dynamic: one scale per output channel."),
    qat_epochs: int | None = typer.Option(None, "--qat-epochs", help="qat: fine-tuning epochs with fake-quantized "
                                                                     "weights (default 2)."),
    eval_limit: int | None = typer.Option(None, "--eval-limit", help="Check accuracy on the first N examples."),
    batch_size: int = typer.Option(1, "--batch-size", help="Batch size for latency."),
    seq_len: int | None = typer.Option(None, "--seq-len"),
    threads: int | None = typer.Option(None, "--threads"),
    no_memory: bool = typer.Option(False, "--no-memory", help="Skip the child-process peak-memory measurement."),
) -> None:
    """Quantize a model on the runtime you deploy, verify it on held-out data, keep sensitive layers in float."""
    from sizewise.core.budget import Budget
    from sizewise.core.errors import ConfigError
    from sizewise.report.card_view import compare_table
    from sizewise.report.run_report import write_reports

    from sizewise.compress.registry import get_method, list_methods

    # where the result runs: a method made for another runtime deploys there (int4-rtn: llama.cpp, int4-ortgenai:
    # ORT GenAI), the others on onnxruntime unless --runtime says torch; naming a method's only runtime is allowed
    where = get_method(method).runtimes if method in list_methods("quantize") else ()
    if runtime is not None and where and "runtime" not in get_method(method).options:
        if runtime not in where:
            raise ConfigError(f"--method {method} makes a model for {' or '.join(where)}, not {runtime}",
                              hint=f"drop --runtime, or choose another method for {runtime}")
        runtime = None
    max_bytes = None
    if max_size is not None:
        from sizewise.core.units import parse_bytes

        try:
            max_bytes = parse_bytes(max_size)
        except ValueError as e:
            raise ConfigError(f"--max-size: {e}") from None
    config = method_config("quantize", method, {
        "runtime": runtime, "calibration": calibration, "calibration_samples": calibration_samples,
        "group_size": group_size, "symmetric": symmetric, "alpha": alpha, "per_channel": per_channel or None, "epochs": qat_epochs,
        "max_bytes": max_bytes},
        flags={"epochs": "--qat-epochs", "max_bytes": "--max-size"},
        defaults={"runtime": where[0] if where and not {"torch", "onnxruntime"} & set(where) else "onnxruntime"})
    deployed = getattr(config, "runtime", "onnxruntime")
    budget = Budget.parse(max_drop) if max_drop else None
    if budget and not data:
        raise ConfigError("--max-drop needs --data to check the accuracy against")
    loaded, dataset = load_inputs(model, data)
    mc = measure_config(deployed, threads, batch_size, seq_len, no_memory, eval_limit)
    result = run_plan(loaded, one_step(method, config), dataset, out, kind="quantize", measure=mc, budget=budget,
                      references=("torch",) if deployed != "torch" else (), eval_limit=eval_limit, show=False)
    fp32_torch = result.references.get("torch")
    if fp32_torch is not None:
        console.print(compare_table(fp32_torch, result.after, title=f"fp32 on torch eager → quantized on {deployed}",
                                    before_name="fp32 torch", after_name=f"{method} {deployed}"))
    print_comparison(result.before, result.after, title=f"fp32 → quantized, both on {deployed}",
                     before_name=f"fp32 {deployed}", after_name=f"{method} {deployed}")
    flags = result.after.environment.get("cpu_flags", {})
    int8 = [f for f in ("avx512_vnni", "avx_vnni", "amx_int8") if flags.get(f)]
    console.print(f"int8 dot-product instructions on this CPU: {', '.join(int8) or 'none (no VNNI/AMX)'}")
    details = result.details
    if details.get("sensitivity"):
        console.print(sensitivity_table(details["sensitivity"]))
    if details.get("kept_in_float"):
        console.print(f"kept in float to meet the budget: {', '.join(details['kept_in_float'])}", highlight=False)
    if details.get("max_bytes"):
        from sizewise.core.units import format_bytes

        console.print(f"within {format_bytes(details['max_bytes'])}: {len(details['kept_8bit'])} linear layer(s) at "
                      f"Q8_0, {len(details['kept_5bit'])} at Q5_0, the rest at {details['gguf_4bit_type']}; file "
                      f"{format_bytes(details['gguf_bytes'])}", highlight=False)
    print_verdict(result.verdict)
    write_reports(out, result.record)
    console.print(f"run directory: {out} (card.json: the run record with the cards, the sensitivity table and the "
                  f"verdict; report.html)", soft_wrap=True)
