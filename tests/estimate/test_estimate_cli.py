"""`sizewise estimate` and `sizewise report` through Typer's CliRunner: acceptance commands, JSON, errors, reports."""

import json

import pytest
import typer
from typer.testing import CliRunner

from sizewise.cli import estimate_cmd, report_cmd

runner = CliRunner()


def _make_app() -> typer.Typer:
    """The real app when it imports; while other commands are mid-edit, one that registers only these two."""
    try:
        from sizewise.cli.app import app

        return app
    except ImportError:
        app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)

        @app.callback()
        def _root() -> None:  # keeps `estimate`/`report` as subcommands, as in the real app
            pass

        app.command("estimate")(estimate_cmd.estimate)
        app.command("report")(report_cmd.report)
        return app


APP = _make_app()
ACCEPTANCE = ["estimate", "gpt3-175b", "--tokens", "300e9", "--hardware", "v100", "--devices", "10000", "--days",
              "14.8", "--device-power-w", "330", "--pue", "1.1", "--grid-intensity", "429"]


@pytest.fixture(scope="module")
def gpt3_json(tmp_path_factory):
    path = tmp_path_factory.mktemp("est") / "g.json"
    result = runner.invoke(APP, [*ACCEPTANCE, "--json", str(path)])
    assert result.exit_code == 0, result.output
    return path, result.output


def test_acceptance_gpt3(gpt3_json):
    path, output = gpt3_json
    d = json.loads(path.read_text())
    assert d["schema"] == "sizewise.estimate/1" and d["kind"] == "estimate"
    assert d["params"]["total"] == pytest.approx(175e9, rel=0.01)
    assert d["training"]["flops"] == pytest.approx(3.14e23, rel=0.02)
    assert d["training"]["energy_mwh"] == pytest.approx(1287, rel=0.05)
    assert d["training"]["co2e_tonnes"] == pytest.approx(552, rel=0.05)
    assert d["config"]["devices"] == 10000 and d["config"]["hardware"] == "v100"
    # the terminal view: parameters, what fits, the cost summary, and the constants used
    for text in ("174,604,259,328", "Fits on", "3.14e23 FLOP", "1,289 MWh", "553.1 t CO2e", "$10.9M", "Assumptions"):
        assert text in output, text


def test_acceptance_bert(tmp_path):
    path = tmp_path / "b.json"
    result = runner.invoke(APP, ["estimate", "bert-base-uncased", "--json", str(path)])
    assert result.exit_code == 0, result.output
    d = json.loads(path.read_text())
    assert d["params"]["total"] == 109_482_240
    assert d["memory"]["weights_bytes"]["fp32"] == 4 * 109_482_240
    assert {"flops", "energy_mwh", "co2e_tonnes", "cost_usd"} <= set(d["training"])


@pytest.mark.parametrize("args,message", [
    (["gpt2", "--tokens", "-5"], "error: tokens must be > 0, got -5"),
    (["gpt2", "--devices", "0"], "error: devices must be a whole number >= 1, got 0"),
    (["gpt2", "--days", "2", "--mfu", "0.3"], "error: give either days (2.0) or mfu (0.3), not both"),
    (["gpt2", "--hardware", "a100"], "error: unknown hardware 'a100'"),
    (["gpt2", "--region", "mars"], "error: unknown region 'mars'"),
])
def test_bad_input_is_one_line_and_exit_1(args, message):
    result = runner.invoke(APP, ["estimate", *args])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_unknown_model_reference_is_one_line(tmp_path):
    result = runner.invoke(APP, ["estimate", str(tmp_path / "missing.json")])
    assert result.exit_code == 1
    assert "does not exist" in result.output


def test_unknown_architecture_prints_formula_note(tmp_path):
    cfg = {"model_type": "mystery-lm", "architectures": ["MysteryForCausalLM"], "hidden_size": 256,
           "num_hidden_layers": 4, "num_attention_heads": 4, "vocab_size": 1000, "max_position_embeddings": 128}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    result = runner.invoke(APP, ["estimate", str(tmp_path), "--json", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    assert "parameters by formula" in " ".join(result.output.split())
    d = json.loads((tmp_path / "e.json").read_text())
    # 4 x (4*256^2 + 2*256*1024 + 2*256) + 256 + 1000*256 (tied head)
    assert d["params"]["method"] == "formula"
    assert d["params"]["total"] == 4 * (4 * 256**2 + 2 * 256 * 1024 + 2 * 256) + 256 + 1000 * 256


def test_report_renders_the_estimate(gpt3_json):
    path, _ = gpt3_json
    result = runner.invoke(APP, ["report", str(path)])
    assert result.exit_code == 0, result.output
    assert "1,289 MWh" in result.output and "Fits on" in result.output
    md = (path.parent / "report.md").read_text()
    page = (path.parent / "report.html").read_text()
    assert "| fp16 | 325 GiB | 334 GiB |" in md
    assert "553.1 t CO2e" in md and "1,289 MWh" in page
    # self-contained: nothing fetched from anywhere
    assert "<script" not in page and "http://" not in page and "https://" not in page and "<link" not in page


def test_report_rejects_other_files(tmp_path):
    other = tmp_path / "card.json"
    other.write_text(json.dumps({"kind": "card"}))
    result = runner.invoke(APP, ["report", str(other)])
    assert result.exit_code == 1
    assert "is not a sizewise run sizewise can report on (kind 'card')" in result.output
    assert "known kinds: estimate, shrink, quantize" in result.output
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    result = runner.invoke(APP, ["report", str(broken)])
    assert result.exit_code == 1 and "cannot read" in result.output
    result = runner.invoke(APP, ["report", str(tmp_path / "absent.json")])
    assert result.exit_code == 1 and "no such file" in result.output
