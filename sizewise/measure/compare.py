"""Is B faster than A, on this machine, now? Interleaved A/B timing with an interval on the speed-up.

Two latency cards taken minutes apart compare two machines: on a shared VM the load moves in between, and the same
model timed twice differed by 12% (benchmarks/results/shrink.md). Here A and B are called alternately, round by round,
on the same input tensors with the thread count fixed, so a change of load hits both alike. Each call is timed on its
own, as in :mod:`sizewise.measure.latency`.

The speed-up is median(A) / median(B). Its 95% interval is a paired bootstrap over rounds (seeded): the two calls of a
round are resampled together, which keeps what they share (the load at that moment) instead of treating A and B as
independent. A bootstrap covers sampling noise within this run only; the same pair re-run still moves by a few percent
(memory layout, frequency, which weights are in cache), so the interval is widened by ``RUN_TO_RUN_TOLERANCE`` before
B is called faster or slower, as the shrink search does for latencies. An interval that includes 1.0 after that is no
speed-up.

:func:`time_interleaved` is the loop alone, for any number of callables; the benchmarks use it with their own
statistics.
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sizewise.core.errors import ConfigError, InputShapeError
from sizewise.core.serialize import to_dict, write_json_atomic
from sizewise.measure.latency import (
    RUN_TO_RUN_TOLERANCE,
    OtherLoad,
    machine_busy,
    median_ci95,
    torch_threads,
)
from sizewise.models.loaded import LoadedModel

SCHEMA = "sizewise.compare/1"
ORDERS = ("abba", "random")
RUNTIMES = ("torch", "onnxruntime", "llamacpp", "ortgenai")
DECODE_CONTEXT = 128  # tokens of prompt before the timed decode step of a causal LM (seq_len overrides it)


def round_orders(names: Sequence[str], order: str = "abba", seed: int = 0) -> Iterator[list[str]]:
    """The call order of each round, endlessly.

    ``abba``: the names as given, then reversed, alternately (A B | B A | A B ...), so neither side always runs first.
    ``random``: a fresh seeded shuffle every round, never the same callable twice in a row across a round boundary
    (with two callables that leaves one order, A B | A B ..., its first callable drawn by the seed).
    With more than two callables a fixed reversed order would run the two end ones back to back at every boundary
    (warm caches: a bias of tens of percent on sub-millisecond models), so use ``random`` there.
    """
    names = list(names)
    if order == "abba":
        i = 0
        while True:
            yield names[:] if i % 2 == 0 else names[::-1]
            i += 1
    elif order == "random":
        rng, last = random.Random(seed), None
        while True:
            current = names[:]
            rng.shuffle(current)
            if len(current) > 1 and current[0] == last:
                current[0], current[1] = current[1], current[0]
            last = current[-1]
            yield current
    else:
        raise ConfigError(f"unknown interleaving order '{order}'", hint=f"choose one of: {', '.join(ORDERS)}")


def time_interleaved(calls: Mapping[str, Callable[[], object]], *, max_rounds: int, max_seconds: float,
                     min_rounds: int = 10, warmup: int = 3, order: str = "abba",
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Call every callable once per round, in :func:`round_orders` order, timing each call; per-callable ms.

    ``warmup`` untimed rounds come first, in the given order. Timing stops after ``max_rounds`` rounds, or after the
    first round that ends past ``max_seconds`` once ``min_rounds`` are done. Threads are the caller's to fix.
    """
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            calls[name]()
    times: dict[str, list[int]] = {name: [] for name in names}
    orders = round_orders(names, order, seed)
    start = time.perf_counter()
    for i in range(max_rounds):
        for name in next(orders):
            t0 = time.perf_counter_ns()
            calls[name]()
            times[name].append(time.perf_counter_ns() - t0)
        if i + 1 >= min_rounds and time.perf_counter() - start > max_seconds:
            break
    return {name: np.asarray(v, dtype=np.float64) / 1e6 for name, v in times.items()}


def bootstrap_speedup(a_ms: np.ndarray, b_ms: np.ndarray, resamples: int = 2000,
                      seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of median(a) / median(b), resampling whole rounds (paired)."""
    rng = np.random.default_rng(seed)
    n = len(a_ms)
    chunk = max(1, min(resamples, 2_000_000 // max(n, 1)))  # bounds memory at a few tens of MB for long runs
    ratios: list[np.ndarray] = []
    done = 0
    while done < resamples:
        k = min(chunk, resamples - done)
        idx = rng.integers(0, n, size=(k, n))
        ratios.append(np.median(a_ms[idx], axis=1) / np.median(b_ms[idx], axis=1))
        done += k
    lo, hi = np.percentile(np.concatenate(ratios), [2.5, 97.5])
    return float(lo), float(hi)


@dataclass(frozen=True)
class CompareConfig:
    batch_size: int = 1
    seq_len: int | None = None  # text models; None = the model's default (128)
    threads: int | None = None  # None = torch's current setting; the same for both sides and both runtimes
    runtime_a: str = "torch"
    runtime_b: str = "torch"
    seconds: float = 10.0  # timed rounds stop after the first round past this (once min_rounds are done)
    min_rounds: int = 20
    max_rounds: int = 20_000  # plenty for a median; bounds the bootstrap (resamples x rounds) to ~1 s
    warmup: int = 3  # untimed rounds first
    order: str = "abba"
    seed: int = 0  # of the random order and the bootstrap
    resamples: int = 2000
    tolerance: float = RUN_TO_RUN_TOLERANCE  # relative run-to-run spread added to each side of the interval

    def __post_init__(self) -> None:
        for name in ("batch_size", "min_rounds", "max_rounds", "resamples"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.seq_len is not None and (not isinstance(self.seq_len, int) or self.seq_len < 1):
            raise ConfigError(f"sequence length must be a positive integer, got {self.seq_len!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"threads must be a positive integer, got {self.threads!r}")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ConfigError(f"warmup must be a non-negative integer, got {self.warmup!r}")
        for side in ("runtime_a", "runtime_b"):
            if getattr(self, side) not in RUNTIMES:
                raise ConfigError(f"unknown runtime '{getattr(self, side)}' for {side}",
                                  hint=f"choose one of: {', '.join(RUNTIMES)}")
        if self.order not in ORDERS:
            raise ConfigError(f"unknown interleaving order '{self.order}'", hint=f"choose one of: {', '.join(ORDERS)}")
        if not self.seconds > 0:
            raise ConfigError(f"seconds must be > 0, got {self.seconds}")
        if self.min_rounds > self.max_rounds:
            raise ConfigError(f"min_rounds ({self.min_rounds}) is larger than max_rounds ({self.max_rounds})")
        if not 0 <= self.tolerance < 1:
            raise ConfigError(f"tolerance must be in [0, 1), got {self.tolerance}")


@dataclass(frozen=True)
class Comparison:
    model_a: str
    model_b: str
    runtime_a: str
    runtime_b: str
    batch_size: int
    seq_len: int | None
    threads: int
    rounds: int  # timed rounds: each has one call of A and one of B
    warmup: int
    order: str
    median_a_ms: float
    median_b_ms: float
    ci95_a_ms: tuple[float, float]  # 95% interval of each median (order statistics), for reading only
    ci95_b_ms: tuple[float, float]
    speedup: float  # median_a_ms / median_b_ms: above 1, B is faster
    speedup_ci95: tuple[float, float]  # paired bootstrap over rounds
    decision_interval: tuple[float, float]  # speedup_ci95 widened by the run-to-run tolerance: what the verdict uses
    tolerance: float
    outcome: str  # "faster" | "none" | "slower" (B against A)
    verdict: str
    same_inputs: bool  # False when B could not take A's inputs and got its own of the same batch and length
    seed: int
    resamples: int
    other_load_cores: float | None  # CPU used by other processes while timing, in cores
    warnings: list[str] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA
    # what one call is: a forward of the example inputs, or for two causal LMs one greedy decode step (what a user
    # waits for per generated token), at a context of seq_len (default DECODE_CONTEXT) tokens
    timed: str = "forward"

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def to_json(self, path: str | Path) -> Path:
        return write_json_atomic(path, self.to_dict())


def _floor2(x: float) -> str:
    """Rounded down: a speed-up is never shown larger than measured."""
    return f"{math.floor(x * 100 + 1e-9) / 100:.2f}"


def _ceil2(x: float) -> str:
    return f"{math.ceil(x * 100 - 1e-9) / 100:.2f}"


def judge(speedup: float, ci95: tuple[float, float], tolerance: float) -> tuple[str, str, tuple[float, float]]:
    """(outcome, verdict, decision interval) for a speed-up of B over A and its 95% interval."""
    lo, hi = ci95[0] * (1 - tolerance), ci95[1] * (1 + tolerance)
    shown = f"95% CI {_floor2(ci95[0])}-{_ceil2(ci95[1])}"
    if lo > 1.0:
        return "faster", f"B is {_floor2(speedup)}x faster ({shown})", (lo, hi)
    if hi < 1.0:
        return "slower", f"B is slower: {_floor2(speedup)}x the speed of A ({shown})", (lo, hi)
    return "none", (f"no speed-up beyond noise: {_floor2(speedup)}x ({shown}; widened by the "
                    f"{tolerance:.0%} run-to-run spread it includes 1.0)"), (lo, hi)


def _module_for(loaded: LoadedModel, runtime: str, seq_len: int | None, workdir: str):
    from sizewise.measure.api import _runtime_module

    runtime = "onnxruntime" if loaded.is_onnx else runtime  # an .onnx file runs on onnxruntime only, as in measure()
    Path(workdir).mkdir(parents=True, exist_ok=True)
    return _runtime_module(loaded, runtime, seq_len, workdir), runtime


def _inputs_for(a: LoadedModel, b: LoadedModel, config: CompareConfig):
    from sizewise.measure.api import _check_seq_len, _probe

    for loaded in (a, b):
        _check_seq_len(loaded, config.seq_len)
    inputs_a = a.example_inputs(config.batch_size, config.seq_len)
    _probe(a, inputs_a)
    try:
        _probe(b, inputs_a)
        return inputs_a, inputs_a, True
    except InputShapeError:
        inputs_b = b.example_inputs(config.batch_size, config.seq_len)
        _probe(b, inputs_b)
        return inputs_a, inputs_b, False


def _decode_call(loaded: LoadedModel, runtime: str, context: int, threads: int, workdir: str) -> Callable[[], None]:
    """One greedy decode step of a causal LM at a fixed context, on torch, llama.cpp or ORT GenAI."""
    from sizewise.measure.llm import decode_step, prompt_ids

    if runtime in ("llamacpp", "ortgenai"):  # runtimes that time themselves: a generation, then steps rewound
        Path(workdir).mkdir(parents=True, exist_ok=True)
        if runtime == "llamacpp":
            from sizewise.measure.llamacpp import llamacpp_module

            module = llamacpp_module(loaded, workdir, threads, context + 8)
        else:
            from sizewise.measure.ortgenai import ortgenai_module

            module = ortgenai_module(loaded, workdir, threads)
        module.generate_timed(prompt_ids(loaded, 1, context)[0].tolist(), 2)  # the context the steps decode at
        return module.decode_step
    if runtime != "torch":
        raise ConfigError(f"decode steps of a causal LM are timed on torch, llamacpp or ortgenai, not {runtime}",
                          hint="use --runtime torch, llamacpp or ortgenai")
    return decode_step(loaded, context)


def compare(a: LoadedModel, b: LoadedModel, config: CompareConfig | None = None) -> Comparison:
    """Time ``a`` and ``b`` interleaved and say whether ``b`` is faster than ``a`` beyond noise. Two causal LMs are
    compared on what a user waits for per token: one greedy decode step each, at the same context."""
    from sizewise.measure.environment import describe_environment
    from sizewise.models.onnx_module import OnnxModule

    config = config or CompareConfig()
    threads = config.threads or torch.get_num_threads()
    warnings: list[str] = []
    decoding = a.task == b.task == "causal-lm" and not (a.is_onnx or b.is_onnx)
    same, timed = True, "forward"
    if not decoding:
        inputs_a, inputs_b, same = _inputs_for(a, b, config)
        if not same:
            warnings.append(f"'{b.reference}' does not take the inputs of '{a.reference}': each was timed on its own "
                            f"example inputs of batch {config.batch_size}")
    elif config.batch_size != 1:
        raise ConfigError("decode steps of causal LMs are compared at batch 1", hint="drop --batch-size")
    with tempfile.TemporaryDirectory() as workdir:
        if decoding:
            context = config.seq_len or DECODE_CONTEXT
            timed = f"one greedy decode step at a context of {context + 1} tokens"
            runtime_a, runtime_b = config.runtime_a, config.runtime_b
            with torch_threads(threads), torch.inference_mode():  # the steps hold inference tensors (their caches)
                calls = {"a": _decode_call(a, runtime_a, context, threads, f"{workdir}/a"),
                         "b": _decode_call(b, runtime_b, context, threads, f"{workdir}/b")}
        else:
            mod_a, runtime_a = _module_for(a, config.runtime_a, config.seq_len, f"{workdir}/a")
            mod_b, runtime_b = _module_for(b, config.runtime_b, config.seq_len, f"{workdir}/b")
            for module in (mod_a, mod_b):
                if isinstance(module, OnnxModule):
                    module.set_threads(threads)
            calls = {"a": lambda: mod_a(**inputs_a), "b": lambda: mod_b(**inputs_b)}
        with torch_threads(threads), torch.inference_mode(), OtherLoad() as load:
            times = time_interleaved(calls, max_rounds=config.max_rounds, max_seconds=config.seconds,
                                     min_rounds=config.min_rounds, warmup=config.warmup, order=config.order,
                                     seed=config.seed)
    ta, tb = times["a"], times["b"]
    speedup = float(np.median(ta) / np.median(tb))
    ci = bootstrap_speedup(ta, tb, config.resamples, config.seed)
    outcome, verdict, interval = judge(speedup, ci, config.tolerance)
    if machine_busy(load.cores, threads):
        warnings.append(f"the machine was busy: other processes used {load.cores:.1f} cores while timing; both sides "
                        f"were slowed alike, but the interval is wider than on an idle machine")
    if len(ta) < 100:
        warnings.append(f"only {len(ta)} rounds fitted in {config.seconds:g} s: pass more seconds for a tighter "
                        f"interval")
    return Comparison(
        model_a=a.reference, model_b=b.reference, runtime_a=runtime_a, runtime_b=runtime_b,
        batch_size=config.batch_size, seq_len=config.seq_len, threads=threads, rounds=len(ta), warmup=config.warmup,
        order=config.order, median_a_ms=float(np.median(ta)), median_b_ms=float(np.median(tb)),
        ci95_a_ms=median_ci95(ta), ci95_b_ms=median_ci95(tb), speedup=speedup, speedup_ci95=ci,
        decision_interval=interval, tolerance=config.tolerance, outcome=outcome, verdict=verdict, same_inputs=same,
        seed=config.seed, resamples=config.resamples, other_load_cores=load.cores, warnings=warnings,
        environment=describe_environment(threads), timed=timed)
