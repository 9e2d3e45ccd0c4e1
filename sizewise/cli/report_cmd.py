"""``sizewise report FILE``: render a run's JSON in the terminal and as report.md + a self-contained report.html.

Dispatches on the JSON's ``"kind"`` (or ``"schema"``) key, so each kind of run registers one renderer below.
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


def _report_estimate(path: Path, data: dict[str, Any]) -> list[Path]:
    from sizewise.estimate.api import SCHEMA
    from sizewise.estimate.render import print_view, to_html, to_markdown

    if data.get("schema") != SCHEMA:
        raise SizewiseError(f"'{path}' has schema {data.get('schema')!r}; this sizewise reads {SCHEMA!r}",
                            hint="re-run `sizewise estimate ... --json FILE` with this version")
    try:
        print_view(data, console)
        markdown, page = to_markdown(data), to_html(data)
    except (KeyError, TypeError) as exc:
        raise SizewiseError(f"'{path}' is an incomplete estimate: missing or malformed {exc}",
                            hint="re-run `sizewise estimate ... --json FILE`") from exc
    written = [path.parent / "report.md", path.parent / "report.html"]
    _write_text(written[0], markdown)
    _write_text(written[1], page)
    return written


def _report_shrink(path: Path, data: dict[str, Any]) -> list[Path]:
    from sizewise.report.shrink_report import render_reports

    console.print(f"{data.get('verdict', '')}", highlight=False)
    return list(render_reports(path.parent, data))


def _report_quantize(path: Path, data: dict[str, Any]) -> list[Path]:
    from sizewise.report.shrink_report import render_quantize_html

    console.print(data["verdict"]["message"], highlight=False)
    return [_write_text(path.parent / "report.html", render_quantize_html(data))]


def _report_compare(path: Path, data: dict[str, Any]) -> list[Path]:
    from sizewise.report.card_view import compare_table, savings_line
    from sizewise.report.compare_report import cards_of, to_html, to_markdown

    title, a, b, a_name, b_name = cards_of(data)
    console.print(compare_table(a, b, title=title, before_name=a_name, after_name=b_name))
    console.print(savings_line(a, b))
    return [_write_text(path.parent / "report.md", to_markdown(data)),
            _write_text(path.parent / "report.html", to_html(data))]


_RENDERERS: dict[str, Callable[[Path, dict[str, Any]], list[Path]]] = {"estimate": _report_estimate,
                                                                        "shrink": _report_shrink,
                                                                        "quantize": _report_quantize,
                                                                        "compare": _report_compare}


@handles_errors
def report(
    path: Path = typer.Argument(..., help="A shrink directory (with results.json), or a run's JSON such as the file "
                                          "`sizewise estimate MODEL --json FILE` wrote."),
) -> None:
    """Show a run's results and write report.md and a self-contained report.html next to its JSON."""
    if path.is_dir() and (path / "results.json").is_file():
        path = path / "results.json"  # a shrink (or demo) directory
    elif path.is_dir() and (path / "card.json").is_file():
        path = path / "card.json"  # a quantize (or prune) run directory
    elif path.is_dir():
        raise SizewiseError(f"'{path}' is a directory without results.json; pass the run's JSON file",
                            hint="e.g. `sizewise report g.json` after `sizewise estimate gpt3-175b --json g.json`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SizewiseError(f"no such file '{path}'", hint="write one with `sizewise estimate MODEL --json FILE`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SizewiseError(f"cannot read '{path}' as JSON: {exc}",
                            hint="pass a file written by `sizewise estimate ... --json FILE`") from None
    kind = data.get("kind") if isinstance(data, dict) else None
    if isinstance(data, dict) and data.get("schema") == "sizewise.quantization/1":
        kind = "quantize"
    from sizewise.report.compare_report import KINDS

    if isinstance(data, dict) and data.get("schema") in KINDS:
        kind = "compare"  # prune, cluster, factorize, recipe, finetune, distill runs: two cards side by side
    renderer = _RENDERERS.get(kind) if isinstance(kind, str) else None
    if renderer is None:
        raise SizewiseError(f"'{path}' is not a sizewise run sizewise can report on (kind {kind!r})",
                            hint="known kinds: estimate, shrink, quantize, and the card.json of prune, cluster, "
                                 "factorize, compress, finetune and distill runs; write one with e.g. "
                                 "`sizewise estimate MODEL --json FILE`")
    for written in renderer(path, data):
        console.print(f"wrote {written}", highlight=False)
