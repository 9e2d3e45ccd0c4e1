"""Refuse a model that cannot fit in this machine's memory, before loading it.

A load that runs out of memory is not an error a user sees: the kernel's OOM killer ends the process with no message
(or the machine swaps for minutes first). The bytes a load will allocate are known from the files beforehand, so
sizewise compares them with the memory available and says what the model needs instead.
"""

from __future__ import annotations

import psutil

from sizewise.core.errors import ModelReferenceError
from sizewise.core.units import format_bytes

HINT = ("free memory or use a machine with more; `sizewise estimate` on its config.json gives a model's memory at "
        "each precision without loading it; a smaller model, or a GGUF file run on llama.cpp, needs less")


def check_fits(need_bytes: int, what: str, how: str) -> None:
    """Raise when ``need_bytes`` (what loading ``what`` allocates, computed as ``how`` says) exceed the memory
    available now."""
    available = psutil.virtual_memory().available
    if need_bytes > available:
        raise ModelReferenceError(f"{what} needs about {format_bytes(need_bytes)} of memory to load ({how}); this "
                                  f"machine has {format_bytes(available)} available", hint=HINT)
