"""A shared search on a real database: ``sizewise shrink --storage postgresql://...`` with two workers on one study.

PostgreSQL runs only where ``SIZEWISE_TEST_POSTGRES`` names a database this user may create tables in (``.ci/run``
installs Debian's server, starts it on localhost and sets it); elsewhere these tests skip and say so. The one about
a starting worker and a live worker's trial runs on SQLite too, since the behaviour is the search loop's, not the
database's.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import kill_harness as kh  # noqa: E402

pytestmark = pytest.mark.timeout(900)

POSTGRES = os.environ.get("SIZEWISE_TEST_POSTGRES")
NO_POSTGRES = ("SIZEWISE_TEST_POSTGRES is not set: no PostgreSQL server to share a study on (.ci/run installs "
               "Debian's postgresql, starts it and sets SIZEWISE_TEST_POSTGRES=postgresql://user:pw@localhost:5432/db)")
needs_postgres = pytest.mark.skipif(not POSTGRES, reason=NO_POSTGRES)
TRIALS = 4
DIRECTIONS = ["maximize", "minimize"]  # the search's: metric up, objective down


def _fresh_study(storage: str) -> None:
    import optuna

    try:
        optuna.delete_study(study_name=kh.STUDY, storage=storage)
    except KeyError:
        pass


@pytest.fixture
def postgres() -> str:
    if not POSTGRES:
        pytest.skip(NO_POSTGRES)
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is missing: pip install 'sizewise[postgres]'")
    _fresh_study(POSTGRES)
    yield POSTGRES
    _fresh_study(POSTGRES)


def _worker(model: Path, out: Path, storage: str, log: Path, trials: int = TRIALS, extra: tuple[str, ...] = ()):
    argv = kh.shrink_command(model, trials, ("--storage", storage, *extra)).argv(out)
    fh = open(log, "a", encoding="utf-8")  # closed when the worker is reaped (_wait)
    proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **kh.LEAN_ENV})
    proc.log_file = fh
    return proc


def _wait(proc, timeout: float = 600) -> int | None:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kh.kill_group(proc)
        return None
    finally:
        proc.log_file.close()


def _trial_states(storage: str) -> dict[int, str]:
    return {t.number: t.state.name for t in kh.study_trials(storage)}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_starting_worker_leaves_a_live_workers_trial_alone(backend, trained_digits_dir, tmp_path):
    """A worker that joins a study must not fail the trials other workers are running: a stale trial (its worker
    killed) and a live one look alike in the study unless the workers send heartbeats."""
    import optuna
    from optuna.trial import TrialState

    if backend == "postgres" and not POSTGRES:
        pytest.skip(NO_POSTGRES)
    storage = POSTGRES if backend == "postgres" else f"sqlite:///{tmp_path / 'study.db'}"
    if backend == "postgres":
        _fresh_study(storage)
    study = optuna.create_study(study_name=kh.STUDY, storage=storage, directions=DIRECTIONS, load_if_exists=True)
    live = study.ask()  # a live worker, mid-trial: it says which process runs it, as every sizewise worker does
    live.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    joining = _worker(trained_digits_dir, tmp_path / "out", storage, tmp_path / "joining.log", trials=1)
    deadline = time.monotonic() + 300
    while joining.poll() is None and time.monotonic() < deadline:
        if kh.poll_states(storage).get(live.number, "RUNNING") != "RUNNING":
            break  # seen: no need to wait for the joining worker's search
        time.sleep(0.3)
    kh.kill_group(joining)
    joining.log_file.close()
    state = _trial_states(storage)[live.number]
    try:
        assert state == "RUNNING", f"the joining worker marked the live worker's trial {state}"
        study.tell(live, [0.9, 1.0])  # the live worker stores its result
        assert study.trials[live.number].state == TrialState.COMPLETE
    finally:
        if backend == "postgres":
            _fresh_study(storage)


def _finished(out: Path) -> list[dict]:
    results = json.loads((out / "results.json").read_text())
    return [t for t in results["trials"] if t["state"] in ("complete", "pruned")]


@needs_postgres
def test_two_workers_share_one_study_and_one_out(postgres, trained_digits_dir, tmp_path):
    """Two workers launched together with the same --storage and --out. Every trial is recorded once, trial folders
    (OUT/trials/NNNN, by study trial number) do not collide, every artifact loads, and the study ends with the
    target of finished trials (plus at most one: see the next test). A worker that dies may only die of the
    live-worker issue, and then a third run finishes the study."""
    out = tmp_path / "out"
    workers = {name: _worker(trained_digits_dir, out, postgres, tmp_path / f"{name}.log") for name in "ab"}
    codes = {name: _wait(proc) for name, proc in workers.items()}
    for name, code in codes.items():
        if code != 0:  # only the live-worker issue may end a worker
            assert "has already finished and can not be updated" in (tmp_path / f"{name}.log").read_text(), \
                kh.log_tail(tmp_path / f"{name}.log", 30)
    states = _trial_states(postgres)
    if any(code != 0 for code in codes.values()):  # the study is resumable: a third run finishes it
        assert _wait(_worker(trained_digits_dir, out, postgres, tmp_path / "c.log")) == 0, \
            kh.log_tail(tmp_path / "c.log", 30)
    finished = kh.finished_trials(kh.study_trials(postgres))
    done = [n for n, o in finished.items() if o["state"] in ("complete", "pruned")]
    results = json.loads((out / "results.json").read_text())
    numbers = [t["number"] for t in results["trials"]]
    ran = {name: [int(line.split()[1].rstrip(":")) for line in (tmp_path / f"{name}.log").read_text().splitlines()
                  if line.startswith("trial ") and line.split()[1].rstrip(":").isdigit()] for name in "ab"}
    print(f"exit codes {codes}; trials run by each worker {ran}; study after both {states}; "
          f"finished {len(done)} of {TRIALS}")
    assert not set(ran["a"]) & set(ran["b"])  # no trial run by both workers
    assert sorted(numbers) == sorted(finished) and len(set(numbers)) == len(numbers)
    assert TRIALS <= len(done) <= TRIALS + 1, (len(done), states)
    for n, o in finished.items():
        if o["state"] == "complete":
            record = json.loads((out / "trials" / f"{n:04d}" / "card.json").read_text())
            assert record["command"].startswith(f"shrink trial {n}:")  # its own folder, written by its own run
    assert kh.check_artifacts(out)[0] == []


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_shared_study_stops_at_the_target(backend, trained_digits_dir, tmp_path):
    """``--trials N`` on a shared study: N finished trials in all. Here another worker is mid-trial (held by the
    test, after the search started) while the search runs: running trials count towards N, so the study ends with N
    unless the search had already started all N of its own before the other worker began."""
    import optuna

    if backend == "postgres" and not POSTGRES:
        pytest.skip(NO_POSTGRES)
    storage = POSTGRES if backend == "postgres" else f"sqlite:///{tmp_path / 'study.db'}"
    if backend == "postgres":
        _fresh_study(storage)
    worker = _worker(trained_digits_dir, tmp_path / "out", storage, tmp_path / "worker.log", trials=2)
    deadline, other = time.monotonic() + 300, None
    try:
        started = 0
        while worker.poll() is None and time.monotonic() < deadline:
            if "RUNNING" in kh.poll_states(storage).values():
                study = optuna.load_study(study_name=kh.STUDY, storage=storage)
                other = study.ask()  # the other worker starts a trial
                # how many trials the search had started by then (on a slow machine the poll can miss the first)
                started = sum(1 for n, state in kh.poll_states(storage).items()
                              if n != other.number and state in ("RUNNING", "COMPLETE", "PRUNED", "FAIL"))
                break
            time.sleep(0.05)
        assert other is not None, kh.log_tail(tmp_path / "worker.log", 30)
        assert _wait(worker) == 0, kh.log_tail(tmp_path / "worker.log", 30)
        study.tell(other, [0.9, 1.0])  # the other worker finishes its trial
        done = [o for o in kh.finished_trials(kh.study_trials(storage)).values()
                if o["state"] in ("complete", "pruned")]
        # the search starts no trial once finished + running ones reach --trials: with the other worker's trial
        # running, it finishes only the ones it had already started, at least one
        assert len(done) == max(1, started), \
            f"{len(done)} trials of the search (it had started {started}) + 1 of the other worker for --trials 2"
    finally:
        if backend == "postgres":
            _fresh_study(storage)


@needs_postgres
def test_a_worker_killed_mid_trial_leaves_the_study_resumable(postgres, trained_digits_dir, tmp_path):
    out = tmp_path / "out"
    command = kh.shrink_command(trained_digits_dir, TRIALS, ("--storage", postgres))
    running = kh.kill_during_trial(command, out, tmp_path / "killed.log", trial=1, storage=postgres)
    assert running == [1]
    before = kh.finished_trials(kh.study_trials(postgres))
    assert kh.run_once(command.argv(out), tmp_path / "resumed.log").returncode == 0, \
        kh.log_tail(tmp_path / "resumed.log", 30)
    states = _trial_states(postgres)
    assert states[1] == "FAIL"  # the killed worker's trial, marked on resume
    after = kh.finished_trials(kh.study_trials(postgres))
    assert {n: after[n] for n in before} == before  # finished before the kill: still there, same numbers
    assert kh.shrink_totals(out, TRIALS, postgres) == []  # TRIALS finished, each listed once, folders there
    assert kh.check_artifacts(out)[0] == []


@needs_postgres
@pytest.mark.timeout(900)
def test_ray_executor_with_two_workers_on_postgres(postgres, trained_digits_dir, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    proc = _worker(trained_digits_dir, out, postgres, tmp_path / "ray.log", trials=2,
                   extra=("--executor", "ray", "--parallel", "2"))
    assert _wait(proc) == 0, kh.log_tail(tmp_path / "ray.log", 30)
    finished = kh.finished_trials(kh.study_trials(postgres))
    assert len([o for o in finished.values() if o["state"] in ("complete", "pruned")]) == 2
    assert sorted(t["number"] for t in json.loads((out / "results.json").read_text())["trials"]) == sorted(finished)
    assert kh.check_artifacts(out)[0] == []
