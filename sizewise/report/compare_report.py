"""report.md and a self-contained report.html for any run that compares two cards: prune / cluster / factorize
(before -> after), a compression recipe, a fine-tuning run, a distillation (teacher -> student)."""

from __future__ import annotations

from html import escape
from typing import Any

from sizewise.measure import ModelCard
from sizewise.report.card_view import compare_rows, savings_line

# schema -> (title, key of the first card, key of the second, their column names)
KINDS = {
    "sizewise.compression/1": ("compression", "before", "after", "before", "after"),
    "sizewise.recipe/1": ("compression recipe", "before", "after", "before", "after"),
    "sizewise.finetune/1": ("fine-tuning", "before", "after", "before", "after"),
    "sizewise.distill/1": ("distillation", "teacher", "student", "teacher", "student"),
}


def cards_of(data: dict[str, Any]) -> tuple[str, ModelCard, ModelCard, str, str]:
    title, first, second, first_name, second_name = KINDS[data["schema"]]
    what = data.get("method") or data.get("recipe") or (data.get("student_spec") or {}).get("spec") or ""
    return (f"sizewise {title}{f': {what}' if what else ''}", ModelCard.from_dict(data[first]),
            ModelCard.from_dict(data[second]), first_name, second_name)


def to_markdown(data: dict[str, Any]) -> str:
    title, a, b, a_name, b_name = cards_of(data)
    lines = [f"# {title}", "", f"| | {a_name} | {b_name} | ratio |", "|---|---:|---:|---:|"]
    lines += [f"| {' | '.join(row)} |" for row in compare_rows(a, b)]
    lines += ["", savings_line(a, b), "", f"Measured on {(b.environment or {}).get('cpu', 'this machine')}; "
              "both cards the same way, in the same run."]
    return "\n".join(lines) + "\n"


def to_html(data: dict[str, Any]) -> str:
    title, a, b, a_name, b_name = cards_of(data)
    rows = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in compare_rows(a, b))
    return (f"<!doctype html><html lang=en><meta charset=utf-8><title>{escape(title)}</title>"
            "<style>body{font-family:system-ui,sans-serif;max-width:860px;margin:2rem auto;padding:0 1rem}"
            "table{border-collapse:collapse}td,th{padding:.3rem .7rem;border-bottom:1px solid #ddd;text-align:right}"
            "td:first-child,th:first-child{text-align:left}</style>"
            f"<h1>{escape(title)}</h1><table><tr><th></th><th>{escape(a_name)}</th><th>{escape(b_name)}</th>"
            f"<th>ratio</th></tr>{rows}</table><p>{escape(savings_line(a, b))}</p></html>\n")
