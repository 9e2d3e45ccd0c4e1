"""``sizewise estimate MODEL``: size and cost of a model too large to run here. Parses, calls the API, renders."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sizewise.cli.common import console, handles_errors

_PRESETS = ("gpt3-175b, gpt2, bert-base-uncased, bert-large-uncased, t5-base, llama-2-7b, llama-2-70b, minilm, "
            "mobilenet-v2, resnet50")


@handles_errors
def estimate(
    model: str = typer.Argument(..., help=f"A preset ({_PRESETS}), a Hugging Face config.json or its directory, "
                                          "or any model reference sizewise loads."),
    tokens: Optional[float] = typer.Option(None, "--tokens", help="Training tokens D (images for CNNs), e.g. 300e9. "
                                           "Default: the paper's figure for presets, else 20 per parameter."),
    batch: int = typer.Option(1, "--batch", help="Batch size for the KV cache and activation memory."),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Sequence length; default: the model's context."),
    hardware: Optional[str] = typer.Option(None, "--hardware", help="Accelerator in hardware.json, e.g. v100, "
                                           "a100-40gb, a100-80gb, h100, rtx-4090, t4, tpu-v3 (default a100-40gb)."),
    devices: Optional[int] = typer.Option(None, "--devices", help="Number of accelerators; default: the fewest "
                                          "that hold the training state."),
    days: Optional[float] = typer.Option(None, "--days", help="Training time in days (then the utilization is "
                                         "derived). Exclusive with --mfu."),
    mfu: Optional[float] = typer.Option(None, "--mfu", help="Model FLOPs utilization 0-1 (default 0.4)."),
    device_power_w: Optional[float] = typer.Option(None, "--device-power-w", help="Average power per device in W "
                                                   "(default: the hardware's board power). For a measured whole-system "
                                                   "draw, divide it by --devices."),
    pue: Optional[float] = typer.Option(None, "--pue", help="Power usage effectiveness (default 1.58)."),
    region: Optional[str] = typer.Option(None, "--region", help="Grid region in grid_intensity.json (default world)."),
    grid_intensity: Optional[float] = typer.Option(None, "--grid-intensity", help="gCO2e per kWh; exclusive with "
                                                   "--region. (0.954 lbs/kWh = 432.7 g/kWh.)"),
    price_per_hour: Optional[float] = typer.Option(None, "--price-per-hour", help="USD per device-hour (default: "
                                                   "an approximate cloud list price)."),
    bandwidth: Optional[str] = typer.Option(None, "--bandwidth", help="Memory read bandwidth for the decode "
                                            "roofline of a causal LM, in GB/s (1e9 bytes/s), e.g. 50; or 'here' to "
                                            "measure this machine's. Default: the --hardware accelerator's datasheet "
                                            "figure, where hardware.json has one."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the estimate as JSON to this file."),
) -> None:
    """How big and costly a model is: params, memory, what fits where, decode tokens/s (an upper bound), training
    compute, time, energy, CO2e, cost."""
    from sizewise.core.serialize import write_json_atomic
    from sizewise.api import estimate as run_estimate
    from sizewise.estimate.render import print_view

    result = run_estimate(model, tokens=tokens, batch=batch, seq_len=seq_len, hardware=hardware, devices=devices,
                          days=days, mfu=mfu, device_power_w=device_power_w, pue=pue, region=region,
                          grid_intensity=grid_intensity, price_per_hour=price_per_hour, bandwidth=bandwidth)
    data = result.to_dict()
    print_view(data, console)
    if json_path is not None:
        write_json_atomic(json_path, data)
        console.print(f"wrote {json_path}", highlight=False)
