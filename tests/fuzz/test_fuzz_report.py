"""Fuzzing the run-record reader behind ``sizewise report`` (:func:`sizewise.pipeline.record.read_record` and the
``report`` command itself).

A run directory can come from someone else. Any JSON in ``card.json`` must give a report (exit 0) or one red line
and exit code 1, never a traceback; ``read_record`` must return the record or raise one ``ConfigError`` line.
"""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import strategies as st
from typer.testing import CliRunner

from sizewise.cli.app import app
from sizewise.core.errors import ConfigError
from sizewise.pipeline.record import SCHEMA, read_record

from fuzzing import expect_sizewise_error, run_target
from seed_record import RECORD

runner = CliRunner()

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**64, 2**64), st.floats(allow_nan=False),
                         st.text(max_size=10),
                         st.sampled_from([SCHEMA, "sizewise.card/1", "estimate", "shrink", "quantize", "prune",
                                          "accuracy", "perplexity", "validation", "test", "", "<script>", "%s", "{}",
                                          "[/x]", "[bold]", "[link=http://x]y[/link]",
                                          0, -1, 1e308, 0.5]))
JSON = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8) | st.sampled_from(list(RECORD)), inner, max_size=4),
                    max_leaves=15)


def _paths(obj, prefix=()):
    if prefix:
        yield prefix
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        yield from _paths(value, (*prefix, key))


PATHS = list(_paths(RECORD))


@st.composite
def mutated_record(draw):
    """The seed record with 1-4 values replaced (by any JSON, including containers of the wrong kind) or removed."""
    record = copy.deepcopy(RECORD)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(PATHS))
        try:
            parent = record
            for key in path[:-1]:
                parent = parent[key]
            if draw(st.integers(0, 4)) == 0:
                del parent[path[-1]]
            else:
                parent[path[-1]] = draw(JSON)
        except (KeyError, IndexError, TypeError):  # an earlier mutation removed or replaced the parent
            continue
    return record


RECORDS = st.one_of(mutated_record(), mutated_record(), JSON,
                    st.fixed_dictionaries({"schema": st.just(SCHEMA)},
                                          optional={k: JSON for k in RECORD if k != "schema"}),
                    st.fixed_dictionaries({"kind": st.sampled_from(["estimate", "shrink"])},
                                          optional={"schema": JSON_SCALARS, "verdict": JSON, "model": JSON,
                                                    "trials": JSON, "best": JSON}))
# text that is not quite JSON: numbers past int/float limits, deep nesting, bad UTF-8
RAW_TEXT = st.one_of(st.binary(max_size=100), st.sampled_from([
    b"[" * 100_000 + b"]" * 100_000, b'{"schema": "sizewise.run/1", "x": ' + b"9" * 5000 + b"}", b"1e999999",
    b'{"schema": "sizewise.run/1"' + b"," * 3 + b"}", b"\xff\xfe", b"NaN", b"", b'"' + b"\\ud800" + b'"']))


def invoke_report(path) -> None:
    """The property for the command: exit 0, or exit 1 with one line; never an exception."""
    result = runner.invoke(app, ["report", str(path)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception.with_traceback(result.exc_info[2])  # as the user would see it: a traceback
    assert result.exit_code in (0, 1), result.output
    if result.exit_code == 1:
        lines = [line for line in result.output.splitlines() if line.strip()]
        error = [i for i, line in enumerate(lines) if line.startswith("error:")]
        assert error, result.output
        assert "Traceback" not in result.output


def test_seed_record_reports(tmp_path):
    (tmp_path / "card.json").write_text(json.dumps(RECORD))
    assert read_record(tmp_path)["kind"] == "quantize"
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.html").is_file()


def test_fuzz_read_record(tmp_path):
    path = tmp_path / "card.json"

    def body(record, raw: bytes | None) -> None:
        path.write_bytes(raw if raw is not None else json.dumps(record).encode())
        out = []
        if expect_sizewise_error(lambda: out.append(read_record(tmp_path)), ConfigError) is None:
            assert out[0]["schema"] == SCHEMA

    run_target("read-record", body, {"record": RECORDS, "raw": st.none() | RAW_TEXT}, ci_examples=300)


# Crashes of `sizewise report` the fuzzer found are fixed; a new one fails the fuzz test (no known crash is tolerated).
# test_report_regression_is_one_line_not_a_traceback keeps one input of each that was found.
KNOWN_REPORT_CRASHES: frozenset = frozenset()


def test_fuzz_report_command(tmp_path):
    path = tmp_path / "card.json"

    def body(record, raw: bytes | None) -> None:
        for old in ("report.md", "report.html"):
            (tmp_path / old).unlink(missing_ok=True)
        path.write_bytes(raw if raw is not None else json.dumps(record).encode())
        invoke_report(tmp_path)

    run_target("report-command", body, {"record": RECORDS, "raw": st.none() | st.just(None) | RAW_TEXT},
               ci_examples=120, deadline_s=10, known=KNOWN_REPORT_CRASHES)


# -- regressions: inputs that crashed before, kept as the file's bytes -----------------------------------------------

DEEP_JSON = b"[" * 100_000 + b"]" * 100_000  # RecursionError in json.loads
HUGE_INT_JSON = b'{"schema": "sizewise.run/1", "x": ' + b"9" * 5000 + b"}"  # ValueError: past int's 4,300 digits


@pytest.mark.parametrize("data", [DEEP_JSON, HUGE_INT_JSON], ids=["deep_nesting", "int_of_5000_digits"])
def test_read_record_regression_json_past_the_parsers_limits(data, tmp_path):
    """Both escaped ``read_record`` (RecursionError / ValueError at record.py:69, only JSONDecodeError was caught)."""
    (tmp_path / "card.json").write_bytes(data)
    with pytest.raises(ConfigError, match="cannot read the run record") as info:
        read_record(tmp_path)
    assert "\n" not in str(info.value)


REPORT_REGRESSIONS = {
    "deep_nesting": DEEP_JSON,  # RecursionError at report_cmd.py:101
    "int_of_5000_digits": HUGE_INT_JSON,  # ValueError at report_cmd.py:101
    "cards_without_schema": b'{"schema":"sizewise.run/1","kind":"quantize","before":{},"after":{}}',  # ValueError,
    # measure/card.py from_dict: "not a sizewise.card/1 card"
    "shrink_results_without_rows": b'{"kind":"shrink"}',  # KeyError 'metric' at report/shrink_report.py:100
    # a value from the file in the error message, printed as Rich markup: MarkupError at cli/common.py:47
    "markup_in_the_message": b'{"kind":"estimate","schema":"[/x]"}',
}


def _after_latency_interval_empty() -> bytes:
    record = copy.deepcopy(RECORD)
    record["after"]["latency"]["ci95_median_ms"] = []
    return json.dumps(record).encode()  # IndexError at report/card_view.py:203 (savings line)


def _after_latency_of_zero_ms() -> bytes:
    record = copy.deepcopy(RECORD)
    record["after"]["latency"]["p50_ms"] = 0.0
    return json.dumps(record).encode()  # ZeroDivisionError at report/card_view.py:212 (found by a 60 s/target run)


def _after_params_total_a_string() -> bytes:
    record = copy.deepcopy(RECORD)
    record["after"]["params"]["total"] = "x"
    return json.dumps(record).encode()  # ValueError "Cannot specify ',' with 's'" at report/card_view.py:158 (long run)


@pytest.mark.parametrize("name", [*REPORT_REGRESSIONS, "after_latency_interval_empty", "after_params_total_a_string",
                                  "after_latency_of_zero_ms"])
def test_report_regression_is_one_line_not_a_traceback(name, tmp_path):
    data = REPORT_REGRESSIONS.get(name) or {"after_latency_interval_empty": _after_latency_interval_empty,
                                            "after_params_total_a_string": _after_params_total_a_string,
                                            "after_latency_of_zero_ms": _after_latency_of_zero_ms}[name]()
    (tmp_path / "card.json").write_bytes(data)
    invoke_report(tmp_path)
