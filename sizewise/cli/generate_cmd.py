"""``sizewise generate MODEL --out FILE``: text a causal LM samples itself, one sequence per line (recovery text for
distilling a pruned copy of it). Parses, calls :func:`sizewise.tasks.generate.generate_text`, renders."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sizewise.cli.common import console, handles_errors


@handles_errors
def generate(
    model: str = typer.Argument(..., help="A causal LM: a Hugging Face folder, a GGUF file, or a name sizewise knows "
                                          "(smollm2-135m)."),
    out: Path = typer.Option(..., "--out", help="The text file to write (one sampled sequence per line). A run cut "
                                                "off resumes when given the same file and settings."),
    sequences: int = typer.Option(512, "--sequences", help="How many sequences to sample."),
    tokens: int = typer.Option(256, "--tokens", help="New tokens per sequence at most."),
    batch_size: int = typer.Option(16, "--batch-size", help="Sequences sampled together."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature."),
    top_p: float = typer.Option(0.95, "--top-p", help="Nucleus sampling: keep the most likely tokens up to this "
                                                      "probability mass (1 samples the full distribution)."),
    seed: int = typer.Option(0, "--seed", help="Batch b is sampled with seed + b."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads (default: torch's own)."),
) -> None:
    """Sample text from a causal LM: more text to distil a pruned or quantized copy of it on than the user has."""
    from sizewise.core.progress import bar
    from sizewise.models.loader import load
    from sizewise.tasks.generate import GenerateConfig, generate_text
    from sizewise.train.loop import torch_threads

    config = GenerateConfig(sequences=sequences, tokens=tokens, batch_size=batch_size, temperature=temperature,
                            top_p=top_p, seed=seed)
    loaded = load(model)
    with torch_threads(threads), bar(True, "sampling", None, unit="batches") as batches:
        result = generate_text(loaded, out, config, on_batch=batches.update)
    resumed = f" (resumed after {result.resumed_batches} batch(es) already written)" if result.resumed_batches else ""
    rate = f", {result.new_tokens / result.seconds:,.0f} tokens/s" if result.seconds > 0 and result.new_tokens else ""
    console.print(f"wrote {result.sequences:,} sequences to {result.path}: {result.new_tokens:,} new tokens in "
                  f"{result.seconds:,.1f} s{rate}{resumed}")
