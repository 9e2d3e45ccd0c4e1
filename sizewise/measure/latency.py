"""Latency that people can trust: warm-up, every call timed, percentiles, a confidence interval, fixed threads.

Each call is timed on its own (``perf_counter_ns``) rather than averaging a loop, so percentiles and the spread are
real. The 95% interval of the median is distribution-free (order statistics, normal approximation to the binomial),
because latency distributions are skewed and a mean ± 2 sd would mislead.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch

from sizewise.measure.card import LatencyStats, ThroughputPoint

NOISY_SPREAD = 0.25  # (p90 - p50) / p50 above this: the machine was busy or frequency-scaling
BUSY_MARGIN = 0.3  # other processes using this much more than the cores our threads leave free: latency inflated

# Between-run spread of a latency median on a shared VM: the same fp16 digits model measured in two trials of one
# search gave 0.0509 and 0.0539 ms (6%), far outside either run's own 95% interval of the median. Trials are timed
# minutes apart, so their intervals are widened by this much before one is called faster than another.
RUN_TO_RUN_TOLERANCE = 0.05


def machine_busy(other_load_cores: float | None, threads: int) -> bool:
    """True when other processes needed the cores our threads run on (not merely the ones they leave free)."""
    import psutil

    free = max(0, (psutil.cpu_count(logical=True) or 1) - threads)
    return (other_load_cores or 0.0) > free + BUSY_MARGIN


class OtherLoad:
    """CPU time other processes used during a block, in cores (machine busy time minus this process's own).

    The p90/p50 spread misses a steady competitor: with one of two cores taken, every parallel region of a
    2-thread pool waits for the descheduled thread, so all calls slow down alike and the spread stays small.
    """

    def __enter__(self) -> OtherLoad:
        import psutil

        self._proc = psutil.Process()
        self._t0 = time.perf_counter()
        self._sys0 = self._busy(psutil.cpu_times())
        self._own0 = self._own()
        return self

    @property
    def own_cpu_seconds(self) -> float:
        return self._own1 - self._own0

    @staticmethod
    def _busy(t) -> float:
        return t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)

    def _own(self) -> float:
        t = self._proc.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    def __exit__(self, *exc: object) -> None:
        import psutil

        wall = time.perf_counter() - self._t0
        self._own1 = self._own()
        self.wall_s = wall
        other = (self._busy(psutil.cpu_times()) - self._sys0) - (self._own1 - self._own0)
        self.cores = max(0.0, other / wall) if wall > 0 else 0.0


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_calls(fn: Callable[[], object], warmup: int = 3, min_runs: int = 20, max_runs: int = 2000,
               min_seconds: float = 1.0, max_seconds: float = 15.0) -> np.ndarray:
    """Call ``fn`` ``warmup`` times untimed, then time each call until enough runs and enough time have passed."""
    for _ in range(warmup):
        fn()
    samples: list[int] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
        elapsed = time.perf_counter() - start
        if len(samples) >= max_runs or elapsed >= max_seconds:
            break
        if len(samples) >= min_runs and elapsed >= min_seconds:
            break
    return np.asarray(samples, dtype=np.float64) / 1e6  # ms


def median_ci95(samples_ms: np.ndarray) -> tuple[float, float]:
    s = np.sort(samples_ms)
    n = len(s)
    half_width = 1.96 * math.sqrt(n) / 2
    lo = max(0, int(math.floor(n / 2 - half_width)))
    hi = min(n - 1, int(math.ceil(n / 2 + half_width)))
    return float(s[lo]), float(s[hi])


def summarize(samples_ms: np.ndarray, runtime: str, batch_size: int, threads: int, warmup: int,
              throughput: list[ThroughputPoint] | None = None, other_load_cores: float | None = None,
              cpu_ms_per_call: float | None = None) -> LatencyStats:
    p50, p90, p99 = (float(np.percentile(samples_ms, q)) for q in (50, 90, 99))
    spread = (p90 - p50) / p50 if p50 > 0 else 0.0
    return LatencyStats(
        runtime=runtime, batch_size=batch_size, threads=threads, runs=int(len(samples_ms)), warmup=warmup,
        p50_ms=p50, p90_ms=p90, p99_ms=p99, mean_ms=float(samples_ms.mean()),
        sd_ms=float(samples_ms.std(ddof=1)) if len(samples_ms) > 1 else 0.0, min_ms=float(samples_ms.min()),
        ci95_median_ms=median_ci95(samples_ms), spread=spread,
        noisy=spread > NOISY_SPREAD or machine_busy(other_load_cores, threads),
        throughput=throughput or [], other_load_cores=other_load_cores, cpu_ms_per_call=cpu_ms_per_call,
    )


def measure_latency(module: torch.nn.Module, make_inputs: Callable[[int], dict[str, torch.Tensor]], *,
                    batch_size: int, threads: int, runtime: str, sweep: tuple[int, ...] = (1, 8, 32),
                    min_seconds: float = 1.0, warmup: int = 3) -> LatencyStats:
    """Time ``module`` at ``batch_size``; then a shorter run per sweep batch size for throughput (items/s)."""
    from sizewise.models.onnx_module import OnnxModule

    if isinstance(module, OnnxModule):
        module.set_threads(threads)
    with torch_threads(threads), torch.inference_mode():
        inputs = make_inputs(batch_size)
        with OtherLoad() as load:
            samples = time_calls(lambda: module(**inputs), warmup=warmup, min_seconds=min_seconds)
        points = []
        for b in sorted(set(sweep) | {batch_size}):
            if b == batch_size:
                p50 = float(np.percentile(samples, 50))
            else:
                batch = make_inputs(b)
                p50 = float(np.percentile(time_calls(lambda: module(**batch), warmup=2, min_runs=5,
                                                     min_seconds=min_seconds / 4, max_seconds=5.0), 50))
            points.append(ThroughputPoint(batch_size=b, items_per_s=b / (p50 / 1e3), p50_ms=p50))
    cpu_ms = load.own_cpu_seconds * 1e3 / (len(samples) + warmup)
    return summarize(samples, runtime, batch_size, threads, warmup, points, other_load_cores=load.cores,
                     cpu_ms_per_call=cpu_ms)
