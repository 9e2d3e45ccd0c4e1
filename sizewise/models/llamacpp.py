"""A ``.gguf`` file run by llama.cpp (through llama-cpp-python), wrapped as an ``nn.Module`` like
:class:`~sizewise.models.onnx_module.OnnxModule`, so that sizewise's timers, memory probe and perplexity can drive it.

``forward(input_ids)`` evaluates each row from an empty KV cache and returns the logits of every position
(``logits_all=True``), which is what the sliding-window perplexity needs. :meth:`generate_timed` is the greedy loop of
:mod:`sizewise.measure.llm` on llama.cpp's own KV cache (prefill, argmax, then one-token evals), every step timed.

The weights are read into memory (``use_mmap=False``), as torch holds its own; each context (all-position logits for
scoring, last-position logits for generation) is opened on first use.

Weight repacking into llama.cpp's "extra buffer types" (its AMX and interleaved-CPU layouts) is turned off: the
llama-cpp-python wheel built natively on an AMX machine dies with SIGILL while repacking there, and llama-cpp-python
0.3.x has no ``Llama(...)`` argument for it, so the model parameters' default is patched while the model loads.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from sizewise.core.errors import ModelReferenceError
from sizewise.core.optional import require

EXTRA = "llamacpp"


@contextmanager
def _no_extra_buffer_types(llama_cpp):
    """``use_extra_bufts = False`` in the model parameters llama-cpp-python's ``Llama`` starts from."""
    module = llama_cpp.llama_cpp
    default = module.llama_model_default_params

    def params():
        p = default()
        if hasattr(p, "use_extra_bufts"):
            p.use_extra_bufts = False
        return p

    module.llama_model_default_params = params
    try:
        yield
    finally:
        module.llama_model_default_params = default


_OPEN: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """Free llama.cpp's models before the interpreter tears its modules down (llama-cpp-python's ``__del__`` then
    fails noisily on the already-unloaded C functions)."""
    for llm in list(_OPEN):
        try:
            llm.close()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def open_llama(path: str, threads: int, n_ctx: int, logits_all: bool):
    """A ``llama_cpp.Llama`` on ``path``: CPU, ``threads`` for prefill and decode, context ``n_ctx``."""
    llama_cpp = require("llama_cpp", EXTRA, "running GGUF files on llama.cpp")
    if not Path(path).is_file():
        raise ModelReferenceError(f"no GGUF file at {path}")
    try:
        with _no_extra_buffer_types(llama_cpp):
            llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=min(n_ctx, 512),
                                   n_threads=threads, n_threads_batch=threads, logits_all=logits_all,
                                   n_gpu_layers=0, use_mmap=False, verbose=False)
        _OPEN.add(llm)
        return llm
    except (ValueError, RuntimeError) as exc:  # llama-cpp-python raises ValueError "Failed to load model from file"
        raise ModelReferenceError(f"llama.cpp cannot load {path}: {str(exc).splitlines()[0][:300]}",
                                  hint="the file is truncated, or holds an architecture or tensor type this "
                                       "llama-cpp-python build does not know; upgrade llama-cpp-python") from exc


def llama_cpp_version() -> str | None:
    try:
        import llama_cpp
    except ImportError:
        return None
    return getattr(llama_cpp, "__version__", None)


@dataclass
class TimedGeneration:
    ttft_ns: int
    step_ns: list[int]
    total_ns: int
    decode_cpu_ns: int
    tokens: list[int]


class LlamaCppModule(nn.Module):
    """llama.cpp on a GGUF file. Picklable: the llama.cpp contexts are reopened from the path."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None, n_ctx: int = 2048, config: Any = None):
        super().__init__()
        self.path = str(path)
        self.threads = threads or max(1, torch.get_num_threads())
        self.n_ctx = int(n_ctx)
        self.config = config  # the transformers config of the same model: positions, heads, KV cache shape
        self._scorer = None  # logits for every position
        self._decoder = None  # logits of the last position only, as a generation needs

    def set_threads(self, threads: int) -> None:
        if threads != self.threads:
            self.threads = threads
            self._scorer = self._decoder = None

    def scorer(self):
        if self._scorer is None:
            self._scorer = open_llama(self.path, self.threads, self.n_ctx, logits_all=True)
        return self._scorer

    def decoder(self):
        if self._decoder is None:
            self._decoder = open_llama(self.path, self.threads, self.n_ctx, logits_all=False)
        return self._decoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: Any) -> Any:
        llm = self.scorer()
        rows = []
        for i, row in enumerate(input_ids.tolist()):
            if attention_mask is not None:
                row = [t for t, m in zip(row, attention_mask[i].tolist()) if m]  # left or right padding dropped
            if len(row) > self.n_ctx:
                raise ModelReferenceError(f"{len(row)} tokens do not fit llama.cpp's context of {self.n_ctx}")
            llm.reset()
            llm.eval(row)
            logits = np.array(llm.scores[:len(row)], dtype=np.float32, copy=True)
            if attention_mask is not None and len(row) < input_ids.shape[1]:
                full = np.zeros((input_ids.shape[1], logits.shape[1]), dtype=np.float32)
                keep = attention_mask[i].numpy().astype(bool)
                full[keep] = logits
                logits = full
            rows.append(torch.from_numpy(logits))
        return SimpleNamespace(logits=torch.stack(rows))

    def _last_logits(self, llm) -> np.ndarray:
        llama_cpp = require("llama_cpp", EXTRA, "running GGUF files on llama.cpp")
        ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(llm.n_vocab(),))

    def generate_timed(self, prompt: list[int], new_tokens: int) -> TimedGeneration:
        """Greedy generation of ``new_tokens`` after ``prompt``: token 1 from the prefill, the rest one eval each."""
        llm = self.decoder()
        llm.reset()
        t0 = time.perf_counter_ns()
        llm.eval(prompt)
        token = int(self._last_logits(llm).argmax())
        first = last = time.perf_counter_ns()
        cpu0 = time.process_time_ns()
        tokens, steps = [token], []
        for _ in range(new_tokens - 1):
            llm.eval([token])
            token = int(self._last_logits(llm).argmax())
            now = time.perf_counter_ns()
            steps.append(now - last)
            last = now
            tokens.append(token)
        return TimedGeneration(ttft_ns=first - t0, step_ns=steps, total_ns=last - t0,
                               decode_cpu_ns=time.process_time_ns() - cpu0, tokens=tokens)

    def decode_step(self) -> None:
        """One more decode step at the current context, then forgotten (llama-cpp-python's ``eval`` drops the KV
        cells from ``n_tokens`` on), so an energy counter can be read over many steps at a fixed context."""
        llm = self.decoder()
        token = int(self._last_logits(llm).argmax())
        llm.eval([token])
        llm.n_tokens -= 1

    def file_bytes(self) -> int:
        return Path(self.path).stat().st_size

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_scorer"] = state["_decoder"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        # loaded at once (not memory-mapped), as a torch module's weights are resident when it is unpickled: a peak
        # memory probe then sees the run, not the loading
        self.__dict__.update(state)
        self.scorer()
