"""``sizewise shrink MODEL --data D --max-drop B --objective O --out DIR``."""

from __future__ import annotations

from pathlib import Path

import typer

from sizewise.cli.common import console, err_console, handles_errors
from sizewise.core.errors import SizewiseError


def trial_table(rows: list):
    from rich.markup import escape
    from rich.table import Table

    from sizewise.pipeline.results import format_objective

    table = Table(title="trials (validation split)", title_justify="left")
    for col in ("#", "what it did", "state", "metric", "latency p50", "size", "seconds"):
        table.add_column(col, justify="left" if col in ("what it did", "state") else "right")
    for o in rows[-15:]:
        table.add_row(str(o.number), escape(o.description), o.state,
                      "" if o.metric is None else f"{o.metric:.4g}",
                      format_objective("latency", o.objectives.get("latency")),
                      format_objective("size", o.objectives.get("size")), f"{o.seconds:.1f}")
    return table


def run_shrink(model: str, data: str, out: Path, config, command: str | None = None):
    """Run the search with a live table of trials; returns the results."""
    from rich.live import Live

    from sizewise.report.shrink_report import shrink as shrink_and_report

    rows: list = []
    try:
        with Live(trial_table(rows), console=err_console, refresh_per_second=4, transient=False) as live:
            def progress(msg: str) -> None:
                live.update(trial_table(rows))
                live.console.print(f"[dim]{msg}[/]", highlight=False)

            def on_trial(outcome) -> None:
                rows.append(outcome)
                live.update(trial_table(rows))

            results = shrink_and_report(model, data, out, config, progress=progress, on_trial=on_trial,
                                        command=command)
    except SizewiseError:
        err_console.line()  # the table's last line ends without a newline: the error line starts a line of its own
        raise
    if results.interrupted:
        console.print(f"[yellow]interrupted[/]: {len(results.trials)} trial(s) kept in {out}; run the same command "
                      f"again to resume", soft_wrap=True)
    return results


def print_outcome(results, out: Path) -> None:
    from rich.markup import escape

    from sizewise.pipeline.results import hardware_note

    chosen, test = results.chosen, results.chosen and results.chosen.test
    ok = (test or chosen.validation).meets_budget if chosen else False
    console.print(f"[{'green' if ok else 'red'}]{escape(results.verdict)}[/]")
    if chosen:
        console.print(f"chosen: trial {chosen.trial} ({escape(chosen.description)}) · {results.metric} "
                      f"{chosen.validation.metric:.4g} on validation (chose on it)"
                      f"{f', {test.metric:.4g} on test (reported)' if test else ''}", highlight=False)
        if test:
            card, base = test.card, results.baseline
            console.print(f"[bold]on test:[/] {escape(results.headline)}", highlight=False, soft_wrap=True)
            if results.hardware:
                console.print(f"[dim]{hardware_note(results.hardware)}[/]", highlight=False)
            cards = [base["torch_fp32"], base["runtime_fp32"], card]
            comparisons = list(results.speedups.values())
            for warning in dict.fromkeys([*(w for c in cards for w in c.get("warnings", [])),
                                          *(w for c in comparisons for w in c.get("warnings", []))]):
                console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
        console.print(f"model: {chosen.artifact}", soft_wrap=True)
    console.print(f"Pareto front: {len(results.pareto)} point(s)")
    console.print(f"report: {out / 'report.html'}", soft_wrap=True)
    console.print(f"results: {out / 'results.json'}", soft_wrap=True)


@handles_errors
def shrink(
    model: str = typer.Argument(..., help="Model reference (usually a run directory from sizewise train)."),
    data: str = typer.Option(..., "--data", help="Data: fine-tuning, calibration, and held-out evaluation."),
    out: Path = typer.Option(..., "--out", help="Search directory; re-running with the same one resumes."),
    max_drop: str = typer.Option("0.01", "--max-drop", help="Budget: 0.01 = 1% of the baseline metric; 0.5pp."),
    objective: str = typer.Option("latency", "--objective", help="latency, size, energy or flops."),
    runtime: str = typer.Option("onnxruntime", "--runtime", help="onnxruntime, torch, llamacpp or ortgenai (the last two: causal LMs): where it will run."),
    methods: str | None = typer.Option(None, "--methods", help="Comma-separated method names or families (prune, "
                                       "quantize, distill, factorize, cluster, runtime) to search; default: prune,"
                                       "quantize. An unknown name lists the searchable ones."),
    trials: int = typer.Option(12, "--trials", help="Finished trials to reach (complete or stopped early)."),
    time_budget: str | None = typer.Option(None, "--time-budget", help="Stop after this long, e.g. 30m."),
    executor: str = typer.Option("local", "--executor", help="local or ray."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Ray cluster address (default: local)."),
    parallel: int = typer.Option(1, "--parallel", help="Trials at once (keep 1 when timing on a small machine)."),
    storage: str | None = typer.Option(None, "--storage", help="Optuna RDB URL to share a study between machines."),
    finetune_epochs: int = typer.Option(2, "--finetune-epochs", help="Recovery epochs after pruning."),
    finetune_lr: float = typer.Option(1e-3, "--finetune-lr", help="Recovery learning rate (text encoders: ~2e-5)."),
    distill_epochs: int | None = typer.Option(None, "--distill-epochs", help="A student's distillation epochs "
                                                                            "(default: --finetune-epochs)."),
    distill_lr: float | None = typer.Option(None, "--distill-lr", help="A student's learning rate (default: "
                                            "--finetune-lr; students relearn more, e.g. 1e-4 for MiniLM)."),
    distill_unlabeled: str | None = typer.Option(None, "--distill-unlabeled", help="A text file of sentences (one "
                                                 "per line, no labels) distillation students learn on instead of the "
                                                 "train split."),
    finetune_samples: int | None = typer.Option(None, "--finetune-samples", help="Recover on N training examples "
                                                                                 "drawn from the split (seeded)."),
    recovery_teacher: bool = typer.Option(True, "--recovery-teacher/--labels-only", help="Recovery training after "
                                          "pruning/factorizing learns from the baseline too (knowledge distillation)."),
    compare_seconds: float = typer.Option(10.0, "--compare-seconds", help="Interleaved timing of the chosen model "
                                          "against each fp32 baseline, on test."),
    seed: int = typer.Option(0, "--seed"),
    threads: int | None = typer.Option(None, "--threads"),
    batch_size: int = typer.Option(1, "--batch-size", help="Batch size the objective is measured at."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Let the model run Python code it "
                                           "names (a Hugging Face directory's auto_map, a factory named in a run "
                                           "directory): only for models you trust."),
) -> None:
    """Search compression plans for the fastest/smallest model within an accuracy budget (chosen on validation,
    reported on test)."""
    from sizewise.core.budget import Budget
    from sizewise.pipeline import ShrinkConfig, parse_duration
    from sizewise.pipeline.config import DEFAULT_METHODS

    config = ShrinkConfig(
        max_drop=Budget.parse(max_drop), objective=objective, runtime=runtime,
        methods=tuple(m.strip() for m in methods.split(",") if m.strip()) if methods else DEFAULT_METHODS,
        trials=trials,
        time_budget_s=parse_duration(time_budget), executor=executor, ray_address=ray_address, parallel=parallel,
        storage=storage, finetune_epochs=finetune_epochs, finetune_lr=finetune_lr, finetune_samples=finetune_samples,
        distill_epochs=distill_epochs, distill_lr=distill_lr, distill_unlabeled=distill_unlabeled, seed=seed, threads=threads, batch_size=batch_size,
        recovery_teacher=recovery_teacher, compare_seconds=compare_seconds)
    from sizewise.models.loader import trusting_remote_code

    with trusting_remote_code(trust_remote_code):
        results = run_shrink(model, data, out, config)
    print_outcome(results, out)
    if results.interrupted:
        raise typer.Exit(code=130)
