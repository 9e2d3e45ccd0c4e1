"""What a causal LM costs per token: prefill and decode tokens/s, time to first token, the KV cache, FLOPs per token,
the decode's memory-bandwidth roofline on this machine, energy per 1,000 generated tokens, and perplexity.

Generation is a hand-written greedy loop rather than ``model.generate`` so that every step can be timed on its own
(``generate`` returns only when all tokens are out): one prefill forward of the prompt, whose argmax is token 1, then
one-token forwards that reuse the KV cache — the work ``generate(do_sample=False)`` does, without its logits
processors. A test checks the tokens equal ``generate``'s.

Decode is memory-bound: each step reads every weight and the whole KV cache once (an input embedding that is not
also the output matrix is looked up, one row per token: :func:`step_read_bytes`). So its speed is set beside a
roofline, ``batch x read bandwidth / (weight bytes read + KV cache bytes)``, with the read bandwidth measured here (a
``torch.sum`` over a buffer several times the last-level cache, at the measurement's thread count).
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sizewise.core.errors import ConfigError
from sizewise.core.units import format_bytes
from sizewise.measure.card import (
    BandwidthStats,
    FlopsPerTokenStats,
    GenerationStats,
    KvCacheStats,
    LLMStats,
    PerplexityStats,
    ThroughputStats,
)
from sizewise.measure.energy import EnergySettings, carbon_for, measure_energy
from sizewise.measure.latency import OtherLoad, median_ci95, summarize, torch_threads
from sizewise.models.loaded import LoadedModel
from sizewise.tasks.perplexity import DEFAULT_MAX_TOKENS, PerplexityConfig, PerplexityResult

MIN_BANDWIDTH_BUFFER = 512 * 2**20
CACHE_MULTIPLE = 4  # the bandwidth buffer is at least this many times the last-level cache


@dataclass(frozen=True)
class LLMConfig:
    prompt_tokens: int = 128
    new_tokens: int = 32
    batch_size: int = 8  # the larger batch B; batch 1 is always measured
    runs: int = 5  # timed generations per batch size, after `warmup` untimed ones
    warmup: int = 1
    # the first DEFAULT_MAX_TOKENS tokens of the split, as `sizewise measure` scores by default (the card says so)
    perplexity: PerplexityConfig = field(default_factory=lambda: PerplexityConfig(max_tokens=DEFAULT_MAX_TOKENS))
    bandwidth: bool = True
    bandwidth_buffer_bytes: int | None = None  # None: max(512 MiB, 4 x last-level cache)
    energy_seconds: float = 2.0  # how long an energy counter (RAPL) is read while decoding, when one exists

    def __post_init__(self) -> None:
        for name in ("prompt_tokens", "batch_size", "runs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"LLM {name.replace('_', ' ')} must be a positive integer, got {value!r}")
        if not isinstance(self.new_tokens, int) or self.new_tokens < 2:
            raise ConfigError(f"LLM new tokens must be an integer >= 2 (token 1 comes from the prefill, decode "
                              f"speed from the rest), got {self.new_tokens!r}")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ConfigError(f"LLM warm-up runs must be a non-negative integer, got {self.warmup!r}")
        if self.bandwidth_buffer_bytes is not None and self.bandwidth_buffer_bytes < 2**20:
            raise ConfigError(f"bandwidth buffer must be at least 1 MiB, got {self.bandwidth_buffer_bytes} bytes")


# ---------------------------------------------------------------------------------------------------------- shapes

def _first(config: Any, *names: str) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return None


def model_shape(config: Any) -> dict[str, int]:
    """Layers, attention heads, KV heads and head size from a transformers config (GPT-2 names as fallbacks)."""
    layers = _first(config, "num_hidden_layers", "n_layer", "num_layers")
    heads = _first(config, "num_attention_heads", "n_head", "num_heads")
    hidden = _first(config, "hidden_size", "n_embd", "d_model")
    if not (layers and heads and hidden):
        raise ConfigError(f"cannot read layers / heads / hidden size from the model's config "
                          f"({type(config).__name__})", hint="measure a transformers causal LM")
    kv_heads = _first(config, "num_key_value_heads", "n_kv_heads", "multi_query_group_num") or heads
    if getattr(config, "multi_query", False):  # GPT-BigCode / Falcon-style multi-query attention
        kv_heads = 1
    head_dim = _first(config, "head_dim") or hidden // heads
    return {"layers": int(layers), "heads": int(heads), "kv_heads": int(kv_heads), "head_dim": int(head_dim),
            "hidden": int(hidden)}


def kv_cache_stats(config: Any, context: int, batch: int, bytes_per_element: int,
                   measured_bytes: int | None = None) -> KvCacheStats:
    s = model_shape(config)
    total = 2 * s["layers"] * s["kv_heads"] * s["head_dim"] * context * batch * bytes_per_element
    return KvCacheStats(context_tokens=context, batch_size=batch, layers=s["layers"], kv_heads=s["kv_heads"],
                        attention_heads=s["heads"], head_dim=s["head_dim"], bytes_per_element=bytes_per_element,
                        bytes=total, measured_bytes=measured_bytes)


def cache_tensors(cache: Any) -> list[torch.Tensor]:
    """The key and value tensors of a transformers cache (the ``layers`` API, the older lists, or tuples)."""
    if cache is None:
        return []
    if hasattr(cache, "layers"):
        return [t for layer in cache.layers for t in (getattr(layer, "keys", None), getattr(layer, "values", None))
                if isinstance(t, torch.Tensor)]
    if hasattr(cache, "key_cache"):
        return [t for t in (*cache.key_cache, *cache.value_cache) if isinstance(t, torch.Tensor)]
    return [t for pair in cache for t in pair if isinstance(t, torch.Tensor)]


def weights_bytes(module: torch.nn.Module) -> int:
    """Bytes of the parameters as stored (a torchao int8 weight: its int8 values and scales): what a decode step
    reads. ``parameters()`` yields a tied tensor once."""
    from sizewise.models.torch_quant import stored_tensors

    return sum(part.numel() * part.element_size() for p in module.parameters() for part in stored_tensors(p))


def step_read_bytes(module: torch.nn.Module) -> int:
    """The weight bytes a decode step reads, for its roofline: every parameter, except an input embedding that is not
    also the output matrix (its lookup reads one row per token, not the table)."""
    from sizewise.models.torch_quant import stored_tensors

    total = weights_bytes(module)
    inputs = module.get_input_embeddings() if hasattr(module, "get_input_embeddings") else None
    outputs = module.get_output_embeddings() if hasattr(module, "get_output_embeddings") else None
    table = getattr(inputs, "weight", None)
    if table is None or (outputs is not None and getattr(outputs, "weight", None) is table):
        return total
    stored = sum(part.numel() * part.element_size() for part in stored_tensors(table))
    return total - stored + stored // max(1, table.shape[0])


def _float_dtype(module: torch.nn.Module) -> torch.dtype:
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)


# ---------------------------------------------------------------------------------------------------------- FLOPs

def flops_per_token(module: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> FlopsPerTokenStats:
    """The analytic FLOPs per token at the prompt length, and the counted ones of one forward over that prompt."""
    from sizewise.measure.flops import count_flops

    shape = model_shape(module.config)
    context = int(inputs["input_ids"].shape[1])
    # parameters() yields a tied tensor once, as the same object the embedding module holds
    embeddings = {id(m.weight) for m in module.modules() if isinstance(m, torch.nn.Embedding)}
    non_embedding = sum(p.numel() for p in module.parameters() if id(p) not in embeddings)
    out = module.get_output_embeddings() if hasattr(module, "get_output_embeddings") else None
    out_weight = getattr(out, "weight", None)
    tied = out_weight.numel() if out_weight is not None and id(out_weight) in embeddings else 0
    width = shape["heads"] * shape["head_dim"]
    analytic = 2 * (non_embedding + tied) + 2 * 2 * shape["layers"] * context * width
    measured = coverage = None
    try:
        counted, _ = count_flops(module, {k: v[:1] for k, v in inputs.items()})
        measured, coverage = counted.total / context, counted.coverage
    except Exception:  # noqa: BLE001 - a cross-check that cannot run leaves the analytic figure standing
        pass
    return FlopsPerTokenStats(context_tokens=context, non_embedding_params=non_embedding,
                              tied_unembedding_params=tied, layers=shape["layers"], attention_width=width,
                              analytic=analytic, measured=measured, measured_coverage=coverage)


# ---------------------------------------------------------------------------------------------------------- bandwidth

def last_level_cache_bytes() -> int | None:
    base = "/sys/devices/system/cpu/cpu0/cache"
    best: tuple[int, int] | None = None
    try:
        for entry in os.listdir(base):
            if not entry.startswith("index"):
                continue
            with open(os.path.join(base, entry, "level"), encoding="ascii") as fh:
                level = int(fh.read().strip())
            with open(os.path.join(base, entry, "size"), encoding="ascii") as fh:
                text = fh.read().strip()
            factor = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
            size = int(text.rstrip("KMG")) * factor
            if best is None or level > best[0]:
                best = (level, size)
    except (OSError, ValueError):
        return None
    return best[1] if best else None


def measure_read_bandwidth(threads: int, buffer_bytes: int | None = None, runs: int = 7,
                           device: torch.device | str = "cpu") -> BandwidthStats:
    """Bytes per second a ``torch.sum`` reads from a float32 buffer too large for any cache."""
    device = torch.device(device)
    llc = last_level_cache_bytes() if device.type == "cpu" else None
    if buffer_bytes is None:
        buffer_bytes = max(MIN_BANDWIDTH_BUFFER, CACHE_MULTIPLE * (llc or 0))
        try:
            import psutil

            buffer_bytes = min(buffer_bytes, psutil.virtual_memory().available // 4)
        except Exception:  # noqa: BLE001 - no memory reading: keep the size
            pass
    n = max(1, buffer_bytes // 4)
    sync = _syncer(device)
    with torch_threads(threads), torch.inference_mode():
        x = torch.ones(n, dtype=torch.float32, device=device)  # ones, not empty: every page is touched before timing
        x.sum()
        sync()
        samples = []
        with OtherLoad() as load:
            for _ in range(runs):
                t0 = time.perf_counter_ns()
                x.sum()
                sync()
                samples.append(time.perf_counter_ns() - t0)
        del x
    seconds = np.asarray(samples, dtype=np.float64) / 1e9
    nbytes = n * 4
    lo, hi = median_ci95(seconds)
    versus = f", {nbytes / llc:.1f}x the {format_bytes(llc)} last-level cache" if llc else ""
    method = (f"torch.sum over a {format_bytes(nbytes)} float32 buffer{versus}, {threads} thread(s); "
              f"buffer bytes / median time of {runs} runs after one warm-up")
    return BandwidthStats(bytes_per_s=nbytes / float(np.median(seconds)), ci95_bytes_per_s=(nbytes / hi, nbytes / lo),
                          buffer_bytes=nbytes, last_level_cache_bytes=llc, runs=runs, threads=threads,
                          device=str(device), method=method, other_load_cores=load.cores)


# ---------------------------------------------------------------------------------------------------------- timing

def _syncer(device: torch.device):
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


@dataclass
class _Run:
    ttft_ns: int
    step_ns: list[int]
    total_ns: int
    decode_cpu_ns: int
    tokens: torch.Tensor
    cache: Any


class _Generator:
    """The greedy loop, adapted to the model's forward signature (``cache`` in transformers >= 5.2, else
    ``past_key_values``; ``logits_to_keep`` where supported, as ``generate`` uses it)."""

    def __init__(self, module: torch.nn.Module):
        params = inspect.signature(module.forward).parameters
        if "cache" in params:
            self.cache_kw = "cache"
        elif "past_key_values" in params:
            self.cache_kw = "past_key_values"
        else:
            raise ConfigError(f"{type(module).__name__}.forward takes no KV cache, so its decode speed cannot be "
                              f"measured", hint="measure a transformers causal LM (AutoModelForCausalLM)")
        self.extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        self.module = module
        self.device = next((p.device for p in module.parameters()), torch.device("cpu"))
        self.sync = _syncer(self.device)

    @staticmethod
    def _cache_of(out: Any) -> Any:
        cache = out.get("cache") if hasattr(out, "get") else None
        return cache if cache is not None else out.past_key_values

    def step(self, token: torch.Tensor, mask: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        out = self.module(input_ids=token, attention_mask=mask, use_cache=True, **{self.cache_kw: cache}, **self.extra)
        return out.logits[:, -1].argmax(-1, keepdim=True), self._cache_of(out)

    def run(self, input_ids: torch.Tensor, new_tokens: int) -> _Run:
        mask = torch.ones_like(input_ids)
        ones = mask.new_ones(input_ids.shape[0], 1)
        t0 = time.perf_counter_ns()
        out = self.module(input_ids=input_ids, attention_mask=mask, use_cache=True, **self.extra)
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        self.sync()
        first = last = time.perf_counter_ns()
        cpu0 = time.process_time_ns()
        cache, tokens, steps = self._cache_of(out), [token], []
        for _ in range(new_tokens - 1):
            mask = torch.cat([mask, ones], dim=1)
            token, cache = self.step(token, mask, cache)
            self.sync()
            now = time.perf_counter_ns()
            steps.append(now - last)
            last = now
            tokens.append(token)
        return _Run(ttft_ns=first - t0, step_ns=steps, total_ns=last - t0,
                    decode_cpu_ns=time.process_time_ns() - cpu0, tokens=torch.cat(tokens, dim=1), cache=cache)


def _throughput(samples_ms: np.ndarray, tokens_per_call: int) -> ThroughputStats:
    p50 = float(np.median(samples_ms))
    lo, hi = median_ci95(samples_ms)
    return ThroughputStats(tokens_per_call=tokens_per_call, calls=int(len(samples_ms)), p50_ms=p50,
                           ci95_p50_ms=(lo, hi), tokens_per_s=tokens_per_call / (p50 / 1e3),
                           ci95_tokens_per_s=(tokens_per_call / (hi / 1e3), tokens_per_call / (lo / 1e3)))


def prompt_ids(loaded: LoadedModel, batch: int, prompt_tokens: int) -> torch.Tensor:
    """``batch`` copies of a prompt of exactly ``prompt_tokens`` real tokens (no padding)."""
    enc = loaded.example_inputs(batch, prompt_tokens)
    ids, mask = enc["input_ids"], enc.get("attention_mask")
    if ids.shape[1] != prompt_tokens or (mask is not None and not bool(mask.all())):
        raise ConfigError(f"the tokenizer of '{loaded.reference}' made a prompt of "
                          f"{int(mask.sum(1)[0]) if mask is not None else ids.shape[1]} real tokens, not "
                          f"{prompt_tokens}", hint="pass a shorter --prompt-len")
    device = next((p.device for p in loaded.module.parameters()), torch.device("cpu"))
    return ids.to(device)


def _energy_step(gen: _Generator, run: _Run, batch: int):
    """One decode step at a fixed context, for an energy counter read over many steps: the step's entry in the cache
    is cropped off again after it."""
    cache, token = run.cache, run.tokens[:, -1:]
    mask = torch.ones(batch, cache_length(cache) + 1, dtype=torch.long, device=gen.device)

    def step() -> None:
        gen.step(token, mask, cache)
        cache.crop(-1)

    return step


def decode_step(loaded: LoadedModel, prompt_tokens: int) -> Callable[[], None]:
    """A greedy decode step of ``loaded`` (PyTorch) at a context of ``prompt_tokens`` + 1, to call again and again:
    each call's cache entry is cropped off after it. Call it in inference mode with the threads fixed."""
    gen = _Generator(loaded.module)
    return _energy_step(gen, gen.run(prompt_ids(loaded, 1, prompt_tokens), 2), 1)


def runtime_generation(loaded: LoadedModel, module: Any, config: LLMConfig, threads: int, energy: EnergySettings,
                       bandwidth: BandwidthStats | None, read_bytes: int, runtime: str,
                       kv_bytes_per_element: int) -> GenerationStats:
    """Greedy generation at batch 1 on a runtime that times itself: ``module.generate_timed(ids, new_tokens)`` returns
    a :class:`_Run`'s timings and ``module.decode_step()`` decodes one more token at a fixed context (llama.cpp, ONNX
    Runtime GenAI). The same statistics as :func:`measure_generation` computes for torch."""
    ids = prompt_ids(loaded, 1, config.prompt_tokens)[0].tolist()
    for _ in range(config.warmup):
        module.generate_timed(ids, config.new_tokens)
    runs = []
    with OtherLoad() as load:
        for _ in range(config.runs):
            runs.append(module.generate_timed(ids, config.new_tokens))
    steps_ms = np.asarray([s for r in runs for s in r.step_ns], dtype=np.float64) / 1e6
    ttft_ms = np.asarray([r.ttft_ns for r in runs], dtype=np.float64) / 1e6
    total_ms = np.asarray([r.total_ns for r in runs], dtype=np.float64) / 1e6
    cpu_ms_per_step = sum(r.decode_cpu_ns for r in runs) / 1e6 / len(steps_ms)
    context = config.prompt_tokens + config.new_tokens - 1
    kv = kv_cache_stats(loaded.module.config, context, 1, kv_bytes_per_element)
    decode = _throughput(steps_ms, 1)
    latency = summarize(steps_ms, runtime, 1, threads, config.warmup, other_load_cores=load.cores,
                        cpu_ms_per_call=cpu_ms_per_step)
    energy_stats = measure_energy(module.decode_step, latency, energy, seconds=config.energy_seconds)
    per_step = read_bytes + kv.bytes
    roofline = bandwidth.bytes_per_s / per_step if bandwidth else None
    lo, hi = median_ci95(ttft_ms)
    return GenerationStats(
        batch_size=1, runs=config.runs, warmup=config.warmup, prefill=_throughput(ttft_ms, config.prompt_tokens),
        decode=decode, ttft_p50_ms=float(np.median(ttft_ms)), ttft_ci95_ms=(lo, hi),
        generation_p50_ms=float(np.median(total_ms)), kv_cache=kv, bytes_per_step=per_step,
        roofline_tokens_per_s=roofline, roofline_fraction=decode.tokens_per_s / roofline if roofline else None,
        energy=energy_stats, carbon=carbon_for(energy_stats, energy), other_load_cores=load.cores)


@dataclass(frozen=True)
class RuntimeFacts:
    """What a self-timing LLM runtime's card says about itself (see :func:`measure_llm_runtime`)."""

    runtime: str  # the card's runtime name: llamacpp, ortgenai
    label: str  # how progress lines name it
    weight_bytes: int  # the file's tensors / the graph's initializers
    read_bytes: int  # the weight bytes a decode step reads (an embedding lookup reads a row, not its table)
    kv_bytes_per_element: int
    device: str
    dtype: str
    decoding: str
    roofline: str


def measure_llm_runtime(loaded: LoadedModel, module: Any, facts: RuntimeFacts, config: LLMConfig | None = None,
                        threads: int = 1, energy: EnergySettings | None = None, texts: list[str] | None = None,
                        split: str | None = None, progress=None) -> LLMStats:
    """The LLM section of the card on a runtime that times itself (llama.cpp, ONNX Runtime GenAI): FLOPs per token
    from the PyTorch twin, the machine's read bandwidth, :func:`runtime_generation`, perplexity on the runtime."""
    from sizewise.tasks.perplexity import perplexity

    config = config or LLMConfig()
    energy = energy or EnergySettings()
    step = progress or (lambda _msg: None)
    module.set_threads(threads)
    step("counting FLOPs per token (on the PyTorch twin)")
    with torch_threads(threads), torch.inference_mode():
        fpt = flops_per_token(loaded.module, {"input_ids": prompt_ids(loaded, 1, config.prompt_tokens)})
    bandwidth = None
    if config.bandwidth:
        step(f"measuring this machine's memory read bandwidth ({threads} thread(s))")
        bandwidth = measure_read_bandwidth(threads, config.bandwidth_buffer_bytes)
    step(f"timing greedy generation of {config.new_tokens} tokens on {facts.label} at batch 1")
    generation = [runtime_generation(loaded, module, config, threads, energy, bandwidth, facts.read_bytes,
                                     facts.runtime, facts.kv_bytes_per_element)]
    ppl = None
    if texts is not None:
        step(f"perplexity on the {split} split, on {facts.label}")
        started = time.perf_counter()
        result = perplexity(module, loaded.inputs.tokenizer, texts, config.perplexity)
        ppl = perplexity_stats(result, split or "?", config.perplexity.max_tokens)
        step(f"perplexity on {facts.label} took {time.perf_counter() - started:.0f} s")
    return LLMStats(prompt_tokens=config.prompt_tokens, new_tokens=config.new_tokens, threads=threads,
                    device=facts.device, dtype=facts.dtype, weights_bytes=facts.weight_bytes, flops_per_token=fpt,
                    generation=generation, bandwidth=bandwidth, perplexity=ppl, decoding=facts.decoding,
                    roofline=facts.roofline)


def cache_length(cache: Any) -> int:
    return int(cache.get_seq_length()) if hasattr(cache, "get_seq_length") else int(cache_tensors(cache)[0].shape[-2])


def measure_generation(loaded: LoadedModel, config: LLMConfig, batch: int, threads: int, energy: EnergySettings,
                       bandwidth: BandwidthStats | None, read_bytes: int) -> GenerationStats:
    gen = _Generator(loaded.module)
    ids = prompt_ids(loaded, batch, config.prompt_tokens)
    with torch_threads(threads), torch.inference_mode():
        for _ in range(config.warmup):
            gen.run(ids, config.new_tokens)
        runs = []
        with OtherLoad() as load:
            for _ in range(config.runs):
                if runs:
                    runs[-1].cache = None  # only the last run's cache is read: do not hold them all
                runs.append(gen.run(ids, config.new_tokens))
        steps_ms = np.asarray([s for r in runs for s in r.step_ns], dtype=np.float64) / 1e6
        ttft_ms = np.asarray([r.ttft_ns for r in runs], dtype=np.float64) / 1e6
        total_ms = np.asarray([r.total_ns for r in runs], dtype=np.float64) / 1e6
        cpu_ms_per_step = sum(r.decode_cpu_ns for r in runs) / 1e6 / len(steps_ms)
        last = runs[-1]
        tensors = cache_tensors(last.cache)
        element = tensors[0].element_size() if tensors else _float_dtype(loaded.module).itemsize
        # after N tokens the cache holds the prompt and tokens 1..N-1: the keys the last step attended to
        context = config.prompt_tokens + config.new_tokens - 1
        measured = sum(t.numel() * t.element_size() for t in tensors) if tensors else None
        kv = kv_cache_stats(loaded.module.config, context, batch, element, measured_bytes=measured)
        decode = _throughput(steps_ms, batch)
        latency = summarize(steps_ms, "torch", batch, threads, config.warmup, other_load_cores=load.cores,
                            cpu_ms_per_call=cpu_ms_per_step)
        energy_stats = measure_energy(_energy_step(gen, last, batch), latency, energy, seconds=config.energy_seconds)
    per_step = read_bytes + kv.bytes
    roofline = batch * bandwidth.bytes_per_s / per_step if bandwidth else None
    lo, hi = median_ci95(ttft_ms)
    return GenerationStats(
        batch_size=batch, runs=config.runs, warmup=config.warmup,
        prefill=_throughput(ttft_ms, batch * config.prompt_tokens), decode=decode,
        ttft_p50_ms=float(np.median(ttft_ms)), ttft_ci95_ms=(lo, hi),
        generation_p50_ms=float(np.median(total_ms)), kv_cache=kv, bytes_per_step=per_step,
        roofline_tokens_per_s=roofline, roofline_fraction=decode.tokens_per_s / roofline if roofline else None,
        energy=energy_stats, carbon=carbon_for(energy_stats, energy), other_load_cores=load.cores)


def perplexity_stats(result: PerplexityResult, split: str, max_tokens: int | None) -> PerplexityStats:
    return PerplexityStats(split=split, token_perplexity=result.token_perplexity,
                           word_perplexity=result.word_perplexity, bits_per_byte=result.bits_per_byte,
                           nll_sum_nats=result.nll_sum_nats, tokens_scored=result.tokens_scored,
                           text_tokens=result.text_tokens, words=result.words, utf8_bytes=result.utf8_bytes,
                           context_tokens=result.context_tokens, stride_tokens=result.stride_tokens,
                           windows=result.windows, prefix_token=result.prefix_token, truncated=result.truncated,
                           max_tokens=max_tokens, texts=result.texts, joiner=result.joiner)


def measure_llm(loaded: LoadedModel, config: LLMConfig | None = None, threads: int | None = None,
                energy: EnergySettings | None = None, texts: list[str] | None = None, split: str | None = None,
                progress=None) -> LLMStats:
    """Everything per token about a causal LM; with ``texts`` (the lines of ``split``), its perplexity too."""
    from sizewise.tasks.perplexity import model_max_positions, perplexity

    config = config or LLMConfig()
    threads = threads or torch.get_num_threads()
    energy = energy or EnergySettings()
    step = progress or (lambda _msg: None)
    module = loaded.module
    limit = model_max_positions(module)
    if limit and config.prompt_tokens + config.new_tokens > limit:
        raise ConfigError(f"--prompt-len {config.prompt_tokens} + --new-tokens {config.new_tokens} is more than "
                          f"model '{loaded.reference}' accepts ({limit} positions)",
                          hint=f"keep the two under {limit} together")
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    weight_bytes = weights_bytes(module)
    step("counting FLOPs per token")
    with torch_threads(threads):
        fpt = flops_per_token(module, {"input_ids": prompt_ids(loaded, 1, config.prompt_tokens)})
    bandwidth = None
    if config.bandwidth:
        step(f"measuring this machine's memory read bandwidth ({threads} thread(s))")
        bandwidth = measure_read_bandwidth(threads, config.bandwidth_buffer_bytes, device=device)
    generation = []
    for batch in sorted({1, config.batch_size}):
        step(f"timing greedy generation of {config.new_tokens} tokens at batch {batch}")
        generation.append(measure_generation(loaded, config, batch, threads, energy, bandwidth,
                                             step_read_bytes(module)))
    ppl = None
    if texts is not None:
        step(f"perplexity on the {split} split")
        with torch_threads(threads):
            result = perplexity(module, loaded.inputs.tokenizer, texts, config.perplexity)
        ppl = perplexity_stats(result, split or "?", config.perplexity.max_tokens)
    return LLMStats(prompt_tokens=config.prompt_tokens, new_tokens=config.new_tokens, threads=threads,
                    device=str(device), dtype=str(_float_dtype(module)).removeprefix("torch."),
                    weights_bytes=weight_bytes, flops_per_token=fpt, generation=generation, bandwidth=bandwidth,
                    perplexity=ppl)
