"""A causal LM's own samples as text: the lines, the seeds, the resume after a kill, and refusals."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

import sizewise
from sizewise.core.errors import ConfigError, ModelReferenceError
from sizewise.tasks.generate import GenerateConfig, generate_text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))

from kill_harness import tiny_causal_lm  # noqa: E402


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory) -> Path:
    model_dir, _ = tiny_causal_lm(tmp_path_factory.mktemp("lm"))
    return model_dir


@pytest.fixture(scope="module")
def tiny_lm(tiny_lm_dir):
    return sizewise.load(str(tiny_lm_dir))


CONFIG = GenerateConfig(sequences=12, tokens=12, batch_size=5, seed=5)  # 3 batches, the last one short


def test_writes_one_line_per_sequence_the_same_for_the_same_seed(tiny_lm, tmp_path):
    first = generate_text(tiny_lm, tmp_path / "a.txt", CONFIG)
    again = generate_text(tiny_lm, tmp_path / "b.txt", CONFIG)
    lines = (tmp_path / "a.txt").read_text(encoding="utf-8").splitlines()
    assert first.sequences == len(lines) and 10 <= len(lines) <= 12 and all(line.strip() for line in lines)
    assert (tmp_path / "a.txt").read_bytes() == (tmp_path / "b.txt").read_bytes()
    assert 0 < first.new_tokens <= 12 * 12 and again.resumed_batches == 0
    other = generate_text(tiny_lm, tmp_path / "c.txt", dataclasses.replace(CONFIG, seed=6))
    assert (tmp_path / "c.txt").read_bytes() != (tmp_path / "a.txt").read_bytes() and other.sequences > 0
    # the file is text load_dataset reads: one paragraph per line
    data = sizewise.load_dataset(str(tmp_path / "a.txt"))
    assert sum(len(data.split(name)) for name in data.splits) == len(lines)


def test_a_run_cut_off_after_a_batch_resumes_to_the_same_file(tiny_lm, tmp_path):
    whole = tmp_path / "whole.txt"
    generate_text(tiny_lm, whole, CONFIG)

    def kill_after_first(done, total):
        if done == 1:
            raise KeyboardInterrupt

    cut = tmp_path / "cut.txt"
    with pytest.raises(KeyboardInterrupt):
        generate_text(tiny_lm, cut, CONFIG, on_batch=kill_after_first)
    # a half-written line after the last whole batch (a kill in the middle of a write) is cut away on resume
    with open(cut, "ab") as handle:
        handle.write(b"half a line")
    assert json.loads((tmp_path / "cut.txt.progress.json").read_text())["batches"] == 1
    resumed = generate_text(tiny_lm, cut, CONFIG)
    assert resumed.resumed_batches == 1
    assert cut.read_bytes() == whole.read_bytes()


def test_resuming_with_other_settings_is_refused(tiny_lm, tmp_path):
    generate_text(tiny_lm, tmp_path / "t.txt", CONFIG)
    with pytest.raises(ConfigError, match="begun with other settings"):
        generate_text(tiny_lm, tmp_path / "t.txt", dataclasses.replace(CONFIG, seed=9))


def test_only_a_causal_lm_writes_text_and_bad_settings_are_refused(tmp_path):
    with pytest.raises(ModelReferenceError, match="not a causal LM"):
        generate_text(sizewise.load("zoo:digits-cnn"), tmp_path / "x.txt", CONFIG)
    for bad in ({"sequences": 0}, {"temperature": 0.0}, {"top_p": 1.5}):
        with pytest.raises(ConfigError):
            GenerateConfig(**bad)


def test_the_command_writes_the_file_the_function_writes(tiny_lm, tiny_lm_dir, tmp_path):
    """`sizewise generate` end to end: its progress bar is fed by each batch, and its file is the function's."""
    from typer.testing import CliRunner

    from sizewise.cli.app import app

    generate_text(tiny_lm, tmp_path / "direct.txt", CONFIG)
    result = CliRunner().invoke(app, ["generate", str(tiny_lm_dir), "--out", str(tmp_path / "cli.txt"),
                                      "--sequences", "12", "--tokens", "12", "--batch-size", "5", "--seed", "5"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "sequences" in result.output
    assert (tmp_path / "cli.txt").read_bytes() == (tmp_path / "direct.txt").read_bytes()
