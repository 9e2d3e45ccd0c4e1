"""Peak memory of inference, measured in a fresh child process so this process's allocations do not blur it.

The child unpickles the model and its inputs, records its resident set size, resets the kernel's high-water mark
(``/proc/self/clear_refs`` = 5, Linux >= 4.0) and runs inference; the peak minus the resident size before is what
inference itself needed. Where the reset is not allowed, a 1 ms sampling thread stands in (and the method says so).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import psutil
import torch

from sizewise.measure.card import MemoryStats


class PeakRss:
    """This process's resident set size, sampled every ``interval`` seconds by a thread while the block runs:
    ``start`` and ``peak`` (bytes). For a stage of a longer job (an LLM calibration); inference is measured in a
    child process instead (below)."""

    def __init__(self, interval: float = 0.02) -> None:
        self._process = psutil.Process()
        self._interval = interval
        self.start = self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def _read_hwm_bytes() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _child(module: torch.nn.Module, inputs: dict, threads: int, calls: int) -> tuple[int, str, int | None]:
    torch.set_num_threads(threads)
    module.eval()
    cuda = torch.cuda.is_available()
    before = psutil.Process().memory_info().rss
    if _reset_hwm() and _read_hwm_bytes() is not None:
        with torch.inference_mode():
            for _ in range(calls):
                module(**inputs)
        peak, method = _read_hwm_bytes() or before, "measured:rss-hwm-child-process"
    else:
        with PeakRss(interval=0.001) as rss, torch.inference_mode():
            for _ in range(calls):
                module(**inputs)
        peak, method = rss.peak, "measured:rss-sampled-1ms-child-process"
    return max(0, peak - before), method, (torch.cuda.max_memory_allocated() if cuda else None)


def measure_peak_memory(module: torch.nn.Module, inputs: dict, threads: int, calls: int = 3) -> MemoryStats:
    # spawn, not fork: a forked child would inherit this process's touched pages and thread pools.
    ctx = multiprocessing.get_context("spawn")
    env_threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            delta, method, cuda_peak = pool.submit(_child, module, inputs, threads, calls).result(timeout=600)
    except BrokenProcessPool:
        # A script without `if __name__ == "__main__":` cannot spawn children (they re-run the script). Measure here
        # instead, and say that this process's own allocations may blur it.
        before = torch.get_num_threads()
        try:
            delta, method, cuda_peak = _child(module, inputs, threads, calls)
        finally:
            torch.set_num_threads(before)
        method = method.replace("child-process", "in-process (no child: guard your script with "
                                                 "if __name__ == '__main__')")
    finally:
        if env_threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env_threads
    return MemoryStats(peak_rss_delta_bytes=delta, method=method, cuda_peak_bytes=cuda_peak)
