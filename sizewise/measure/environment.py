"""The machine a measurement was taken on: without it, a latency number means nothing."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from functools import cache
from typing import Any

import psutil

# CPU features that decide which kernels run: int8 speed-ups need VNNI/AMX, bf16 needs AVX512_BF16/AMX.
_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8",
          "amx_bf16", "asimd", "sve")
_LIBRARIES = ("sizewise", "torch", "numpy", "transformers", "onnxruntime", "onnx", "safetensors")


@cache
def _cpuinfo() -> tuple[str, set[str], bool]:
    model, flags, hypervisor = platform.processor() or platform.machine(), set(), False
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and value.strip():
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    hypervisor = "hypervisor" in flags
    return model, flags, hypervisor


def rapl_energy_files() -> list[str]:
    base = "/sys/class/powercap"
    try:
        zones = [z for z in os.listdir(base) if z.count(":") == 1 and "rapl" in z]  # packages, not sub-zones
    except OSError:
        return []
    files = [os.path.join(base, z, "energy_uj") for z in zones]
    return [f for f in files if os.access(f, os.R_OK)]


def describe_environment(threads: int | None = None) -> dict[str, Any]:
    import torch

    model, flags, hypervisor = _cpuinfo()
    versions = {}
    for lib in _LIBRARIES:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            pass
    gpu = None
    if torch.cuda.is_available():
        gpu = {"name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count()}
    return {
        "cpu": model,
        "cpu_flags": {f: (f in flags) for f in _FLAGS if f in flags or f.startswith(("avx", "amx"))},
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "threads": threads if threads is not None else torch.get_num_threads(),
        "virtual_machine": hypervisor,
        "memory_bytes": psutil.virtual_memory().total,
        "gpu": gpu,
        "rapl": bool(rapl_energy_files()),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": versions,
    }
