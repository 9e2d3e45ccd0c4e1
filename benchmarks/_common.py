"""What every benchmark script records: the machine, library versions, the commit, the exact command, a log line."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATA = Path(os.environ.get("SIZEWISE_DATA", ROOT.parent / "shared" / "data"))
VERSIONED = ("sizewise", "torch", "torch-pruning", "transformers", "onnxruntime", "numpy", "scipy")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = platform.processor() or "unknown CPU"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{model}, {os.cpu_count()} cores, {mem:.1f} GiB, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, no GPU")


def versions(names: tuple[str, ...] = VERSIONED) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_head() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "sizewise"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
        return head + (" (sizewise/ has uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def command() -> str:
    return " ".join([".venv/bin/python", shlex.quote(os.path.relpath(sys.argv[0], ROOT))]
                    + [shlex.quote(a) for a in sys.argv[1:]])
