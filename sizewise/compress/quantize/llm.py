"""4-bit weight-only quantization of a causal LM for llama.cpp: the linear layers of every transformer block as 4-bit
group codes (GGUF Q4_1, or Q4_0 when symmetric), the token embedding (tied to the output) as Q8_0, norms in F32,
written as one GGUF file that llama.cpp runs and ``sizewise.load`` reads back.

Two algorithms, registered as two methods: ``int4-rtn`` rounds to nearest (data-free; the baseline) and
``int4-awq`` calibrates with NNCF's AWQ and scale estimation on the data's train split (validation when there is
none; never test). Why NNCF, and the measured comparison: :mod:`sizewise.compress.quantize.llm_codes`.

Decisions are made on the validation split, on the PyTorch model that carries exactly the weights the GGUF file holds
(its scales and minima rounded to fp16 as the file stores them); the run's ``after`` card then measures the file
itself on llama.cpp. Calibration windows are taken from the end of the split and the decisions score its beginning,
so the two do not overlap on a split longer than both. When the budget is missed, the linear layers are ranked by their
relative output error on the calibration windows and the k worst kept at 8 bits (Q8_0) for k = 1, 2, 4, ... until
it holds; if nothing holds, the closest candidate is handed back and the details say so. With ``max_bytes`` the
file is instead filled up to that size with the upgrades (Q5_0 or Q8_0) that remove the most output error per byte
(:mod:`sizewise.compress.quantize.llm_mix`): the best model at a given size, e.g. at another file's bytes.
A layer raised to Q5_0 / Q8_0 gets block scales chosen to minimise its output error on the calibration windows
(:func:`~sizewise.compress.quantize.llm_codes.block_codes`), not llama.cpp's reference rounding.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sizewise.compress.registry import StepContext, StepOutput
from sizewise.core.budget import quality_drop
from sizewise.core.errors import ConfigError, DataError
from sizewise.measure.memory import PeakRss
from sizewise.models.loaded import LoadedModel

ALGORITHMS = ("rtn", "awq", "scale-estimation", "awq+scale-estimation")
EIGHT_BIT = "Q8_0"
GGUF_FILE = "model.gguf"


@dataclass(frozen=True)
class LLMWeightInt4:
    """4-bit weight-only quantization of a causal LM's linear layers, deployed as GGUF on llama.cpp."""

    algorithm: str = "awq+scale-estimation"
    group_size: int = 32  # weights per scale; a multiple of 32 (GGUF blocks hold 32)
    symmetric: bool = False  # True: w = d (q - 8) (GGUF Q4_0); False: w = d q + m (Q4_1)
    calibration_samples: int = 32  # calibration windows
    calibration_tokens: int = 512  # tokens per window
    eval_tokens: int = 16_384  # validation tokens each decision scores (perplexity, context 1024, stride 512)
    embeddings: str = EIGHT_BIT  # the token embedding (and a tied output matrix): Q8_0, F16 or F32
    runtime: str = "llamacpp"
    max_bytes: int | None = None  # fill the file up to this size with Q5_0 / Q8_0 layers where they help most
    keep_8bit: int | None = None  # exactly this many of the most sensitive layers at Q8_0 (a search's choice);
    # None: as many as the budget needs (k = 0, 1, 2, 4, ...)

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f"unknown int4 algorithm {self.algorithm!r}", hint=f"choose one of {', '.join(ALGORITHMS)}")
        if not isinstance(self.group_size, int) or self.group_size < 32 or self.group_size % 32:
            raise ConfigError(f"group size must be a multiple of 32 (GGUF blocks hold 32 weights), got "
                              f"{self.group_size!r}", hint="use --group-size 32, 64 or 128")
        if not isinstance(self.symmetric, bool):
            raise ConfigError(f"symmetric must be true or false, got {self.symmetric!r}")
        for name in ("calibration_samples", "calibration_tokens", "eval_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name.replace('_', ' ')} must be a positive integer, got {value!r}")
        if self.embeddings not in (EIGHT_BIT, "F16", "F32"):
            raise ConfigError(f"embeddings must be Q8_0, F16 or F32, got {self.embeddings!r}")
        if self.max_bytes is not None and (not isinstance(self.max_bytes, int) or isinstance(self.max_bytes, bool)
                                           or self.max_bytes < 1):
            raise ConfigError(f"max bytes must be a positive number of bytes, got {self.max_bytes!r}")
        if self.keep_8bit is not None and (not isinstance(self.keep_8bit, int) or isinstance(self.keep_8bit, bool)
                                           or self.keep_8bit < 0):
            raise ConfigError(f"keep_8bit must be a number of layers >= 0, got {self.keep_8bit!r}")
        if self.keep_8bit is not None and self.max_bytes is not None:
            raise ConfigError("give either a number of layers to keep at 8 bits or a file size, not both",
                              hint="--max-size fills the file with the upgrades that help most")
        if self.runtime != "llamacpp":
            raise ConfigError(f"int4 GGUF quantization runs on llama.cpp, not {self.runtime!r}",
                              hint="for onnxruntime use --method int4-weight")

    @property
    def calibrated(self) -> bool:
        return self.algorithm != "rtn"


# the most sensitive linear layers a search may keep at Q8_0: a trial has no budget to fall back against (the search
# holds it), so how many layers to keep is one of its choices, traded against size and speed by the search
KEEP_8BIT = (0, 4, 8, 16, 32, 64)
GROUP_SIZES = (32, 64, 128)  # what shrink tries, where they divide every linear layer's rows (SearchSpace.linear_widths)


def llm_search(method: str, algorithm: str):
    """``shrink``'s space for one int4 algorithm: the group size and the grid (symmetric: GGUF Q4_0, else Q4_1)."""

    def search(trial, space) -> LLMWeightInt4:
        # a size that does not divide a layer's rows would fail the trial (SmolLM2's 576-wide rows and 128)
        sizes = tuple(g for g in GROUP_SIZES if all(w % g == 0 for w in space.linear_widths)) or GROUP_SIZES[:1]
        return LLMWeightInt4(algorithm=algorithm,
                             group_size=trial.suggest_categorical(f"{method}.group_size", sizes),
                             symmetric=trial.suggest_categorical(f"{method}.symmetric", (False, True)),
                             keep_8bit=trial.suggest_categorical(f"{method}.keep_8bit", KEEP_8BIT))

    return search


def is_causal_lm(space) -> bool:
    return space.task == "causal-lm"


# ------------------------------------------------------------------------------------------------- calibration

def _token_stream(loaded: LoadedModel, texts: list[str]) -> list[int]:
    from sizewise.data.chat import render_texts
    from sizewise.tasks.perplexity import JOINER

    tokenizer = loaded.inputs.tokenizer
    text = JOINER.join(render_texts(tokenizer, texts, f"'{loaded.reference}'"))
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def calibration_windows(loaded: LoadedModel, data: Any, samples: int, tokens: int) -> tuple[list[torch.Tensor], str]:
    """``samples`` windows of ``tokens`` token ids from the end of the train split (validation when there is none)."""
    source = next((s for s in ("train", "validation") if s in data.splits and len(data.splits[s])), None)
    if source is None:
        raise DataError(f"dataset '{data.name}' has no train or validation text to calibrate on (splits: "
                        f"{', '.join(sorted(data.splits))}); the test split is never used for calibration")
    ids = _token_stream(loaded, list(data.split(source).inputs))
    need = samples * tokens
    if len(ids) < tokens:
        raise DataError(f"the {source} split holds {len(ids)} tokens, fewer than one calibration window of {tokens}",
                        hint="give more text, or a smaller --calibration-samples")
    tail = ids[-need:] if len(ids) >= need else ids[len(ids) % tokens:]
    windows = [torch.tensor(tail[i:i + tokens]).unsqueeze(0) for i in range(0, len(tail) - tokens + 1, tokens)]
    return windows, source


# ------------------------------------------------------------------------------------------------- the step

def _score(module, loaded: LoadedModel, texts: list[str], tokens: int) -> float:
    from sizewise.tasks.perplexity import PerplexityConfig, perplexity

    return perplexity(module, loaded.inputs.tokenizer, texts, PerplexityConfig(max_tokens=tokens)).token_perplexity


def _rounded(array: np.ndarray, kind: str) -> np.ndarray:
    """``array`` as a GGUF file of ``kind`` gives it back."""
    import gguf

    if kind == "F32":
        return array
    if kind == "F16":
        return array.astype(np.float16).astype(np.float32)
    qtype = gguf.GGMLQuantizationType[kind]
    return gguf.quants.dequantize(gguf.quants.quantize(np.ascontiguousarray(array, dtype=np.float32), qtype), qtype)


def _apply(module, source, codes: dict, embeddings: str, upgrades: dict[str, str], upgrade) -> None:
    """Put the weights the GGUF file will hold into ``module``: 4-bit codes, or for the layers in ``upgrades`` their
    Q5_0 / Q8_0 codes (``upgrade(name, kind)``), and the token embedding of ``source`` in its encoding."""
    params = dict(module.named_parameters())
    floats = dict(source.named_parameters())
    with torch.no_grad():
        for name, group in codes.items():
            value = upgrade(name, upgrades[name]).dequantize() if name in upgrades else group.dequantize()
            params[name].copy_(torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)))
        for name in ("model.embed_tokens.weight", "lm_head.weight"):  # an untied output: the embedding's encoding
            if name in params:  # a tied output matrix is one parameter, listed once
                params[name].copy_(torch.from_numpy(_rounded(floats[name].detach().numpy(), embeddings)))


def quantize_llm(loaded: LoadedModel, config: LLMWeightInt4, ctx: StepContext) -> StepOutput:
    from sizewise.compress.quantize.llm_codes import (
        awq_float_targets,
        block_codes,
        input_moments,
        linear_weights,
        nncf_codes,
        nncf_version,
        output_error,
        rtn_codes,
    )
    from sizewise.models.gguf import weights_fingerprint
    from sizewise.models.gguf_writer import check_architecture, write_gguf

    if loaded.task != "causal-lm" or loaded.is_onnx:
        raise ConfigError(f"{_name(config)} quantizes causal language models (PyTorch), not a {loaded.task} model",
                          hint="for other models use int4-weight, int8-dynamic or int8-static")
    check_architecture(loaded.module.config)
    data = ctx.data
    if config.calibrated and data is None:
        raise DataError(f"{_name(config)} calibrates on text", hint="pass --data (a text dataset), or use int4-rtn")
    source = copy.deepcopy(loaded.module).eval().to(torch.float32)
    layers = linear_weights(source)
    details: dict[str, Any] = {"algorithm": config.algorithm, "group_size": config.group_size,
                               "symmetric": config.symmetric, "gguf_4bit_type": "Q4_0" if config.symmetric else "Q4_1",
                               "embeddings": config.embeddings, "layers": len(layers)}
    windows, calib_split = [], None
    if data is not None:
        windows, calib_split = calibration_windows(loaded, data, config.calibration_samples, config.calibration_tokens)
    ctx.progress(f"{_name(config)}: calibrating on {len(windows)} x {config.calibration_tokens} tokens"
                 if config.calibrated else f"{_name(config)}: rounding to nearest")
    started = time.perf_counter()
    key = _calibration_key(source, windows, config)
    if key in _CALIBRATED:  # a search trying this grid again (another number of layers at 8 bits)
        _CALIBRATED.move_to_end(key)
        moments, codes, details["library"] = _CALIBRATED[key]
        details["calibration"] = {"split": calib_split, "windows": len(windows), "tokens_per_window":
                                  config.calibration_tokens, "reused": True}
    else:
        with PeakRss() as rss, torch.no_grad():
            moments: dict[str, torch.Tensor] = {}
            if windows:
                with input_moments(layers) as moments:
                    for w in windows:
                        source(input_ids=w)
            if config.calibrated:
                awq = "awq" in config.algorithm
                codes = nncf_codes(source, windows, config.group_size, config.symmetric, awq=awq,
                                   progress=ctx.progress, scale_estimation="scale-estimation" in config.algorithm)
                details["library"] = f"nncf {nncf_version()}"
            else:
                codes = {name: rtn_codes(layer.weight, config.group_size, config.symmetric)
                         for name, layer in layers.items()}
                details["library"] = "sizewise (llama.cpp's reference rounding)"
        details["calibration"] = {"split": calib_split, "windows": len(windows), "tokens_per_window":
                                  config.calibration_tokens, "seconds": time.perf_counter() - started,
                                  "peak_rss_bytes": rss.peak, "rss_increase_bytes": rss.peak - rss.start}
        _CALIBRATED[key] = (moments, codes, details["library"])
        while len(_CALIBRATED) > CALIBRATIONS_KEPT:
            _CALIBRATED.popitem(last=False)
    floats = {n: layer.weight.detach().numpy() for n, layer in layers.items()}
    targets, input_scales = awq_float_targets(floats, codes) if "awq" in config.algorithm else (floats, {})

    def moment_of(name: str) -> torch.Tensor | None:
        moment = moments.get(name)
        if moment is not None and name in input_scales:  # the scaled layer's inputs are divided by s
            moment = moment / torch.from_numpy(input_scales[name]) ** 2
        return moment

    def error(name: str, approx: np.ndarray) -> float:
        return output_error(torch.from_numpy(targets[name]), approx, moment_of(name))

    upgraded: dict[tuple[str, str], Any] = {}

    def upgrade(name: str, kind: str):
        """A layer's Q5_0 / Q8_0 codes: its float target (:func:`awq_float_targets`) with the block scales that
        minimise its output error on the calibration windows (:func:`block_codes`)."""
        if (name, kind) not in upgraded:
            upgraded[name, kind] = block_codes(targets[name], kind, moment_of(name))
        return upgraded[name, kind]

    errors = sorted(((error(n, c.dequantize()), n) for n, c in codes.items()), reverse=True)
    details["sensitivity"] = [{"node": n, "op_type": "Linear", "output_error": e} for e, n in errors[:12]]
    ranked = [n for _, n in errors]
    workdir = ctx.workdir or Path(tempfile.mkdtemp(prefix="sizewise-int4-"))
    workdir.mkdir(parents=True, exist_ok=True)
    gguf_meta = loaded.metadata.get("gguf") or {}

    def write(module, upgrades: dict[str, str]) -> Path:
        return write_gguf(module, loaded.inputs.tokenizer, workdir / GGUF_FILE,
                          codes={n: upgrade(n, upgrades[n]) if n in upgrades else c for n, c in codes.items()},
                          encodings={"model.embed_tokens.weight": config.embeddings,
                                     "lm_head.weight": config.embeddings},
                          default="F32", source_gguf=gguf_meta.get("path"),
                          name=f"{loaded.metadata.get('name') or loaded.reference} ({_name(config)})")

    split = data.decision_split if data is not None else None
    texts = list(data.split(split).inputs) if data is not None else None
    if ctx.eval_limit is not None and texts is not None:
        texts = texts[:ctx.eval_limit]
    # the step scores only to hold a budget: without one (a search trial; the executor scores every step on the
    # decision split anyway) there is nothing to decide, and each score is a perplexity pass over the split
    metric = "perplexity" if texts and ctx.budget is not None else None
    baseline = _score(source, loaded, texts, config.eval_tokens) if metric else None
    candidate_module = copy.deepcopy(source)
    if config.keep_8bit is not None:
        upgrades = dict.fromkeys(ranked[:config.keep_8bit], EIGHT_BIT)
        _apply(candidate_module, source, codes, config.embeddings, upgrades, upgrade)
        value = _score(candidate_module, loaded, texts, config.eval_tokens) if metric else None
        tried = [{"kept_8bit": len(upgrades), "metric": value}]
    elif config.max_bytes is not None:
        upgrades, tried = _fill_to_size(candidate_module, source, codes, config, error, upgrade, write, ctx)
        value = tried[0]["metric"] = _score(candidate_module, loaded, texts, config.eval_tokens) if metric else None
    else:
        upgrades, value, tried = _fallback(candidate_module, source, codes, upgrade, config, ranked, metric,
                                           baseline, lambda m: _score(m, loaded, texts, config.eval_tokens), ctx)
    for t in tried:
        t["split"] = split
    del source
    path = write(candidate_module, upgrades)
    eight_bit = sorted(n for n, k in upgrades.items() if k == EIGHT_BIT)
    k = len(eight_bit)
    result = copy.copy(loaded)
    result.module = candidate_module.eval()
    result.metadata = {**loaded.metadata, "encoding": "gguf", "gguf_file": str(path),
                       "gguf_fingerprint": weights_fingerprint(candidate_module),
                       "notes": [*(loaded.metadata.get("notes") or []),
                                 f"{_name(config)}: linear layers {details['gguf_4bit_type']} (group "
                                 f"{config.group_size}, {config.algorithm}), {k} kept at Q8_0, "
                                 f"{len(upgrades) - k} at Q5_0, embeddings "
                                 f"{config.embeddings}; written as GGUF for llama.cpp"]}
    meets = None if metric is None or ctx.budget is None else ctx.budget.allows(metric, baseline, value)
    return StepOutput(result, details | {
        "kept_8bit": eight_bit, "kept_5bit": sorted(n for n, kind in upgrades.items() if kind == "Q5_0"),
        "kept_in_float": [], "tried": tried, "gguf_file": path.name, "max_bytes": config.max_bytes,
        "gguf_bytes": path.stat().st_size,
        "decision": {"metric": metric, "split": split, "baseline": baseline, "chosen": value, "meets_budget": meets,
                     "scored_on": "torch, with the weights the GGUF file holds",
                     "tokens": config.eval_tokens}})


# Calibrations by (weights, calibration windows, grid, algorithm). A search tries one grid with several numbers of
# layers at 8 bits, and NNCF's calibration is most of such a trial's time (minutes on SmolLM2-135M) while its codes
# depend on nothing else. Few entries: each holds about a byte per weight.
_CALIBRATED: OrderedDict[tuple, tuple[dict, dict, str]] = OrderedDict()
CALIBRATIONS_KEPT = 4


def _calibration_key(source, windows: list[torch.Tensor], config: LLMWeightInt4) -> tuple:
    import hashlib

    from sizewise.models.gguf import weights_fingerprint

    tokens = hashlib.blake2b(digest_size=16)
    for w in windows:
        tokens.update(w.to(torch.int64).numpy().tobytes())
    return (weights_fingerprint(source), tokens.hexdigest(), config.algorithm, config.group_size, config.symmetric)


def _fallback(module, source, codes, upgrade, config: LLMWeightInt4, ranked: list[str], metric, baseline, score,
              ctx: StepContext) -> tuple[dict[str, str], float | None, list[dict]]:
    """The k most sensitive layers at Q8_0 for k = 0, 1, 2, 4, ... until the budget holds (or the closest)."""
    from sizewise.compress.quantize.sensitivity import fallback_steps

    tried, chosen = [], None
    for k in fallback_steps(len(ranked)):
        upgrades = dict.fromkeys(ranked[:k], EIGHT_BIT)
        ctx.progress(f"{_name(config)}: {k} layer(s) at 8 bits" + (", scoring" if metric else ""))
        _apply(module, source, codes, config.embeddings, upgrades, upgrade)
        value = score(module) if metric else None
        tried.append({"kept_8bit": k, "metric": value})
        if chosen is None or (value is not None and quality_drop(metric, chosen[1], value) < 0):
            chosen = (k, value)
        if metric is None or ctx.budget is None or ctx.budget.allows(metric, baseline, value):
            chosen = (k, value)
            break
    k, value = chosen
    upgrades = dict.fromkeys(ranked[:k], EIGHT_BIT)
    _apply(module, source, codes, config.embeddings, upgrades, upgrade)
    return upgrades, value, tried


def _fill_to_size(module, source, codes, config: LLMWeightInt4, error, upgrade, write, ctx: StepContext
                  ) -> tuple[dict[str, str], list[dict]]:
    """Raise layers to Q5_0 / Q8_0 where they remove the most output error per byte, up to ``config.max_bytes``."""
    from sizewise.compress.quantize.llm_mix import UPGRADES, allocate, tensor_bytes
    from sizewise.core.units import format_bytes

    _apply(module, source, codes, config.embeddings, {}, upgrade)
    base_bytes = write(module, {}).stat().st_size
    if base_bytes > config.max_bytes:
        raise ConfigError(f"the all-4-bit file is {format_bytes(base_bytes)} ({base_bytes:,} B), above the "
                          f"{format_bytes(config.max_bytes)} asked for",
                          hint="allow more bytes, use --symmetric (Q4_0 is smaller than Q4_1), or encode the "
                               "embeddings smaller")
    ctx.progress(f"{_name(config)}: choosing Q5_0 / Q8_0 layers within {format_bytes(config.max_bytes)}")
    base = next(iter(codes.values())).gguf_type
    errors = {n: {base: error(n, c.dequantize()), **{kind: error(n, upgrade(n, kind).dequantize()) for kind in UPGRADES}}
              for n, c in codes.items()}
    numel = {n: int(c.q.size) for n, c in codes.items()}
    upgrades, spent = allocate(errors, numel, base, config.max_bytes - base_bytes)
    _apply(module, source, codes, config.embeddings, upgrades, upgrade)
    predicted = base_bytes + sum(tensor_bytes(numel[n], k) - tensor_bytes(numel[n], base) for n, k in upgrades.items())
    return upgrades, [{"kept_8bit": sum(k == EIGHT_BIT for k in upgrades.values()),
                       "kept_5bit": sum(k == "Q5_0" for k in upgrades.values()), "metric": None,
                       "bytes_all_4bit": base_bytes, "bytes_predicted": predicted}]


def _name(config: LLMWeightInt4) -> str:
    return "int4-rtn" if config.algorithm == "rtn" else "int4-awq"
