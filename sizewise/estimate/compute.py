"""Memory, FLOPs and "does it fit" from a parameter count and the architecture's sizes.

Written by hand because these are the field's standard back-of-envelope formulas, not measurements; each one names
the paper it follows so a reader can check the convention (and the tests check them against published figures):

- training compute ``6·N·D`` with N all parameters and attention neglected, as Brown et al. 2020 (Table D.1) do for
  GPT-3's 3.14e23 FLOP; an encoder-decoder sends each token through about half its parameters, as in that table;
- forward FLOPs per token ``2·N_non-embedding + 2·n_layer·n_ctx·d_attn`` (Kaplan et al. 2020, Table 1), plus the
  output projection ``2·d·vocab`` for models with a language-model head, which Kaplan's N leaves out;
- training state 16 bytes/param for mixed-precision Adam (fp16 weights and grads, fp32 master copy, two fp32 moments:
  Rajbhandari et al. 2020, ZeRO, Sec. 3.1), plus activations ``s·b·h·(34 + 5·a·s/h)`` bytes per layer without
  recomputation (Korthikanti et al. 2022, Sec. 4.1);
- key/value cache ``2 · layers · kv_heads · head_dim · seq · batch`` elements, 2 bytes each in fp16.
"""

from __future__ import annotations

import dataclasses
import math

from sizewise.estimate.config import default, memory_targets
from sizewise.estimate.params import Architecture, ParamCount
from sizewise.estimate.presets import Preset

PRECISION_BYTES = {"fp32": 4.0, "fp16": 2.0, "int8": 1.0, "int4": 0.5}
TRAINING_BYTES_PER_PARAM = 16
TOKENS_PER_PARAM = 20  # Hoffmann et al. 2022 (Chinchilla): compute-optimal training uses about 20 tokens per parameter
IMAGENET_IMAGES = 1_281_167
DEFAULT_EPOCHS = 90  # the common ImageNet-1k recipe (torchvision's reference ResNet training)


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    weights_bytes: dict[str, int]  # weights alone at fp32/fp16/int8/int4
    kv_cache_bytes: int | None  # at batch x seq_len, fp16; 0 for encoders; None when the sizes are unknown
    inference_bytes: dict[str, int]  # weights at that precision + KV cache (fp32 cache for fp32, fp16 otherwise)
    batch: int
    seq_len: int | None
    training_state_bytes: int  # 16 bytes/param
    activation_bytes: int | None  # at batch x seq_len, 16-bit, no recomputation
    training_bytes: int  # state + activations (activations counted as 0 when unknown)


@dataclasses.dataclass(frozen=True)
class InferenceEstimate:
    flops_per_token: float | None  # per image for the CNN presets (see unit)
    unit: str
    parameter_flops: float | None
    attention_flops: float | None
    context: int | None
    formula: str


@dataclasses.dataclass(frozen=True)
class FitRow:
    target: str
    name: str
    memory_bytes: int
    fits: dict[str, bool]  # precision -> weights x (1 + overhead) <= memory
    source: str


def weight_bytes(n_params: int) -> dict[str, int]:
    return {p: int(math.ceil(n_params * b)) for p, b in PRECISION_BYTES.items()}


def kv_cache_bytes(arch: Architecture, batch: int, seq_len: int | None, bytes_per_value: float = 2.0) -> int | None:
    if arch.family == "encoder":
        return 0  # an encoder reads the whole input at once; nothing is cached between steps
    if not arch.is_transformer or arch.n_cache_layers is None or seq_len is None:
        return None
    # an encoder-decoder's decoder keeps its self-attention cache and the projected encoder output for cross-attention
    caches = 2 if arch.family == "encoder-decoder" else 1
    values = 2 * caches * arch.n_cache_layers * arch.n_kv_heads * arch.head_dim * seq_len * batch
    return int(values * bytes_per_value)


def activation_bytes(arch: Architecture, batch: int, seq_len: int | None) -> int | None:
    if not arch.is_transformer or seq_len is None:
        return None
    s, b, h, a = seq_len, batch, arch.d_model, arch.n_heads
    return int(arch.n_layers * s * b * h * (34 + 5 * a * s / h))


def memory(params: ParamCount, arch: Architecture, batch: int, seq_len: int | None) -> MemoryEstimate:
    weights = weight_bytes(params.total)
    kv = kv_cache_bytes(arch, batch, seq_len)
    inference = {p: w + (kv or 0) * (2 if p == "fp32" else 1) for p, w in weights.items()}
    state = TRAINING_BYTES_PER_PARAM * params.total
    act = activation_bytes(arch, batch, seq_len)
    return MemoryEstimate(weights, kv, inference, batch, seq_len, state, act, state + (act or 0))


def inference_flops(params: ParamCount, arch: Architecture, seq_len: int | None,
                    preset: Preset | None) -> InferenceEstimate:
    if preset is not None and preset.forward_macs is not None:
        return InferenceEstimate(2 * preset.forward_macs, preset.unit, 2 * preset.forward_macs, None, None,
                                 f"2 x published multiply-adds ({preset.macs_source})")
    if not arch.is_transformer or seq_len is None:
        return InferenceEstimate(None, "token", None, None, None,
                                 "n/a: the model's layer sizes are unknown; run `sizewise measure` on it instead")
    n = params.non_embedding if params.non_embedding is not None else params.total
    parameter = 2.0 * n
    logits = 2.0 * arch.d_model * arch.vocab_size if arch.lm_head and arch.vocab_size else 0.0
    attention = 2.0 * arch.n_layers * seq_len * arch.n_heads * arch.head_dim
    formula = "2*N_non-embedding + 2*n_layer*n_ctx*d_attn (Kaplan et al. 2020)"
    if logits:
        formula += " + 2*d_model*vocab for the output head"
    return InferenceEstimate(parameter + logits + attention, "token", parameter + logits, attention, seq_len, formula)


def training_units(params: ParamCount, preset: Preset | None, tokens: float | None) -> tuple[float, str, str]:
    """(D, unit, where D came from)."""
    unit = preset.unit if preset is not None else "token"
    if tokens is not None:
        return float(tokens), unit, "given"
    if preset is not None and preset.training_tokens is not None:
        return float(preset.training_tokens), unit, preset.tokens_source or "preset"
    if unit == "image":
        return (float(DEFAULT_EPOCHS * IMAGENET_IMAGES), unit,
                f"assumption: {DEFAULT_EPOCHS} epochs of ImageNet-1k ({IMAGENET_IMAGES:,} images)")
    return (float(TOKENS_PER_PARAM * params.total), unit,
            f"assumption: {TOKENS_PER_PARAM} tokens per parameter, compute-optimal per Hoffmann et al. 2022")


def training_flops(params: ParamCount, arch: Architecture, units: float, inference: InferenceEstimate) -> tuple[float, str]:
    """(FLOP, formula) for one pass over ``units`` training tokens or images."""
    if arch.family == "cnn":
        # convolutions reuse each weight at every position, so 6·N·D does not apply: backward costs about 2x forward
        return 3.0 * inference.flops_per_token * units, "3 x forward FLOPs per image x images (backward = 2x forward)"
    if arch.family == "encoder-decoder":
        return 6.0 * params.total / 2 * units, "6 x N/2 x D (each token passes through about half of an encoder-decoder)"
    formula = "6 x N x D, attention neglected (Brown et al. 2020, Table D.1)"
    if not arch.is_transformer:
        formula += "; assumes each parameter is used once per token, which undercounts convolutions"
    return 6.0 * params.total * units, formula


def fits(weights: dict[str, int], include_this_machine: bool = True) -> tuple[list[FitRow], float]:
    """Which devices hold the weights plus the overhead assumption, at each precision."""
    overhead = float(default("inference_overhead")["value"])
    targets = [(key, t["name"], int(t["memory_gib"] * 2**30), f"{t['source']} ({t['year']})")
               for key, t in memory_targets().items()]
    if include_this_machine:
        try:
            import psutil

            targets.append(("this-machine", "this machine (RAM)", int(psutil.virtual_memory().total),
                            "measured: psutil.virtual_memory().total"))
        except ImportError:
            pass
    rows = [FitRow(key, name, mem, {p: w * (1 + overhead) <= mem for p, w in weights.items()}, source)
            for key, name, mem, source in targets]
    return rows, overhead
