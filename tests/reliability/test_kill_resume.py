"""Killed at any moment, nothing lost: ``train``, a recipe run, ``shrink`` and an LLM calibration (``quantize
--method int4-awq`` on a tiny Llama) are SIGKILLed at seeded random moments and run again (see kill_harness.py; ``benchmarks/reliability.py`` does the same 20+ times per command).

Each command gets one output folder killed twice (the second kill strikes the resumed run), then run to the end.
The commands are the CLI's, in subprocesses, on the digits CNN, one thread.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import kill_harness as kh  # noqa: E402

pytestmark = pytest.mark.timeout(900)

KILLS = 2  # per command
EPOCHS = 8
TRIALS = 2  # both trials of the search come from its initial design
# seeds whose two draws fall at 36-57% and 37-48% of the window, so that a kill strikes even when the machine is
# faster or slower than during the reference run (a moment past the end of a run is no kill)
SEEDS = {"train": 16, "compress": 9, "shrink": 10, "llm": 9}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kill")


@pytest.fixture(scope="module")
def train_ref(work):
    """The uninterrupted train run: the reference result, the kill window, and the model compress and shrink use."""
    command = kh.train_command(kh.initial_model(work / "init"), EPOCHS)
    return command, work / "train-ref", kh.reference_run(command, work / "train-ref", work)


def _reference(work: Path, command: kh.Command) -> tuple[Path, float]:
    out = work / f"{command.name}-ref"
    return out, kh.reference_run(command, out, work)


def _assert_nothing_lost(ep: kh.Episode) -> None:
    assert ep.kills >= 1, f"no kill struck a running process: {ep.to_dict()}"
    assert ep.survived, "\n".join(ep.failures())
    assert ep.differences == [], "\n".join(ep.differences)


def test_train_killed_twice_loses_no_epoch_and_resumes_bit_exact(train_ref, work):
    command, reference, seconds = train_ref
    ep = kh.run_episode(command, work / "train-killed", seconds, SEEDS["train"], kills=KILLS, reference=reference,
                        logs=work)
    _assert_nothing_lost(ep)
    history = json.loads((work / "train-killed" / "steps.json").read_text())["steps"][0]["details"]["training"]
    assert [e["epoch"] for e in history["epochs"]] == list(range(1, EPOCHS + 1))


def test_recipe_killed_twice_loses_no_step_and_resumes_bit_exact(train_ref, work):
    command = kh.compress_command(train_ref[1])
    reference, seconds = _reference(work, command)
    ep = kh.run_episode(command, work / "compress-killed", seconds, SEEDS["compress"], kills=KILLS,
                        reference=reference, logs=work)
    _assert_nothing_lost(ep)
    assert (work / "compress-killed" / "model" / "model.swz").is_file()  # the recipe's Huffman-coded result


@pytest.fixture(scope="module")
def shrink_ref(train_ref, work):
    command = kh.shrink_command(train_ref[1], TRIALS)
    reference, seconds = _reference(work, command)
    return command, reference, seconds


def test_search_killed_twice_loses_no_trial(shrink_ref, work):
    command, reference, seconds = shrink_ref
    ep = kh.run_episode(command, work / "shrink-killed", seconds, SEEDS["shrink"], kills=KILLS, reference=reference,
                        logs=work, shrink_trials=TRIALS)
    _assert_nothing_lost(ep)  # a difference explained by the issue below is in ep.known, not ep.differences


def test_a_trial_killed_mid_run_is_run_again_on_resume(shrink_ref, work):
    """A kill that strikes a running trial: on resume that trial is marked failed and its plan queued again, so the
    finished trials equal an uninterrupted run's."""
    command, reference, _ = shrink_ref
    out = work / "shrink-mid-trial"
    running = kh.kill_during_trial(command, out, work / "shrink-mid-trial.log", trial=1)
    assert running == [1]
    assert kh.run_once(command.argv(out), work / "shrink-mid-trial.log").returncode == 0
    assert kh.shrink_totals(out, TRIALS) == []  # nothing lost or counted twice: only the plan set differs
    assert kh.check_artifacts(out)[0] == []
    assert kh.trial_essence(out) == kh.trial_essence(reference)


def test_train_seed_fixes_the_initial_weights(tmp_path, monkeypatch):
    """Two ``sizewise train zoo:digits-cnn --seed 0`` runs should start from the same weights; the zoo model is
    initialised before the seed is applied, so they do not (the kill tests train from a saved initial model). The
    command runs in-process up to the plan, which is captured instead of run."""
    import torch
    from typer.testing import CliRunner

    from sizewise.cli import train_cmd
    from sizewise.cli.app import app

    started = []

    class Captured(Exception):
        pass

    def capture(loaded, *args, **kwargs):
        started.append({k: v.clone() for k, v in loaded.module.state_dict().items()})
        raise Captured

    monkeypatch.setattr(train_cmd, "run_plan", capture)
    for name in ("a", "b"):
        result = CliRunner().invoke(app, ["train", "zoo:digits-cnn", "--data", "digits", "--out", str(tmp_path / name),
                                          "--epochs", "1", "--seed", "0"])
        assert isinstance(result.exception, Captured), result.output
    assert all(torch.equal(started[0][k], started[1][k]) for k in started[0])


def test_the_harness_sees_a_lost_epoch_and_a_torn_artifact(train_ref, work, tmp_path):
    """The checks can fail: an epoch removed from a finished run is reported lost, a truncated weights file is
    reported as not loading."""
    _, reference, _ = train_ref
    copy = tmp_path / "copy"
    shutil.copytree(reference, copy)
    before = kh.train_snapshot(copy)
    log = json.loads((copy / "steps.json").read_text())
    log["steps"][0]["details"]["training"]["epochs"].pop(2)
    (copy / "steps.json").write_text(json.dumps(log))
    lost, _ = kh.compare_to_snapshots(kh.train_snapshot(copy), [before])
    assert lost == ["epoch 3 (finished at kill 1)"]
    weights = copy / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    problems, _ = kh.check_artifacts(copy)
    assert any(p.startswith("model does not load") for p in problems), problems


def test_llm_calibration_killed_twice_writes_the_same_gguf(work):
    """int4-awq (NNCF calibration, then a GGUF file measured on llama.cpp), killed twice, then run to the end: the
    same file, byte for byte, and the same test perplexity as an uninterrupted run."""
    for module in ("transformers", "tokenizers", "gguf", "nncf", "llama_cpp"):
        pytest.importorskip(module, reason=f"the LLM calibration needs {module} (extras llm and llamacpp)")
    command = kh.llm_command(*kh.tiny_causal_lm(work / "tiny-llm"))
    reference, seconds = _reference(work, command)
    ep = kh.run_episode(command, work / "llm-killed", seconds, SEEDS["llm"], kills=KILLS, reference=reference,
                        logs=work)
    _assert_nothing_lost(ep)
    assert (work / "llm-killed" / "model" / "model.gguf").is_file()
