"""``sizewise quantize MODEL --method M [--runtime R] [--max-drop B] --out DIR``."""

from __future__ import annotations

from pathlib import Path

import typer

from sizewise.cli.common import console, err_console, handles_errors

METHODS = "int8-dynamic | int8-static | int8-weight | int4-weight | fp16 | bf16 | qat"


def _config(method: str, runtime: str, calibration: str, samples: int, group_size: int, per_channel: bool,
            qat_epochs: int):
    from sizewise.compress import quantize as q
    from sizewise.core.errors import ConfigError

    if method == "int8-dynamic":
        return q.Int8Dynamic(runtime=runtime, per_channel=per_channel)
    if method == "int8-static":
        return q.Int8Static(runtime=runtime, calibration=calibration, calibration_samples=samples)
    if method in ("int8-weight", "int4-weight"):
        return q.WeightOnly(bits=int(method[3]), group_size=group_size, runtime=runtime)
    if method in ("fp16", "bf16"):
        return q.HalfPrecision(dtype=method, runtime=runtime)
    if method == "qat":
        return q.QuantizationAwareTraining(epochs=qat_epochs, calibration=calibration, calibration_samples=samples,
                                           runtime=runtime)
    raise ConfigError(f"unknown quantization method '{method}'", hint=f"choose one of: {METHODS}")


@handles_errors
def quantize(
    model: str = typer.Argument(..., help="Model reference (run directory, minilm, zoo:NAME, HF dir, ...)."),
    out: Path = typer.Option(..., "--out", help="Run directory to write (model/ and card.json)."),
    data: str | None = typer.Option(None, "--data", help="Held-out data for the accuracy check; its train split "
                                                         "calibrates int8-static."),
    method: str = typer.Option("int8-dynamic", "--method", help=METHODS),
    runtime: str = typer.Option("onnxruntime", "--runtime", help="onnxruntime or torch: where it will be deployed."),
    max_drop: str | None = typer.Option(None, "--max-drop", help="Accuracy budget: 0.01 = 1% of the baseline, "
                                                                 "0.5pp = half a point. Layers are kept in float "
                                                                 "until it holds."),
    calibration: str = typer.Option("minmax", "--calibration", help="int8-static observer: minmax, percentile, "
                                                                     "entropy."),
    calibration_samples: int = typer.Option(128, "--calibration-samples"),
    group_size: int = typer.Option(32, "--group-size", help="Weight-only: weights per scale."),
    per_channel: bool = typer.Option(False, "--per-channel", help="int8-dynamic: one scale per output channel."),
    qat_epochs: int = typer.Option(2, "--qat-epochs", help="qat: fine-tuning epochs with fake-quantized weights."),
    eval_limit: int | None = typer.Option(None, "--eval-limit", help="Check accuracy on the first N examples."),
    batch_size: int = typer.Option(1, "--batch-size", help="Batch size for latency."),
    seq_len: int | None = typer.Option(None, "--seq-len"),
    threads: int | None = typer.Option(None, "--threads"),
) -> None:
    """Quantize a model on the runtime you deploy, verify it on held-out data, keep sensitive layers in float."""
    import sizewise
    from sizewise.compress.quantize import quantize as run
    from sizewise.core.budget import Budget
    from sizewise.core.errors import ConfigError
    from sizewise.measure import MeasureConfig
    from sizewise.report.card_view import compare_table, savings_line

    config = _config(method, runtime, calibration, calibration_samples, group_size, per_channel, qat_epochs)
    budget = Budget.parse(max_drop) if max_drop else None
    if budget and not data:
        raise ConfigError("--max-drop needs --data to check the accuracy against")
    loaded = sizewise.load(model)
    dataset = sizewise.load_dataset(data) if data else None
    mc = MeasureConfig(batch_size=batch_size, seq_len=seq_len, threads=threads, runtime=runtime)
    with err_console.status("quantizing") as status:
        result = run(loaded, config, out, dataset=dataset, max_drop=budget, measure_config=mc,
                     eval_limit=eval_limit, progress=status.update)
    if result.torch_fp32 and runtime != "torch":
        console.print(compare_table(result.torch_fp32, result.after, title="fp32 on torch eager → quantized on "
                                    f"{runtime}", before_name="fp32 torch", after_name=f"{method} {runtime}"))
    console.print(compare_table(result.before, result.after, title=f"fp32 → quantized, both on {runtime}",
                                before_name=f"fp32 {runtime}", after_name=f"{method} {runtime}"))
    console.print(savings_line(result.before, result.after))
    for warning in dict.fromkeys([*result.before.warnings, *result.after.warnings]):
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    env = result.after.environment.get("cpu_flags", {})
    int8 = [f for f in ("avx512_vnni", "avx_vnni", "amx_int8") if env.get(f)]
    console.print(f"int8 dot-product instructions on this CPU: {', '.join(int8) or 'none (no VNNI/AMX)'}")
    if result.sensitivity:
        from rich.table import Table

        table = Table(title="per-layer sensitivity (each layer quantized alone), most sensitive first",
                      title_justify="left")
        for col in ("layer", "op", "output error", "metric drop (points)"):
            table.add_column(col, justify="left" if col in ("layer", "op") else "right")
        for row in result.sensitivity[:12]:
            table.add_row(row.node, row.op_type, f"{row.output_error:.3g}",
                          "" if row.metric_drop is None else f"{row.metric_drop:.2f}")
        console.print(table)
    if result.kept_in_float:
        console.print(f"kept in float to meet the budget: {', '.join(result.kept_in_float)}", highlight=False)
    style = "green" if result.verdict.meets_budget else ("red" if result.verdict.meets_budget is False else "")
    console.print(f"[{style}]{result.verdict.message}[/]" if style else result.verdict.message)
    from sizewise.core.serialize import write_text_atomic
    from sizewise.report.shrink_report import render_quantize_html

    write_text_atomic(out / "report.html", render_quantize_html(result.to_dict()))
    console.print(f"run directory: {out} (card.json: the cards, the sensitivity table, the verdict; report.html)",
                  soft_wrap=True)
