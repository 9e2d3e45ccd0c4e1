"""Kill a sizewise command at a seeded random moment, run it again, and check that nothing finished was lost.

A command runs as a subprocess in its own session; at a moment drawn uniformly over the time an uninterrupted run
of it takes (measured once, by the reference run), the whole process group gets SIGKILL: no handler runs, no file
is closed, as when a machine loses power or the OOM killer strikes. The same command line is then run again until
it finishes, and the output folder is checked:

- the re-run exits 0;
- every epoch, step or trial that was finished when a kill struck is still there with the same numbers (a
  snapshot is read from the folder after each kill: the checkpoint, ``steps.json``, the Optuna study);
- nothing is there twice (epochs 1..N once each, steps once each, trial numbers unique, finished trials = target);
- every model folder on disk loads with ``sizewise.load`` (a ``.swz`` file's SHA-256 is verified on reading), and
  every JSON file parses;
- where the command is deterministic, the result equals the uninterrupted run's: for ``train`` and ``compress`` the
  weights bit for bit and the validation/test metrics; for ``shrink`` the finished trials' plans, states and
  validation metrics (latencies differ between runs and are ignored).

Used by the tests in this folder (a few kills per command) and by ``benchmarks/reliability.py`` (the long run).
The harness only reads what the commands write; it fixes nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SIZEWISE = str(Path(sys.executable).with_name("sizewise"))
STUDY = "sizewise-shrink"
# one thread everywhere: the commands are timed against a reference run, and the machine is shared
LEAN_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "0",
            "RAY_DISABLE_USAGE_STATS": "1", "COLUMNS": "120", "NO_COLOR": "1"}


# What the harness found and is not fixed yet (name -> where and why); a difference an episode shows is listed under
# one of these only when it is explained by it. The five the first long run found (a killed trial never re-run, a
# live worker's trial failed by another, --trials overshot by sharing workers, one sampler seed for all workers,
# train --seed not fixing the initial weights) are fixed; see benchmarks/results/reliability.md.
KNOWN_ISSUES: dict[str, str] = {}


# --------------------------------------------------------------------------------------------- running and killing


@dataclass
class RunResult:
    killed: bool  # SIGKILL was sent (the process was still running at the kill moment)
    returncode: int | None
    seconds: float
    log: Path


def run_once(argv: list[str], log: Path, kill_at: float | None = None, timeout: float = 900,
             cwd: Path | None = None, env: dict[str, str] | None = None) -> RunResult:
    """Run ``argv`` in its own session; SIGKILL its process group ``kill_at`` seconds after the start, if it still
    runs then. Output goes to ``log`` (appended). A run past ``timeout`` is killed and reported as rc None."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"\n$ {' '.join(argv)}   (kill at {kill_at if kill_at is None else round(kill_at, 2)} s)\n")
        fh.flush()
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd,
                                env={**os.environ, **LEAN_ENV, **(env or {})})
        limit = timeout if kill_at is None else min(kill_at, timeout)
        try:
            rc = proc.wait(timeout=limit)
            return RunResult(False, rc, time.monotonic() - started, log)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            if kill_at is not None and kill_at <= timeout:
                return RunResult(True, None, time.monotonic() - started, log)
            fh.write(f"\n[harness] timed out after {timeout:.0f} s\n")
            return RunResult(False, None, time.monotonic() - started, log)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group and wait until no member is left (children included)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)  # a member still exists (a child being reaped)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def log_tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------- what a folder holds


def _plain(value: Any) -> Any:
    """JSON-comparable form (tuples as lists, floats as they are: equality is exact on purpose)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _epoch_key(stats: dict) -> tuple:
    # everything an epoch produced except its wall time
    return tuple(_plain(stats.get(k)) for k in ("train_loss", "train_accuracy", "val_accuracy", "lr"))


def _load_checkpoint_history(path: Path) -> list[dict] | None:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=False)  # our own file
    except Exception as exc:  # a torn checkpoint is a finding, not a harness crash
        return [{"unreadable": f"{type(exc).__name__}: {exc}"}]
    return list(state.get("history", []))


def _digest(folder: Path) -> str:
    """SHA-256 over a model folder's weight files (names and bytes)."""
    h = hashlib.sha256()
    for f in sorted(folder.glob("*")):
        if f.is_file() and f.suffix in (".safetensors", ".swz", ".onnx", ".data", ".gguf"):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def train_snapshot(out: Path) -> dict[str, Any]:
    """Finished epochs of a ``sizewise train`` run: from steps.json once the step finished (its checkpoint is then
    deleted), else from the checkpoint."""
    log = _read_json(out / "steps.json")
    if log and log.get("steps"):
        history = (log["steps"][0].get("details") or {}).get("training", {}).get("epochs", [])
        where = "steps.json"
    else:
        ckpt = out / "steps" / "01-train" / "work" / "checkpoint.pt"
        history = _load_checkpoint_history(ckpt) if ckpt.is_file() else []
        where = "the checkpoint" if ckpt.is_file() else "nothing yet"
    numbers = [e.get("epoch") for e in history]
    return {"items": {f"epoch {e.get('epoch')}": _epoch_key(e) for e in history}, "numbers": numbers,
            "where": f"{len(history)} epoch(s) in {where}" if history else "no epoch finished",
            "done": bool(_read_json(out / "card.json"))}


def _step_epochs(details: dict) -> list[dict]:
    return ((details or {}).get("training") or {}).get("epochs") or []


def compress_snapshot(out: Path) -> dict[str, Any]:
    """Finished steps of a recipe run (steps.json, with their saved model's weights digest), and the epochs the
    unfinished step has checkpointed."""
    log = _read_json(out / "steps.json") or {"steps": []}
    items: dict[str, Any] = {}
    numbers, unlisted = [], []
    for s in log["steps"]:
        numbers.append(s["index"])
        model_dir = Path(s["model_dir"])  # as the run wrote it: absolute, since the harness passes absolute --out
        items[f"step {s['index'] + 1} ({s['method']})"] = (_plain(s["metrics"]),
                                                           _digest(model_dir) if model_dir.is_dir() else "gone")
        epochs = _step_epochs(s.get("details"))
        for e in epochs:
            items[f"step {s['index'] + 1} epoch {e['epoch']}"] = _epoch_key(e)
        if not epochs:  # a method that trains without listing its epochs (gradual pruning): its checkpointed
            unlisted.append(f"step {s['index'] + 1} epoch ")  # epochs can only be checked through the final weights
    for ckpt in sorted((out / "steps").glob("*/work/**/checkpoint.pt")) if (out / "steps").is_dir() else []:
        folder = ckpt.relative_to(out / "steps").parts[0]  # "02-finetune"
        index = int(folder.split("-", 1)[0])
        if ckpt.parent != out / "steps" / folder / "work":
            continue  # a tagged sub-training (not reported epoch by epoch in the step's details)
        for e in _load_checkpoint_history(ckpt) or []:
            if "unreadable" in e:
                items[f"step {index} checkpoint"] = e["unreadable"]
            else:
                items.setdefault(f"step {index} epoch {e['epoch']}", _epoch_key(e))
    epochs = sum(1 for k in items if " epoch " in k)
    return {"items": items, "numbers": numbers, "unlisted": unlisted,
            "where": f"{len(numbers)} step(s) in steps.json, {epochs} epoch(s) of training recorded",
            "done": bool(_read_json(out / "card.json"))}


@functools.cache
def _storage(url: str) -> Any:
    """The storage to read a study through. A database URL gets one RDBStorage per URL for the whole test run:
    ``optuna.load_study(storage=url)`` builds a new engine with its own connection pool each call, and a loop polling
    every 50 ms left PostgreSQL with no free connection slots for the search under test (seen in CI)."""
    if url.startswith("sqlite"):
        return url
    import optuna

    return optuna.storages.RDBStorage(url)


def study_trials(storage: str, study: str = STUDY) -> list[Any]:
    """The study's trials (FrozenTrial), or [] when there is no such study yet."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=study, storage=_storage(storage)).get_trials(deepcopy=False)
    except KeyError:
        return []


def poll_states(storage: str, study: str = STUDY) -> dict[int, str]:
    """trial number -> state name, for a loop that waits on a running search; {} while the study cannot be read.
    SQLite is read through a read-only connection: opening it with optuna would create its tables, racing the
    search that is creating them ("table ... already exists", in either process)."""
    if storage.startswith("sqlite:///"):
        import sqlite3

        path = Path(storage.removeprefix("sqlite:///"))
        if not path.is_file():
            return {}
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
                rows = db.execute("SELECT t.number, t.state FROM trials t JOIN studies s ON s.study_id = t.study_id "
                                  "WHERE s.study_name = ?", (study,)).fetchall()
        except sqlite3.Error:  # no tables yet, or locked: try again at the next poll
            return {}
        return {number: state for number, state in rows}
    try:
        return {t.number: t.state.name for t in study_trials(storage, study)}
    except Exception:  # sqlalchemy's OperationalError and friends: try again at the next poll
        return {}


def finished_trials(trials: list[Any]) -> dict[int, dict]:
    """number -> stored outcome, for the trials the study holds as finished with an outcome (as search.py reads
    them)."""
    from optuna.trial import TrialState

    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return {t.number: t.user_attrs["outcome"] for t in trials if t.state in done and "outcome" in t.user_attrs}


def _trial_key(o: dict) -> tuple:
    return (o["state"], _plain((o.get("plan") or {}).get("steps")), o.get("metric"), o.get("proxy_metric"))


def shrink_snapshot(out: Path, storage: str | None = None) -> dict[str, Any]:
    """Finished trials of a search, read from its study (the source of truth), plus the trials left RUNNING."""
    from optuna.trial import TrialState

    db = out / "study.db"
    if storage is None and not db.is_file():
        return {"items": {}, "numbers": [], "where": "no study yet", "done": False, "running": []}
    trials = study_trials(storage or f"sqlite:///{db.resolve()}")
    finished = finished_trials(trials)
    running = [t.number for t in trials if t.state == TrialState.RUNNING]
    results = _read_json(out / "results.json") or {}
    return {"items": {f"trial {n}": _trial_key(o) for n, o in finished.items()}, "numbers": sorted(finished),
            "where": f"{len(finished)} finished trial(s) in the study", "running": running,
            "done": bool(results.get("chosen") and (results["chosen"] or {}).get("test")),
            "states": {t.number: t.state.name for t in trials}}


# --------------------------------------------------------------------------------------------- checks


def check_artifacts(out: Path) -> tuple[list[str], list[str]]:
    """(problems, notes): every model folder loads (sizewise.load; a .swz is checksum-verified on reading) and every
    JSON file parses; leftovers of interrupted atomic writes (hidden temporary entries) are notes."""
    import sizewise
    from sizewise.models import compressed_format

    problems, notes = [], []
    hidden = sorted(p for p in out.rglob(".*")
                    if not any(part.startswith(".") for part in p.relative_to(out).parts[:-1]))
    hidden = [p for p in hidden if p.name not in (".write-test", ".results.lock")]  # a lock file, kept by design
    for p in hidden:
        notes.append(f"leftover temporary entry {p.relative_to(out)}")
    for manifest in sorted(out.rglob("sizewise-model.json")):
        folder = manifest.parent
        if any(part.startswith(".") for part in folder.relative_to(out).parts):
            continue  # inside a leftover temporary folder: not an artifact
        try:
            for swz in folder.glob(f"*{compressed_format.SUFFIX}"):
                compressed_format.read(swz)  # raises on a checksum mismatch
            sizewise.load(str(folder))
        except Exception as exc:
            problems.append(f"{folder.relative_to(out)} does not load: {type(exc).__name__}: {str(exc)[:200]}")
    for path in sorted(out.rglob("*.json")):
        if any(part.startswith(".") for part in path.relative_to(out).parts):
            continue
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problems.append(f"{path.relative_to(out)} is not valid JSON: {exc}")
    return problems, notes


def compare_to_snapshots(final: dict[str, Any], snapshots: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(lost, changed): items finished at some kill that the final folder no longer holds, or holds with other
    numbers."""
    lost, changed = [], []
    for i, snap in enumerate(snapshots, 1):
        for key, value in snap["items"].items():
            if any(key.startswith(prefix) for prefix in final.get("unlisted", ())):
                continue
            if key not in final["items"]:
                lost.append(f"{key} (finished at kill {i})")
            elif final["items"][key] != value:
                changed.append(f"{key}: {value} at kill {i}, {final['items'][key]} at the end")
    return sorted(set(lost)), sorted(set(changed))


def duplicates_in(numbers: list) -> list:
    seen, dups = set(), []
    for n in numbers:
        if n in seen:
            dups.append(n)
        seen.add(n)
    return dups


def _state_dict(folder: Path) -> dict:
    import sizewise

    return sizewise.load(str(folder)).module.state_dict()


def same_weights(a: Path, b: Path) -> str | None:
    """None when the two model folders hold bit-identical tensors, else what differs."""
    import torch

    sa, sb = _state_dict(a), _state_dict(b)
    if sa.keys() != sb.keys():
        return f"different tensors: {sorted(set(sa) ^ set(sb))[:5]}"
    diff = [k for k in sa if not (sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]))]
    return f"{len(diff)} tensor(s) differ, e.g. {diff[:3]}" if diff else None


def _card_metrics(out: Path) -> dict:
    card = _read_json(out / "card.json") or {}
    return {k: v for k, v in (card.get("after") or {}).get("metrics", {}).items()}


# --------------------------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Command:
    """One command under test: its argv for an output folder, how to read its progress, what "finished" means, and
    how to compare a result with the uninterrupted one."""

    name: str
    argv: Callable[[Path], list[str]]
    snapshot: Callable[[Path], dict[str, Any]]
    expected_numbers: Callable[[Path], list | None]  # the numbers a finished run must hold exactly (None: any)
    deterministic: bool = True

    def differences(self, out: Path, reference: Path) -> list[str]:
        """What differs between a resumed result and the uninterrupted one (empty: equal)."""
        return COMPARE[self.name](out, reference)


def _test_metrics_differ(out: Path, ref: Path) -> list[str]:
    ma, mb = _card_metrics(out), _card_metrics(ref)
    return [] if ma == mb else [f"test metrics {ma} vs {mb} uninterrupted"]


def _compare_train(out: Path, ref: Path) -> list[str]:
    diffs = []
    w = same_weights(out / "model", ref / "model")
    if w:
        diffs.append(f"final weights: {w}")
    a, b = train_snapshot(out)["items"], train_snapshot(ref)["items"]
    if a != b:
        diffs.append(f"epoch history differs: {sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))}")
    return diffs + _test_metrics_differ(out, ref)


def _compare_compress(out: Path, ref: Path) -> list[str]:
    diffs = []
    w = same_weights(out / "model", ref / "model")
    if w:
        diffs.append(f"final weights: {w}")
    sa = {s["index"]: (s["method"], _plain(s["metrics"])) for s in _read_json(out / "steps.json")["steps"]}
    sb = {s["index"]: (s["method"], _plain(s["metrics"])) for s in _read_json(ref / "steps.json")["steps"]}
    if sa != sb:
        diffs.append(f"step metrics differ: {[k for k in set(sa) | set(sb) if sa.get(k) != sb.get(k)]}")
    return diffs + _test_metrics_differ(out, ref)


def trial_essence(out: Path) -> list[tuple]:
    """The finished trials (complete or stopped early) as (plan, state, validation metric), sorted: what a search
    found, without trial numbers or latencies."""
    results = _read_json(out / "results.json") or {"trials": []}
    # a trial's plan is named after its number ("trial 3"): the steps are the plan
    rows = [(json.dumps((t["plan"] or {}).get("steps"), sort_keys=True), t["state"], t["metric"])
            for t in results["trials"] if t["state"] in ("complete", "pruned")]
    return sorted(rows, key=lambda r: (r[0], r[1], -1 if r[2] is None else r[2]))


def _compare_shrink(out: Path, ref: Path) -> list[str]:
    a, b = trial_essence(out), trial_essence(ref)
    diffs = []
    if a != b:
        only_a = [r for r in a if r not in b]
        only_b = [r for r in b if r not in a]
        diffs.append(f"finished trials differ: resumed run only {_short(only_a)}; uninterrupted only {_short(only_b)}")
    ca = (_read_json(out / "results.json") or {}).get("chosen") or {}
    cb = (_read_json(ref / "results.json") or {}).get("chosen") or {}
    if ca.get("description") != cb.get("description"):
        diffs.append(f"chosen {ca.get('description')!r} vs {cb.get('description')!r} uninterrupted")
    return diffs


def _short(rows: list[tuple]) -> list[str]:
    out = []
    for plan, state, metric in rows:
        steps = json.loads(plan) or []
        shown = [(s["method"], ",".join(f"{k}={v}" for k, v in (s["config"] or {}).items() if k == "sparsity"))
                 for s in steps]
        what = " -> ".join(f"{method}({sparsity})" for method, sparsity in shown)
        out.append(f"{what} {state} {metric}")
    return out


def _compare_llm(out: Path, ref: Path) -> list[str]:
    """The GGUF file bit for bit (read back through transformers would only dequantize it) and the test metrics."""
    diffs = []
    a, b = _digest(out / "model"), _digest(ref / "model")
    if a != b:
        diffs.append(f"model file digest {a} vs {b} uninterrupted")
    return diffs + _test_metrics_differ(out, ref)


COMPARE = {"train": _compare_train, "compress": _compare_compress, "shrink": _compare_shrink, "llm": _compare_llm}


def initial_model(folder: Path, seed: int = 0) -> Path:
    """An untrained digits CNN saved once, so every run of ``train`` starts from the same weights: ``sizewise train
    zoo:NAME --seed S`` does not seed the architecture's initialisation (see test_kill_resume.py), and a resumed
    run could not be compared bit for bit with an uninterrupted one otherwise."""
    import torch

    import sizewise

    if not (folder / "model" / "sizewise-model.json").is_file():
        torch.manual_seed(seed)
        sizewise.save_model(sizewise.load("zoo:digits-cnn"), folder / "model")
    return folder


def train_command(model: str | Path = "zoo:digits-cnn", epochs: int = 8) -> Command:
    return Command("train", lambda out: [SIZEWISE, "train", str(model), "--data", "digits", "--out", str(out),
                                         "--epochs", str(epochs), "--seed", "0", "--threads", "1", "--no-memory",
                                         "--resume"],
                   train_snapshot, lambda out: list(range(1, epochs + 1)))


def compress_command(model: Path, recipe: str = "deep-compression") -> Command:
    def expected(out: Path) -> list:
        from sizewise.pipeline.plan import load_plan

        return list(range(len(load_plan(recipe).steps)))

    return Command("compress", lambda out: [SIZEWISE, "compress", str(model), "--recipe", recipe, "--data", "digits",
                                            "--out", str(out), "--threads", "1", "--no-memory"],
                   compress_snapshot, expected)


def tiny_causal_lm(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """A 2-layer Llama (64 wide, a 512-token BPE vocabulary) and a folder of text (train/valid/test), written once:
    the smallest model an LLM calibration (int4-awq: NNCF's AWQ and scale estimation, then a GGUF file) runs on
    in seconds, so it can be killed 20 times. The text is seeded random words: calibration needs no meaning."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    model_dir, text_dir = folder / "model", folder / "text"
    if (model_dir / "config.json").is_file() and (text_dir / "test.txt").is_file():
        return model_dir, text_dir
    rng = random.Random(seed)
    words = ["".join(rng.choice("etaoinshrdlucmfwypvbgk") for _ in range(rng.randint(2, 8))) for _ in range(400)]
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(12, 30))) + "." for _ in range(360)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=512, special_tokens=["<s>", "</s>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                                     pad_token="</s>")
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                      num_key_value_heads=2, intermediate_size=128, vocab_size=len(tokenizer),
                                      max_position_embeddings=256, tie_word_embeddings=True, bos_token_id=0,
                                      eos_token_id=1, pad_token_id=1)
    config.architectures = ["LlamaForCausalLM"]
    transformers.LlamaForCausalLM(config).eval().save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    text_dir.mkdir(parents=True, exist_ok=True)
    for name, part in (("train.txt", lines[:240]), ("valid.txt", lines[240:300]), ("test.txt", lines[300:])):
        (text_dir / name).write_text("\n".join(part) + "\n", encoding="utf-8")
    return model_dir, text_dir


def llm_command(model: Path, text: Path, method: str = "int4-awq") -> Command:
    """An LLM calibration: ``quantize --method int4-awq`` runs as a one-step plan (resumable like a recipe) and
    writes a GGUF file measured on llama.cpp; deterministic, so a resumed run must write the same bytes."""
    return Command("llm", lambda out: [SIZEWISE, "quantize", str(model), "--data", str(text), "--method", method,
                                       "--calibration-samples", "16", "--out", str(out), "--threads", "1",
                                       "--no-memory"],
                   compress_snapshot, lambda out: [0])


# objective size: bytes are exact, so the choice of a resumed search can be compared with an uninterrupted one's; a
# latency choice among candidates within noise of each other follows the timings, which no two runs share
SHRINK_FLAGS = ("--finetune-epochs", "1", "--threads", "1", "--methods", "channel,int8-dynamic",
                "--compare-seconds", "0.5", "--objective", "size")


def shrink_command(model: Path, trials: int = 3, extra: tuple[str, ...] = ()) -> Command:
    def expected(out: Path) -> None:
        return None  # checked by shrink_totals: failed trials may add numbers

    return Command("shrink", lambda out: [SIZEWISE, "shrink", str(model), "--data", "digits", "--out", str(out),
                                          "--trials", str(trials), *SHRINK_FLAGS, *extra],
                   shrink_snapshot, expected)


def shrink_totals(out: Path, trials: int, storage: str | None = None) -> list[str]:
    """A finished search holds exactly ``trials`` finished (complete or stopped-early) trials, results.json lists
    each study trial once, and every complete trial's folder is there."""
    problems = []
    results = _read_json(out / "results.json") or {"trials": []}
    numbers = [t["number"] for t in results["trials"]]
    if duplicates_in(numbers):
        problems.append(f"results.json lists trial(s) {duplicates_in(numbers)} twice")
    done = [t for t in results["trials"] if t["state"] in ("complete", "pruned")]
    if len(done) != trials:
        problems.append(f"{len(done)} finished trials in results.json, expected {trials}")
    study = shrink_snapshot(out, storage)
    if sorted(numbers) != study["numbers"]:
        problems.append(f"results.json trials {sorted(numbers)} != the study's finished trials {study['numbers']}")
    for t in done:
        if t["state"] == "complete" and not (t.get("artifact") and Path(t["artifact"]).is_dir()):
            problems.append(f"trial {t['number']}'s folder {t.get('artifact')} is missing")
    return problems


# --------------------------------------------------------------------------------------------- an episode


@dataclass
class Episode:
    """One output folder: killed ``kills`` times (each at a fresh seeded moment), then run to the end."""

    command: str
    seed: int
    kill_times: list[float] = field(default_factory=list)  # the moments drawn
    kills: int = 0  # kills that struck a running process
    at_kill: list[str] = field(default_factory=list)  # what the folder held at each kill
    finished: bool = False  # the final run exited 0
    lost: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # artifacts, counts, exit codes
    differences: list[str] = field(default_factory=list)  # vs the uninterrupted run
    notes: list[str] = field(default_factory=list)
    known: list[str] = field(default_factory=list)  # differences explained by a known issue (KNOWN_ISSUES)
    seconds: float = 0.0
    log: str = ""

    @property
    def survived(self) -> bool:
        return self.finished and not (self.lost or self.changed or self.duplicates or self.problems)

    def failures(self) -> list[str]:
        return [*self.problems, *(f"lost: {x}" for x in self.lost), *(f"changed: {x}" for x in self.changed),
                *(f"duplicate: {x}" for x in self.duplicates), *(f"differs from uninterrupted: {x}"
                                                                  for x in self.differences)]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"survived": self.survived}


def reference_run(command: Command, out: Path, logs: Path, timeout: float = 900) -> float:
    """The uninterrupted run: its output is the reference result, its wall time the window kills are drawn from."""
    result = run_once(command.argv(out), logs / f"{command.name}-reference.log", timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"the uninterrupted {command.name} run failed (rc {result.returncode}):\n"
                           f"{log_tail(result.log)}")
    return result.seconds


def run_episode(command: Command, out: Path, window_s: float, seed: int, kills: int = 1,
                reference: Path | None = None, logs: Path | None = None, timeout: float = 900,
                shrink_trials: int | None = None) -> Episode:
    """Kill ``command`` up to ``kills`` times at moments drawn uniformly from [0, window_s) (seeded), reading the
    folder after each kill; then run it to the end and check the folder (see the module docstring)."""
    rng = random.Random(seed)
    logs = logs or out.parent
    log = logs / f"{command.name}-{out.name}.log"
    ep = Episode(command.name, seed, log=str(log))
    started = time.monotonic()
    snapshots: list[dict[str, Any]] = []
    last: RunResult | None = None
    for _ in range(kills):
        at = rng.uniform(0, window_s)
        ep.kill_times.append(round(at, 3))
        last = run_once(command.argv(out), log, kill_at=at, timeout=timeout)
        if not last.killed:
            break  # it finished (or failed) before the moment came
        ep.kills += 1
        snap = command.snapshot(out)
        ep.at_kill.append(f"{at:.1f} s: {snap['where']}" + (f"; running {snap['running']}" if snap.get("running")
                                                             else ""))
        lost, changed = compare_to_snapshots(snap, snapshots)  # nothing lost between two kills either
        ep.lost += lost
        ep.changed += changed
        snapshots.append(snap)
    if last is None or last.killed:
        last = run_once(command.argv(out), log, timeout=timeout)
    ep.finished = last.returncode == 0
    if not ep.finished:
        ep.problems.append(f"the re-run exited {last.returncode}: {log_tail(log, 6)}")
    if ep.finished and not (out / ("results.json" if command.name == "shrink" else "card.json")).is_file():
        ep.problems.append("the re-run exited 0 but wrote no result")
    final = command.snapshot(out)
    lost, changed = compare_to_snapshots(final, snapshots)
    ep.lost = sorted(set(ep.lost + lost))
    ep.changed = sorted(set(ep.changed + changed))
    ep.duplicates = [str(d) for d in duplicates_in(final["numbers"])]
    expected = command.expected_numbers(out)
    if ep.finished and expected is not None and sorted(final["numbers"]) != expected:
        ep.problems.append(f"finished items {final['numbers']}, expected {expected}")
    if command.name == "shrink" and ep.finished and shrink_trials is not None:
        ep.problems += shrink_totals(out, shrink_trials)
    problems, notes = check_artifacts(out)
    ep.problems += problems
    ep.notes += notes
    if ep.finished and reference is not None and command.deterministic:
        ep.differences = command.differences(out, reference)
    ep.seconds = round(time.monotonic() - started, 1)
    return ep


def kill_during_trial(command: Command, out: Path, log: Path, trial: int, timeout: float = 600,
                      storage: str | None = None) -> list[int]:
    """Run a search and SIGKILL it while trial ``trial`` is RUNNING (polling the study); returns the RUNNING trial
    numbers seen at the kill. A forced kill for the cases a random moment hits only sometimes."""
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    with open(log, "a", encoding="utf-8") as fh:
        proc = subprocess.Popen(command.argv(out), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **LEAN_ENV})
        deadline = time.monotonic() + timeout
        running: list[int] = []
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                running = [n for n, state in poll_states(storage).items() if state == "RUNNING"]
                if trial in running:
                    break
                time.sleep(0.05)  # a digits trial can run in half a second on a quiet machine
        finally:
            kill_group(proc)
    return running
