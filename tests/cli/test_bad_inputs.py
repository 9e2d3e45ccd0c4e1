"""The README's table "What sizewise says when the input is wrong", run row by row: each command line gives exactly
the line the table shows (exit code 1), or Typer's usage error (exit code 2), and never a traceback. The table is
parsed here, so it stays true; every command of the app has a row."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sizewise.cli.app import app

README = Path(__file__).resolve().parents[2] / "README.md"
runner = CliRunner()
_ROW = re.compile(r"^\| (\w+) \| ([^|]+) \| (`+) ?(.+?) ?\3 \| (`+) ?(.+?) ?\5 \| `?([12])`? \|$")
_BOX = re.compile(r"[\u2500-\u257f]")  # the frame of Typer's usage-error panel


def readme_rows() -> list[tuple[str, str, str, str, int]]:
    """(command, what is wrong, what the user types, what sizewise says, exit code) of each table row."""
    text = README.read_text(encoding="utf-8")
    section = text.split("**What sizewise says when the input is wrong.**", 1)[1].split("\n\n", 2)[1]
    rows = []
    for line in section.splitlines():
        if line.startswith("| command") or line.startswith("|---"):
            continue
        match = _ROW.match(line)
        assert match, f"README row not understood: {line}"
        command, what, _, typed, _, says, code = match.groups()
        rows.append((command, what.strip(), typed, says, int(code)))
    return rows


ROWS = readme_rows()


def test_every_command_has_a_row():
    commands = {c.name for c in app.registered_commands}
    assert commands == {row[0] for row in ROWS}, sorted(commands ^ {row[0] for row in ROWS})


@pytest.mark.parametrize("command, what, typed, says, code", ROWS, ids=[f"{r[0]}: {r[1]}" for r in ROWS])
def test_the_readme_says_what_sizewise_says(command, what, typed, says, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "weights.pt").write_bytes(b"not a pickle")
    (tmp_path / "student.yaml").write_text("steps:\n  - distill: {student: 'mypkg.students:small', epochs: 1}\n")
    argv = shlex.split(typed)
    assert argv[:2] == ["sizewise", command]
    result = runner.invoke(app, argv[1:])
    assert "Traceback" not in result.output
    assert result.exit_code == code, result.output
    if code == 2:  # Typer's panel wraps the message over framed lines
        assert says in " ".join(_BOX.sub(" ", result.output).split()), result.output
        return
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    if says.endswith("…"):
        assert errors[0].startswith(says.removesuffix("…")), (errors[0], says)
    else:
        assert errors[0] == says
    assert not (tmp_path / "o").exists()  # refused before a run began
