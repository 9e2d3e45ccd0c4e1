"""``int4-ortgenai``: a causal LM's weights as int4 ``MatMulNBits`` blocks, built by ONNX Runtime GenAI's own model
builder (round to nearest on its block grid, symmetric by default) into the folder its runtime runs on the CPU.

Nothing is calibrated and nothing is decided here: the builder quantizes every projection (and a tied embedding,
through ``GatherBlockQuantized``) at once, so there is no per-layer fallback for an accuracy budget; the run's
verdict says whether the budget held. The step hands back the PyTorch twin holding exactly the folder's weights
(dequantized from the graph, :func:`sizewise.models.ortgenai.load_weights`), so the validation score the executor
takes on it is the shipped model's, up to the CPU kernel's int8 activations at ``accuracy_level`` 4.
"""

from __future__ import annotations

import copy
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sizewise.compress.registry import StepContext, StepOutput
from sizewise.core.errors import ConfigError
from sizewise.measure.memory import PeakRss
from sizewise.models.loaded import LoadedModel

BLOCK_SIZES = (16, 32, 64, 128, 256)  # what the builder's MatMulNBits quantizer accepts
ACCURACY_LEVELS = {0: "the provider's default", 1: "fp32", 2: "fp16", 3: "bf16", 4: "int8"}
FOLDER = "ortgenai-int4"


@dataclass(frozen=True)
class OrtGenAIInt4:
    """int4 weight-only quantization of a causal LM by ONNX Runtime GenAI's builder, deployed on ORT GenAI."""

    group_size: int = 32  # weights per scale: the builder's ``block_size``
    accuracy_level: int = 4  # the lowest precision the CPU kernel may compute in (4: int8 activations)
    symmetric: bool = True  # True: w = s (q - 8); False: a zero point per block (uint4)
    runtime: str = "ortgenai"

    def __post_init__(self) -> None:
        if self.group_size not in BLOCK_SIZES or isinstance(self.group_size, bool):
            raise ConfigError(f"ORT GenAI block size must be one of {', '.join(map(str, BLOCK_SIZES))}, got "
                              f"{self.group_size!r}", hint="use --group-size 32 (default) or 128")
        if self.accuracy_level not in ACCURACY_LEVELS or isinstance(self.accuracy_level, bool):
            raise ConfigError(f"accuracy level must be 0-4 (1 fp32, 2 fp16, 3 bf16, 4 int8 activations), got "
                              f"{self.accuracy_level!r}")
        if not isinstance(self.symmetric, bool):
            raise ConfigError(f"symmetric must be true or false, got {self.symmetric!r}")
        if self.runtime != "ortgenai":
            raise ConfigError(f"int4-ortgenai builds a folder for ONNX Runtime GenAI and is measured there, not on "
                              f"{self.runtime!r}", hint="pass --runtime ortgenai")


def quantize_ortgenai(loaded: LoadedModel, config: OrtGenAIInt4, ctx: StepContext) -> StepOutput:
    from sizewise.measure.ortgenai import bytes_by_dtype
    from sizewise.models.gguf import weights_fingerprint
    from sizewise.models.ortgenai import build, check_buildable, folder_files, genai_version, load_weights

    if loaded.task != "causal-lm" or loaded.is_onnx:
        raise ConfigError(f"int4-ortgenai quantizes causal language models (PyTorch), not a {loaded.task} model",
                          hint="for other models use int4-weight, int8-dynamic or int8-static")
    check_buildable(loaded.module.config, f"'{loaded.reference}'")
    workdir = ctx.workdir or Path(tempfile.mkdtemp(prefix="sizewise-ortgenai-"))
    workdir.mkdir(parents=True, exist_ok=True)
    ctx.progress(f"int4-ortgenai: building the int4 folder with ONNX Runtime GenAI's builder (block "
                 f"{config.group_size}, accuracy level {config.accuracy_level})")
    started = time.perf_counter()
    with PeakRss() as rss:
        folder = build(loaded.module, loaded.inputs.tokenizer, workdir / FOLDER, precision="int4",
                       block_size=config.group_size, accuracy_level=config.accuracy_level,
                       symmetric=config.symmetric, reference=f"'{loaded.reference}'")
    seconds = time.perf_counter() - started
    twin = load_weights(copy.deepcopy(loaded.module).eval(), folder)
    result = copy.copy(loaded)
    result.module = twin
    grid = "symmetric, w = s (q - 8)" if config.symmetric else "asymmetric, a uint4 zero point per block"
    result.metadata = {**loaded.metadata, "encoding": "ortgenai", "ortgenai_dir": str(folder),
                       "ortgenai_fingerprint": weights_fingerprint(twin),
                       "notes": [*(loaded.metadata.get("notes") or []),
                                 f"int4-ortgenai: projections as int4 MatMulNBits (block {config.group_size}, {grid}, "
                                 f"accuracy level {config.accuracy_level}: "
                                 f"{ACCURACY_LEVELS[config.accuracy_level]} compute), built by ONNX Runtime GenAI "
                                 f"{genai_version()}'s model builder"]}
    files = folder_files(folder)
    return StepOutput(result, {
        "library": f"onnxruntime-genai {genai_version()} (onnxruntime_genai.models.builder.create_model)",
        "algorithm": "round to nearest (the builder's MatMulNBits quantizer)", "block_size": config.group_size,
        "accuracy_level": config.accuracy_level, "symmetric": config.symmetric,
        "folder_bytes": sum(f.stat().st_size for f in files), "files": [f.name for f in files],
        "initializer_bytes_by_dtype": bytes_by_dtype(folder),
        "build": {"seconds": seconds, "peak_rss_bytes": rss.peak, "rss_increase_bytes": rss.peak - rss.start},
        "kept_in_float": [], "decision": {"metric": None, "note": "nothing is decided: every projection is int4 "
                                                                  "(no per-layer fallback for a budget)"}})
