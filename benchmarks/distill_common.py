"""``benchmarks/results/distill.md`` is assembled from the sections the distillation benchmarks write into their JSON
files, so each script can be re-run alone without dropping the others' numbers."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from _common import ROOT, RESULTS

SCRIPTS = ("benchmarks/distill_common.py", "benchmarks/distill_sst2.py", "benchmarks/distill_stsb.py")

PARTS = ("distill_sst2.json", "distill_stsb.json", "distill_curve.json")


def render() -> Path:
    lines = ["# Distillation and transfer learning", "",
             "Each section below was written by the script its command names, on the machine it names."]
    for name in PARTS:
        path = RESULTS / name
        if path.is_file():
            lines += ["", json.loads(path.read_text())["markdown"].rstrip()]
    reading = RESULTS / "distill_reading.md"  # the written interpretation of the sections above
    if reading.is_file():
        lines += ["", reading.read_text().rstrip()]
    out = RESULTS / "distill.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def exact_command() -> str:
    """The invocation as it ran: folder, the environment variables a benchmark reads, interpreter and arguments
    (``_common.command()`` gives the repository-relative form, which hides a worktree or another checkout's venv)."""
    env = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in ("SIZEWISE_DATA", "PYTHONPATH", "SIZEWISE_BENCH_RESULTS")
                   if k in os.environ)
    argv = " ".join(shlex.quote(a) for a in [sys.executable, os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    return f"cd {ROOT} && {env + ' ' if env else ''}{argv}"


def scripts_state() -> str:
    """Whether the distillation scripts that ran are the committed ones (read-only ``git status``)."""
    try:
        changed = subprocess.run(["git", "status", "--porcelain", "--", *SCRIPTS], cwd=ROOT, capture_output=True,
                                 text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "scripts: state unknown (no git)"
    names = [line[3:] for line in changed if line.strip()]
    return ("scripts as committed" if not names
            else f"plus uncommitted edits to {', '.join(Path(n).name for n in names)} (the scripts as they ran)")
