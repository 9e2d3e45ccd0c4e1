"""``sizewise report DIR|FILE``: render a run in the terminal and as report.md + a self-contained report.html.

Three kinds of JSON are reports' sources: the run record every model-changing command writes (``OUT/card.json``,
schema ``sizewise.run/1``), a shrink search's ``results.json``, and an estimate's JSON. Records of the schemas
this version replaced are refused with one line saying to re-run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from sizewise.cli.common import console, handles_errors
from sizewise.core.errors import SizewiseError
from sizewise.core.serialize import write_text_atomic as _write_text

# run records of earlier versions: each command now writes sizewise.run/1
OLD_SCHEMAS = ("sizewise.compression/1", "sizewise.quantization/1", "sizewise.recipe/1", "sizewise.finetune/1",
               "sizewise.distill/1")


def _report_estimate(path: Path, data: dict[str, Any]) -> list[Path]:
    from sizewise.estimate.api import SCHEMA
    from sizewise.estimate.render import print_view, to_html, to_markdown

    if data.get("schema") != SCHEMA:
        raise SizewiseError(f"'{path}' has schema {data.get('schema')!r}; this sizewise reads {SCHEMA!r}",
                            hint="re-run `sizewise estimate ... --json FILE` with this version")
    try:
        print_view(data, console)
        markdown, page = to_markdown(data), to_html(data)
    except MALFORMED as exc:
        raise SizewiseError(f"'{path}' is an incomplete estimate: missing or malformed {_what(exc)}",
                            hint="re-run `sizewise estimate ... --json FILE`") from exc
    written = [path.parent / "report.md", path.parent / "report.html"]
    _write_text(written[0], markdown)
    _write_text(written[1], page)
    return written


# What a record with a missing field, a string where a number belongs or an empty list raises while it is rendered:
# a file edited by hand, cut short or from another tool. One line names the file instead of a traceback.
MALFORMED = (KeyError, TypeError, AttributeError, ValueError, IndexError, ZeroDivisionError)


def _report_shrink(path: Path, data: dict[str, Any]) -> list[Path]:
    from rich.markup import escape

    from sizewise.report.shrink_report import render_reports

    try:
        console.print(escape(str(data.get("headline") or data.get("verdict", ""))), highlight=False)
        return list(render_reports(path.parent, data))
    except MALFORMED as exc:
        raise SizewiseError(f"'{path}' is an incomplete shrink result: missing or malformed {_what(exc)}",
                            hint="re-run the search with the same --out (it resumes and rewrites results.json)") \
            from exc


def _report_run(path: Path, data: dict[str, Any]) -> list[Path]:
    from sizewise.report.run_report import print_record, write_reports

    try:
        print_record(data, console)
        return write_reports(path.parent, data)
    except MALFORMED as exc:
        raise SizewiseError(f"'{path}' is an incomplete run record: missing or malformed {_what(exc)}",
                            hint="re-run the command that wrote it") from exc


def _what(exc: Exception) -> str:
    """The exception in a few words, on one line (a KeyError shows the key; messages can quote the file's text)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__} {text[:120]}" if not isinstance(exc, KeyError) else f"field {text[:120]}"


_RENDERERS: dict[str, Callable[[Path, dict[str, Any]], list[Path]]] = {"estimate": _report_estimate,
                                                                        "shrink": _report_shrink}


def _renderer(path: Path, data: Any) -> Callable[[Path, dict[str, Any]], list[Path]]:
    from sizewise.pipeline.record import SCHEMA

    schema = data.get("schema") if isinstance(data, dict) else None
    if schema == SCHEMA:
        return _report_run
    if schema in OLD_SCHEMAS:
        raise SizewiseError(f"'{path}' is a {schema} record from an earlier sizewise; this version reports {SCHEMA}",
                            hint="re-run the command that wrote it with this version of sizewise")
    kind = data.get("kind") if isinstance(data, dict) else None
    renderer = _RENDERERS.get(kind) if isinstance(kind, str) else None
    if renderer is None:
        raise SizewiseError(f"'{path}' is not a sizewise run sizewise can report on (kind {kind!r})",
                            hint=f"known kinds: estimate, shrink, quantize, prune, distill, finetune, factorize, "
                                 f"cluster, compress and train (the run record, schema {SCHEMA}); pass a run "
                                 f"directory, or the JSON of `sizewise estimate MODEL --json FILE`")
    return renderer


@handles_errors
def report(
    path: Path = typer.Argument(..., help="A run directory (its card.json, from prune, quantize, distill, finetune, "
                                          "factorize, cluster, compress or train), a shrink directory (its "
                                          "results.json), or the JSON `sizewise estimate MODEL --json FILE` wrote."),
) -> None:
    """Show a run's results and write report.md and a self-contained report.html next to its JSON."""
    if path.is_dir() and (path / "results.json").is_file():
        path = path / "results.json"  # a shrink (or demo) directory
    elif path.is_dir() and (path / "card.json").is_file():
        path = path / "card.json"  # the run record of a command that changed a model
    elif path.is_dir():
        raise SizewiseError(f"'{path}' is a directory without card.json or results.json",
                            hint="pass the --out directory of a finished run, or a run's JSON file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SizewiseError(f"no such file '{path}'", hint="pass a run directory or a run's JSON file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SizewiseError(f"cannot read '{path}' as JSON: {exc}",
                            hint="pass a run directory or a file written by `sizewise estimate ... --json FILE`") \
            from None
    except (RecursionError, ValueError) as exc:  # nesting or integers past what Python's JSON parser takes
        raise SizewiseError(f"cannot read '{path}' as JSON: {type(exc).__name__} (nested too deep or a number too "
                            f"long)", hint="pass a run directory or a run's JSON file written by sizewise") from None
    for written in _renderer(path, data)(path, data):
        console.print(f"wrote {written}", highlight=False)
