"""``int8-smoothquant``: W8A8 for a causal LM on ONNX Runtime GenAI. SmoothQuant's per-channel smoothing migrates the
activations' outliers into the weights, then ORT GenAI's model builder writes every projection as an 8-bit
``MatMulNBits`` block at ``accuracy_level`` 4, where the CPU kernel quantizes the activations to int8 and multiplies
int8 by int8 (VNNI / AMX-INT8 where the CPU has them).

Smoothing (Xiao et al., SmoothQuant, 2023): for the inputs ``X`` of a group of linear layers with weights ``W``,
``s_j = max|X_j|^alpha / max|W_:,j|^(1 - alpha)`` per input channel; ``X / s`` and ``W * s`` give the same product,
but ``X / s`` has flatter channels, so its int8 rounding loses less. The division is folded into what produces
``X``, so the deployed graph gains no operation: the RMSNorm before the attention projections (q, k, v) and before
the MLP's gate and up projections, and the up projection's rows before the down projection (``SiLU(gate) * up`` is
linear in ``up``). It is written here, not taken from a library, because the libraries that carry it keep ``s`` as a
run-time multiply on the activations (torchao's prototype) or apply it inside their own static-quantization graphs
(NNCF, Neural Compressor), neither of which reaches the builder's graph; the folding is a few lines per layer kind.

``alpha`` (how much of the activations' range moves into the weights) is chosen on the validation split from
:data:`ALPHAS` unless given: each candidate folder is built and its perplexity scored by onnxruntime on the folder
itself, so the decision sees the kernel's real activation rounding. ``alpha`` 0 is plain W8A8 (no smoothing), so the
choice is never worse on validation than not smoothing. Calibration statistics (per-channel ``max|X|``) come from
the train split's windows (validation when there is none; never test).

The step hands back the PyTorch twin holding exactly the folder's weights (8-bit blocks dequantized; the folder keeps
the token embedding in float32 and the output matrix at 8 bits, so the twin's are untied as the graph's are);
like ``int4-ortgenai``'s twin it computes in float, so its scores leave out the int8 activations: the ``after`` card
scores the folder on ORT GenAI.
"""

from __future__ import annotations

import copy
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sizewise.compress.prune.decoder import run_windows
from sizewise.compress.registry import StepContext, StepOutput
from sizewise.core.errors import ConfigError, DataError
from sizewise.measure.memory import PeakRss
from sizewise.models.loaded import LoadedModel

ALPHAS = (0.0, 0.5, 0.8)  # no smoothing, the paper's default, and a strong migration
BLOCK_SIZES = (16, 32, 64, 128, 256)  # the builder's MatMulNBits block sizes (weights and activations per scale)
FOLDER = "ortgenai-int8"


@dataclass(frozen=True)
class SmoothQuantW8A8:
    """Smoothed int8 weights and int8 activations of a causal LM, built for and run on ONNX Runtime GenAI."""

    alpha: float | None = None  # migration strength in [0, 1]; None: chosen on the validation split from ALPHAS
    group_size: int = 32  # weights (and activations, in the kernel) per scale: the builder's ``block_size``
    calibration_samples: int = 32  # calibration windows
    calibration_tokens: int = 512  # tokens per window
    eval_tokens: int = 8_192  # validation tokens each candidate alpha is scored on
    runtime: str = "ortgenai"

    def __post_init__(self) -> None:
        if self.alpha is not None and (isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float))
                                       or not 0.0 <= self.alpha <= 1.0):
            raise ConfigError(f"SmoothQuant alpha must be a number in [0, 1], got {self.alpha!r}",
                              hint="0 = no smoothing, 0.5 = the paper's default; leave it out to choose on validation")
        if self.group_size not in BLOCK_SIZES or isinstance(self.group_size, bool):
            raise ConfigError(f"ORT GenAI block size must be one of {', '.join(map(str, BLOCK_SIZES))}, got "
                              f"{self.group_size!r}", hint="use --group-size 32 (default) or 128")
        for name in ("calibration_samples", "calibration_tokens", "eval_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name.replace('_', ' ')} must be a positive integer, got {value!r}")
        if self.runtime != "ortgenai":
            raise ConfigError(f"int8-smoothquant builds a folder for ONNX Runtime GenAI and is measured there, not "
                              f"on {self.runtime!r}", hint="pass --runtime ortgenai")


def smoothquant_search(trial, space) -> SmoothQuantW8A8:
    """``shrink``'s space: the migration strength (0 = plain W8A8) and the block, a search's own choices (a trial
    then builds one folder instead of choosing alpha itself)."""
    return SmoothQuantW8A8(alpha=trial.suggest_categorical("int8-smoothquant.alpha", ALPHAS),
                           group_size=trial.suggest_categorical("int8-smoothquant.group_size", (32, 128)))


# ------------------------------------------------------------------------------------------------- smoothing

@dataclass(frozen=True)
class SmoothGroup:
    """Linear layers that read the same input, and what produces it: a norm whose weight scales it, or a linear
    layer whose rows do."""

    name: str  # the first consumer's name: its inputs' statistics stand for the group's
    producer: nn.Module  # an RMSNorm-like module (``weight`` multiplies its output) or an nn.Linear (its rows)
    consumers: tuple[nn.Linear, ...]


def smooth_groups(module: nn.Module) -> list[SmoothGroup]:
    """The foldable groups of a Llama-family decoder: per block, norm -> q/k/v, norm -> gate/up, up -> down."""
    groups: list[SmoothGroup] = []
    for name, block in module.named_modules():
        attn, mlp = getattr(block, "self_attn", None), getattr(block, "mlp", None)
        norm_in, norm_post = getattr(block, "input_layernorm", None), getattr(block, "post_attention_layernorm", None)
        if attn is None or mlp is None or norm_in is None or norm_post is None:
            continue
        try:
            qkv = (attn.q_proj, attn.k_proj, attn.v_proj)
            gate_up, down = (mlp.gate_proj, mlp.up_proj), mlp.down_proj
        except AttributeError:
            continue
        groups += [SmoothGroup(f"{name}.self_attn.q_proj", norm_in, qkv),
                   SmoothGroup(f"{name}.mlp.gate_proj", norm_post, gate_up),
                   SmoothGroup(f"{name}.mlp.down_proj", mlp.up_proj, (down,))]
    for group in groups:
        if not _foldable(group.producer):
            raise ConfigError(f"SmoothQuant cannot fold its scales into {type(group.producer).__name__} "
                              f"({group.name})", hint="int8-smoothquant supports Llama-family decoders (RMSNorm, "
                                                      "gated MLP); use int4-ortgenai or int4-awq")
    return groups


def _foldable(producer: nn.Module) -> bool:
    """Dividing ``weight`` divides the output: true of an RMSNorm and of a linear layer without bias, not of a norm
    computing (1 + w) x (Gemma's) or one with a bias."""
    return (getattr(producer, "weight", None) is not None and getattr(producer, "bias", None) is None
            and "Gemma" not in type(producer).__name__)


def input_absmax(module: nn.Module, groups: list[SmoothGroup], windows: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per input channel, the largest |activation| each group's consumers read over the calibration windows (one
    window at a time, so memory stays at one window's activations)."""
    maxima: list[torch.Tensor | None] = [None] * len(groups)

    def hook(i):
        def record(_mod, args):
            x = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(0).float()
            maxima[i] = x if maxima[i] is None else torch.maximum(maxima[i], x)
        return record

    run_windows(module, windows, [g.consumers[0].register_forward_pre_hook(hook(i)) for i, g in enumerate(groups)])
    return [m if m is not None else torch.ones(g.consumers[0].in_features) for m, g in zip(maxima, groups)]


def smooth(groups: list[SmoothGroup], maxima: list[torch.Tensor], alpha: float) -> None:
    """Fold ``s = max|X|^alpha / max|W|^(1-alpha)`` into each group, in place (exactly the same function in float)."""
    if alpha == 0:
        return
    with torch.no_grad():
        for group, act in zip(groups, maxima):
            w_max = torch.stack([c.weight.abs().amax(0) for c in group.consumers]).amax(0)
            s = (act.clamp_min(1e-5) ** alpha / w_max.clamp_min(1e-5) ** (1 - alpha)).clamp(1e-4, 1e4)
            if isinstance(group.producer, nn.Linear):  # up -> down: up's rows make down's input channels
                group.producer.weight.div_(s.unsqueeze(1))
            else:
                group.producer.weight.div_(s)
            for c in group.consumers:
                c.weight.mul_(s)


# ------------------------------------------------------------------------------------------------- the step

def quantize_smoothquant(loaded: LoadedModel, config: SmoothQuantW8A8, ctx: StepContext) -> StepOutput:
    from sizewise.compress.quantize.llm import calibration_windows
    from sizewise.measure.ortgenai import bytes_by_dtype
    from sizewise.models.gguf import weights_fingerprint
    from sizewise.models.ortgenai import OrtGenAIModule, build, check_buildable, folder_files, genai_version, \
        load_weights
    from sizewise.tasks.perplexity import PerplexityConfig, perplexity

    if loaded.task != "causal-lm" or loaded.is_onnx:
        raise ConfigError(f"int8-smoothquant quantizes causal language models (PyTorch), not a {loaded.task} model",
                          hint="for other models use int8-dynamic or int8-static")
    check_buildable(loaded.module.config, f"'{loaded.reference}'")
    alphas = (config.alpha,) if config.alpha is not None else ALPHAS
    data = ctx.data
    if any(alphas) and data is None:
        raise DataError("int8-smoothquant calibrates its smoothing on text",
                        hint="pass --data (a text dataset), or --alpha 0 for plain W8A8 without smoothing")
    source = copy.deepcopy(loaded.module).eval().to(torch.float32)
    groups = smooth_groups(source)
    details: dict[str, Any] = {"library": f"onnxruntime-genai {genai_version()} (model builder, int8 MatMulNBits)",
                               "group_size": config.group_size, "accuracy_level": 4, "smoothed_groups": len(groups)}
    maxima: list[torch.Tensor] = []
    if any(alphas):
        windows, calib_split = calibration_windows(loaded, data, config.calibration_samples, config.calibration_tokens)
        ctx.progress(f"int8-smoothquant: activation ranges on {len(windows)} x {config.calibration_tokens} tokens")
        started = time.perf_counter()
        with PeakRss() as rss:
            maxima = input_absmax(source, groups, windows)
        details["calibration"] = {"split": calib_split, "windows": len(windows),
                                  "tokens_per_window": config.calibration_tokens,
                                  "seconds": time.perf_counter() - started, "peak_rss_bytes": rss.peak,
                                  "rss_increase_bytes": rss.peak - rss.start}
    workdir = ctx.workdir or Path(tempfile.mkdtemp(prefix="sizewise-smoothquant-"))
    workdir.mkdir(parents=True, exist_ok=True)
    split = data.decision_split if data is not None else None
    texts = list(data.split(split).inputs) if data is not None and len(alphas) > 1 else None
    if texts is not None and ctx.eval_limit is not None:
        texts = texts[:ctx.eval_limit]
    tried, best = [], None
    for alpha in alphas:
        candidate = copy.deepcopy(source)  # one smoothed copy at a time: the folder keeps what it holds
        smooth(smooth_groups(candidate), maxima, alpha)
        ctx.progress(f"int8-smoothquant: building the int8 folder (alpha {alpha}, block {config.group_size})")
        started = time.perf_counter()
        folder = build(candidate, loaded.inputs.tokenizer, workdir / f"{FOLDER}-alpha{alpha:g}", precision="int8",
                       block_size=config.group_size, accuracy_level=4, symmetric=True,
                       reference=f"'{loaded.reference}'")
        del candidate
        row = {"alpha": alpha, "build_seconds": time.perf_counter() - started, "split": split, "metric": None}
        if texts:  # scored by the kernel that will run it: onnxruntime on the folder's graph
            module = OrtGenAIModule(folder, threads=max(1, torch.get_num_threads()), config=source.config)
            row["metric"] = perplexity(module, loaded.inputs.tokenizer, texts,
                                       PerplexityConfig(max_tokens=config.eval_tokens)).token_perplexity
            ctx.progress(f"int8-smoothquant: alpha {alpha}: validation perplexity {row['metric']:.3f} (ORT GenAI)")
        tried.append(row)
        if best is None or (row["metric"] is not None and row["metric"] < best[0]["metric"]):
            best = (row, folder)
    row, folder = best
    # every parameter, the smoothed norms included, comes from the chosen folder (load_weights checks it)
    twin = load_weights(source, folder)
    result = copy.copy(loaded)
    result.module = twin.eval()
    result.metadata = {**loaded.metadata, "encoding": "ortgenai", "ortgenai_dir": str(folder),
                       "ortgenai_fingerprint": weights_fingerprint(twin),
                       "notes": [*(loaded.metadata.get("notes") or []),
                                 f"int8-smoothquant: SmoothQuant alpha {row['alpha']:g} folded into the norms and up "
                                 f"projections, projections as int8 MatMulNBits (block {config.group_size}, "
                                 f"symmetric) with int8 activations (accuracy level 4), built by ONNX Runtime "
                                 f"GenAI {genai_version()}'s model builder"]}
    files = folder_files(folder)
    return StepOutput(result, details | {
        "alpha": row["alpha"], "tried": tried, "folder_bytes": sum(f.stat().st_size for f in files),
        "files": [f.name for f in files], "initializer_bytes_by_dtype": bytes_by_dtype(folder), "kept_in_float": [],
        "decision": {"metric": "perplexity" if texts else None, "split": split if texts else None,
                     "chosen": row["metric"], "tokens": config.eval_tokens if texts else None,
                     "scored_on": "onnxruntime running each candidate folder (int8 activations)",
                     "note": None if texts else "alpha given: nothing decided"}})
