"""The benchmark harness: what every script records and how it writes it.

- the header: the exact command, date, machine (CPU model, int8/bf16 features, cores), library versions, commit;
- stages cached as JSON: a stage whose output exists is reused unless the script was given ``--force``;
- Markdown tables from rows (dicts), so no script assembles ``| a | b |`` strings by hand;
- interleaved timing, through :func:`sizewise.measure.compare.time_interleaved` (the loop ``sizewise compare`` uses),
  with the per-round-ratio statistics the committed results were computed with.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# SIZEWISE_BENCH_RESULTS points a trial run at a scratch folder, so it never overwrites the committed results
RESULTS = Path(os.environ.get("SIZEWISE_BENCH_RESULTS", ROOT / "benchmarks" / "results"))
DATA = Path(os.environ.get("SIZEWISE_DATA", ROOT.parent / "shared" / "data"))
VERSIONED = ("sizewise", "torch", "torch-pruning", "transformers", "onnxruntime", "numpy", "scipy")
FORCE = False  # set by parse_args(): recompute cached stages


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- machine and header


def cpu_model() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"


def cpu_flags() -> dict[str, bool]:
    """The features that decide which kernels run (AVX2/AVX-512, VNNI, AMX), as sizewise's cards record them."""
    from sizewise.measure.environment import describe_environment

    return describe_environment().get("cpu_flags", {})


def flags_text(flags: Mapping[str, bool]) -> str:
    return ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in flags.items())


def machine(flags: bool = False) -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    text = (f"{cpu_model()}, {os.cpu_count()} cores, {mem:.1f} GiB, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, no GPU")
    return text + (f"; CPU features: {flags_text(cpu_flags())}" if flags else "")


def versions(names: tuple[str, ...] = VERSIONED) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def versions_text(names: tuple[str, ...] = VERSIONED) -> str:
    return ", ".join(f"{k} {v}" for k, v in versions(names).items())


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


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def new_meta(names: tuple[str, ...] = VERSIONED) -> dict[str, Any]:
    """Start of a run: finish it with :func:`finish_meta`, show it with :func:`header_lines`."""
    return {"date": dt.datetime.now().astimezone().isoformat(timespec="seconds"), "machine": machine(),
            "cpu_flags": cpu_flags(), "versions": versions(names), "git": git_state(), "command": command(),
            "load_before": os.getloadavg()[0], "t0": time.perf_counter()}


def finish_meta(meta: dict[str, Any]) -> dict[str, Any]:
    meta = dict(meta)
    meta["wall_s"] = time.perf_counter() - meta.pop("t0")
    meta["finished"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    meta["load_after"] = os.getloadavg()[0]
    return meta


def header_lines(meta: dict[str, Any]) -> list[str]:
    v = ", ".join(f"{k} {val}" for k, val in meta["versions"].items())
    flags = f"; CPU features: {flags_text(meta['cpu_flags'])}" if meta.get("cpu_flags") else ""
    return [f"- date: {meta['date']} (finished {meta['finished']})",
            f"- machine: {meta['machine']}{flags}",
            f"- versions: {v}; sizewise at git {meta['git']}",
            f"- produced by: `{meta['command']}` (run from the repository root); wall time of this run "
            f"{meta['wall_s'] / 60:.1f} min" + (f"; {meta['resumed']}" if meta.get("resumed") else ""),
            f"- load average (1 min) before / after: {meta['load_before']:.2f} / {meta['load_after']:.2f} on "
            f"{os.cpu_count()} cores"]


def short_header(title: str, *extra: str) -> list[str]:
    """A section's title and the lines a one-shot script (no meta kept) states about itself."""
    return [title, "", f"- command: `{command()}`; date {now_utc()}; commit {git_head()}",
            f"- machine: {machine(flags=True)}; {versions_text()}", *(f"- {e}" for e in extra), ""]


# --------------------------------------------------------------------------------------------- stages


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``parser`` plus ``--force``; remembers it for :func:`cached`."""
    global FORCE
    parser.add_argument("--force", action="store_true", help="recompute stages whose cached JSON output exists")
    args = parser.parse_args(argv)
    FORCE = args.force
    return args


def cached(path: Path, compute: Callable[[], dict[str, Any]], *, indent: int = 2,
           mark_reused: bool = True) -> dict[str, Any]:
    """The JSON at ``path`` if a finished stage left it there (and no ``--force``), else ``compute()`` saved there."""
    path = Path(path)
    if path.is_file() and not FORCE:
        log(f"reusing {path} (--force recomputes it)")
        data = json.loads(path.read_text())
        return data | {"reused": True} if mark_reused else data
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=indent, default=str))
    return result


# --------------------------------------------------------------------------------------------- run records


@dataclass(frozen=True)
class TrainRecord:
    """A finished ``sizewise train`` run directory, as its own ``card.json`` describes it: the one reader the
    scripts that start from a trained base (pruning, shrink, the baseline's write-up) share, so none assumes."""

    run_dir: Path
    card: dict[str, Any]
    step: dict[str, Any]  # the card's ``train`` step: config, validation metrics, seconds, details

    @classmethod
    def read(cls, run_dir: Path) -> TrainRecord | None:
        """The record, or None where the directory has no card with a ``train`` step (a base saved another way)."""
        card_path = Path(run_dir) / "card.json"
        if not card_path.is_file():
            return None
        card = json.loads(card_path.read_text())
        step = next((s for s in card.get("steps", []) if s["method"] == "train"), None)
        return None if step is None else cls(Path(run_dir), card, step)

    @property
    def config(self) -> dict[str, Any]:
        return self.step["config"]

    @property
    def training(self) -> dict[str, Any]:
        return self.step["details"]["training"]

    @property
    def epochs(self) -> list[dict[str, Any]]:
        return self.training["epochs"]

    @property
    def epoch_seconds(self) -> float:
        return sum(e["seconds"] for e in self.epochs)

    @property
    def test_metrics(self) -> dict[str, Any]:
        return self.card["after"]["metrics"]

    @property
    def environment(self) -> dict[str, Any]:
        """The final run's environment; older cards wrote its flag and library dicts as their ``repr``."""
        env = dict(self.card["after"].get("environment", {}))
        for key in ("cpu_flags", "libraries"):
            if isinstance(env.get(key), str):
                env[key] = ast.literal_eval(env[key])
        return env

    @property
    def written(self) -> str:
        """When the card was written (the last epoch's end), UTC."""
        stamp = os.path.getmtime(self.run_dir / "card.json")
        return dt.datetime.fromtimestamp(stamp, dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------- markdown


_RULE = {"l": "---", "r": "---:", "c": ":---:"}


def write_with_readings(result: dict[str, Any], notes: Sequence[str], json_path: Path, md_path: Path,
                        render: Callable[[dict[str, Any], list[str]], str]) -> None:
    """Save ``result`` and its Markdown. The readings (``--note``) travel in the JSON: given ones replace what it held,
    none keep it, so ``--render`` to fix one line of a table does not drop the readings written earlier."""
    if notes:
        result["notes"] = list(notes)
    json_path.write_text(json.dumps(result, indent=2, default=str))
    md_path.write_text(render(result, result.get("notes", [])))


def md_table(rows: Sequence[Mapping[str, Any] | Sequence[Any]], align: str = "",
             columns: Sequence[str] | None = None) -> list[str]:
    """Markdown table lines. Columns are the first row's keys unless given; ``align`` has one letter per column,
    ``l`` (the default), ``r`` or ``c``. Cells are shown with ``str`` (format numbers before); an empty one as
    ``| |``."""
    if columns is None:
        columns = list(rows[0]) if rows and isinstance(rows[0], Mapping) else []
    align = align.ljust(len(columns), "l")

    def line(cells) -> str:
        return "|" + "|".join(f" {c} " if str(c) else " " for c in cells) + "|"

    out = [line(columns), "|" + "|".join(_RULE[a] for a in align) + "|"]
    out += [line([r[c] for c in columns] if isinstance(r, Mapping) else r) for r in rows]
    return out


def floor_to(x: float, digits: int) -> float:
    """Round down: used for every ratio we claim, so a table never rounds in our favour."""
    f = 10 ** digits
    return math.floor(x * f + 1e-9) / f


def ceil_to(x: float, digits: int) -> float:
    f = 10 ** digits
    return math.ceil(x * f - 1e-9) / f


# --------------------------------------------------------------------------------------------- interleaved timing


class MachineLoad:
    """CPU used by *other* processes while the block runs (sizewise's ``OtherLoad``), and stolen by the hypervisor,
    in cores."""

    def __enter__(self) -> MachineLoad:
        import psutil

        from sizewise.measure.latency import OtherLoad

        self._steal0 = getattr(psutil.cpu_times(), "steal", 0.0)
        self._load = OtherLoad().__enter__()
        return self

    def __exit__(self, *exc) -> None:
        import psutil

        self._load.__exit__(*exc)
        self.wall_s = self._load.wall_s
        self.others_cores = self._load.cores
        self.steal_cores = (getattr(psutil.cpu_times(), "steal", 0.0) - self._steal0) / self.wall_s

    def as_dict(self) -> dict[str, float]:
        return {"wall_s": self.wall_s, "others_cores": self.others_cores, "steal_cores": self.steal_cores}


def ratio_summary(a_ms, b_ms) -> tuple[float, list[float]]:
    """Median of the per-round ratios a/b (> 1: b is faster) and its distribution-free 95% interval."""
    import numpy as np

    from sizewise.measure.latency import median_ci95

    r = np.asarray(a_ms) / np.asarray(b_ms)
    return float(np.median(r)), list(median_ci95(r))


def ratio_text(a_ms, b_ms) -> str:
    """b's speed over a's from interleaved rounds, as a table cell: the median ratio (floored) [95% interval] and a
    verdict that claims a difference only when the whole interval is on one side of 1."""
    value, (lo, hi) = ratio_summary(a_ms, b_ms)
    verdict = "faster" if lo > 1 else "slower" if hi < 1 else "no difference shown"
    return f"{floor_to(value, 2):.2f}x [{lo:.2f}, {hi:.2f}] {verdict}"


def time_modules(modules: Mapping[str, Any], inputs: dict, *, threads: int, rounds: int, seconds: float,
                 min_rounds: int = 10, order: str = "abba", warmup: int = 3, load: MachineLoad | None = None):
    """Per-module call times (ms), interleaved round by round on the same inputs at ``threads`` torch threads; with
    the machine load measured over the whole loop (warm-up included) unless the caller measures it."""
    import contextlib

    import torch

    from sizewise.measure.compare import time_interleaved
    from sizewise.measure.latency import torch_threads

    calls = {name: (lambda m=m: m(**inputs)) for name, m in modules.items()}
    with contextlib.ExitStack() as stack:
        if load is None:
            load = stack.enter_context(MachineLoad())
        stack.enter_context(torch_threads(threads))
        stack.enter_context(torch.inference_mode())
        times = time_interleaved(calls, max_rounds=rounds, max_seconds=seconds, min_rounds=min_rounds,
                                 warmup=warmup, order=order)
    return times, load


def interleaved(module_a, module_b, inputs: dict, *, pairs: int = 40, seconds: float = 20.0,
                threads: int = 1) -> dict[str, Any]:
    """``module_a`` (before) and ``module_b`` (after) call by call in ABBA order on the same inputs.

    Each one's median, the median of the per-pair ratios a/b with its 95% interval, and other processes' CPU use
    while it ran. torch threads are fixed; an onnxruntime module keeps its own session setting.
    """
    import numpy as np

    times, load = time_modules({"a": module_a, "b": module_b}, inputs, threads=threads, rounds=pairs,
                               seconds=seconds)
    ta, tb = times["a"], times["b"]
    median, ci = ratio_summary(ta, tb)
    return {"pairs": len(ta), "threads": threads, "before_p50_ms": float(np.median(ta)),
            "after_p50_ms": float(np.median(tb)), "ratio_median": median, "ratio_ci95": ci,
            "other_cores": load.others_cores}


def git_state() -> str:
    """The commit a run is at, and the benchmark scripts edited since (a result must say they were)."""
    edits = benchmark_edits()
    return git_head() + (f"; benchmark files edited and uncommitted at run time: {', '.join(edits)}" if edits else "")


def benchmark_edits() -> list[str]:
    """Benchmark scripts that differ from the commit the run is at (the result must say they were edited)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--", "benchmarks"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ["unknown (git status failed)"]
    return [line[3:] for line in out.splitlines() if line[3:].endswith(".py")]
