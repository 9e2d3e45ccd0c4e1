"""``sizewise measure MODEL``."""

from __future__ import annotations

from pathlib import Path

import typer

from sizewise.cli.common import console, data_options, err_console, handles_errors, model_options, with_data_options


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    from sizewise.core.errors import ConfigError

    if not text:
        return None
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--input-shape must be integers like 3,32,32, got '{text}'") from None
    if not shape or any(d < 1 for d in shape):
        raise ConfigError(f"--input-shape must be positive integers like 3,32,32, got '{text}'")
    return shape


@handles_errors
@with_data_options
def measure(
    model: str = typer.Argument(..., help="Model reference: minilm, zoo:NAME, HF dir, run dir, FILE.onnx, "
                                          "package.module:factory, or weights with --arch."),
    data: str | None = typer.Option(None, "--data", help="Data for metrics: digits, a packed folder, CSV/TSV/JSON/"
                                                         "Parquet files, an image folder, a text file."),
    batch_size: int = typer.Option(1, "--batch-size", help="Batch size for FLOPs and latency."),
    seq_len: int | None = typer.Option(None, "--seq-len", help="Tokens per example for text models (default 128)."),
    threads: int | None = typer.Option(None, "--threads", help="Intra-op threads (default: torch's setting)."),
    runtime: str = typer.Option("torch", "--runtime", help="torch or onnxruntime."),
    arch: str | None = typer.Option(None, "--arch", help="Architecture for a weights-only file, e.g. zoo:lenet5."),
    input_shape: str | None = typer.Option(None, "--input-shape", help="Per-example input shape, e.g. 3,32,32."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow loading a whole-model pickle (runs "
                                                                   "code from the file: only for files you trust)."),
    eval_limit: int | None = typer.Option(None, "--eval-limit", help="Evaluate on the first N held-out examples."),
    no_memory: bool = typer.Option(False, "--no-memory", help="Skip the child-process peak-memory measurement."),
    region: str = typer.Option("world", "--region", help="Grid region for CO2e (see sizewise/core/constants)."),
    grid_intensity: float | None = typer.Option(None, "--grid-intensity", help="gCO2e per kWh (overrides --region)."),
    pue: float | None = typer.Option(None, "--pue", help="Power usage effectiveness of the facility (>= 1)."),
    watts_per_core: float | None = typer.Option(None, "--watts-per-core", help="Power model: watts per busy core."),
    split: str | None = typer.Option(None, "--split", help="Split the metrics are computed on (default: the "
                                                           "reported split, test; use validation for decisions)."),
    prompt_len: int = typer.Option(128, "--prompt-len", help="Causal LMs: prompt tokens for prefill and decode."),
    new_tokens: int = typer.Option(32, "--new-tokens", help="Causal LMs: tokens generated (greedy) per run."),
    llm_batch: int = typer.Option(8, "--llm-batch", help="Causal LMs: the larger batch timed besides batch 1."),
    context: int | None = typer.Option(None, "--context", help="Causal LMs: perplexity window in tokens (default: "
                                                               "the model's maximum, at most 1024)."),
    stride: int | None = typer.Option(None, "--stride", help="Causal LMs: tokens the perplexity window advances "
                                                             "(default: context / 2)."),
    max_tokens: int = typer.Option(16_384, "--max-tokens", help="Causal LMs: score at most this many tokens of "
                                                                "the text (the card says when it was cut); 0 scores "
                                                                "all of it (WikiText-2 test: ~300k tokens, hours on "
                                                                "a 2-core CPU)."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the card as JSON here."),
) -> None:
    """What does this model cost? Parameters, bytes, FLOPs, latency, memory, energy, CO2e (and metrics with --data)."""
    from sizewise.data import load_dataset
    from sizewise.measure import EnergySettings, MeasureConfig
    from sizewise.measure import measure as measure_model
    from sizewise.models.loader import load
    from sizewise.measure.llm import LLMConfig
    from sizewise.report.card_view import print_card
    from sizewise.tasks.perplexity import PerplexityConfig

    llm = LLMConfig(prompt_tokens=prompt_len, new_tokens=new_tokens, batch_size=llm_batch,
                    perplexity=PerplexityConfig(context=context, stride=stride, max_tokens=max_tokens or None))
    config = MeasureConfig(batch_size=batch_size, seq_len=seq_len, threads=threads, runtime=runtime,
                           measure_memory=not no_memory, eval_limit=eval_limit, split=split, llm=llm,
                           energy=EnergySettings(watts_per_core=watts_per_core, pue=pue, region=region,
                                                 grid_gco2_per_kwh=grid_intensity))
    with err_console.status("loading model") as status:
        loaded = load(model, arch=arch, trust_pickle=trust_pickle, input_shape=parse_shape(input_shape),
                      **model_options())
        dataset = None
        if data:
            status.update(f"loading data {data}")
            dataset = load_dataset(data, options=data_options())
        card = measure_model(loaded, config, dataset=dataset, progress=status.update)
    print_card(card, console)  # with the card's notes: how the model was loaded (the pad token a GPT-2 lacks, ...)
    if json_path:
        card.to_json(json_path)
        console.print(f"card written to {json_path}")
