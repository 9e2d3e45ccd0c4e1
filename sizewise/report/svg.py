"""A scatter plot as inline SVG.

Written by hand rather than with matplotlib because the report must be one self-contained file that renders offline
with no scripts or fonts to fetch, and a few dozen points need ~80 lines, not a 40 MB dependency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str
    kind: str = "trial"  # "trial" | "pareto" | "chosen" | "baseline"


_STYLE = {"trial": ("circle", "#9aa5b1", 4), "pareto": ("circle", "#1f6feb", 5),
          "chosen": ("star", "#d1242f", 9), "baseline": ("square", "#24292f", 5)}


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for mult in (1, 2, 5, 10):
        if (hi - lo) / (step * mult) <= n:
            step *= mult
            break
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.2e}"


def _marker(kind: str, x: float, y: float) -> str:
    shape, color, r = _STYLE[kind]
    if shape == "square":
        return f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r}" height="{2 * r}" fill="{color}"/>'
    if shape == "star":
        pts = []
        for i in range(10):
            a = math.pi / 2 + i * math.pi / 5
            rr = r if i % 2 == 0 else r * 0.45
            pts.append(f"{x + rr * math.cos(a):.1f},{y - rr * math.sin(a):.1f}")
        return f'<polygon points="{" ".join(pts)}" fill="{color}" stroke="white" stroke-width="1"/>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{color}" fill-opacity="0.85"/>'


def scatter_svg(points: list[Point], x_label: str, y_label: str, hline: float | None = None,
                hline_label: str = "", width: int = 640, height: int = 380) -> str:
    left, right, top, bottom = 70, 20, 20, 50
    xs = [p.x for p in points] or [0.0]
    ys = [p.y for p in points] + ([hline] if hline is not None else []) or [0.0]
    x_lo, x_hi = min(xs), max(xs)
    y_lo, y_hi = min(ys), max(ys)
    x_pad = (x_hi - x_lo) * 0.08 or abs(x_hi) * 0.1 or 1.0
    y_pad = (y_hi - y_lo) * 0.1 or abs(y_hi) * 0.01 or 1.0
    x_lo, x_hi, y_lo, y_hi = x_lo - x_pad, x_hi + x_pad, y_lo - y_pad, y_hi + y_pad

    def sx(v: float) -> float:
        return left + (v - x_lo) / (x_hi - x_lo) * (width - left - right)

    def sy(v: float) -> float:
        return height - bottom - (v - y_lo) / (y_hi - y_lo) * (height - top - bottom)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="{escape(y_label)} versus {escape(x_label)}" '
             f'font-family="sans-serif" font-size="11">',
             f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
             f'fill="white" stroke="#d0d7de"/>']
    for t in _ticks(x_lo, x_hi):
        parts.append(f'<line x1="{sx(t):.1f}" y1="{top}" x2="{sx(t):.1f}" y2="{height - bottom}" stroke="#eef1f4"/>'
                     f'<text x="{sx(t):.1f}" y="{height - bottom + 15}" text-anchor="middle">{_fmt(t)}</text>')
    for t in _ticks(y_lo, y_hi):
        parts.append(f'<line x1="{left}" y1="{sy(t):.1f}" x2="{width - right}" y2="{sy(t):.1f}" stroke="#eef1f4"/>'
                     f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    if hline is not None:
        parts.append(f'<line x1="{left}" y1="{sy(hline):.1f}" x2="{width - right}" y2="{sy(hline):.1f}" '
                     f'stroke="#d1242f" stroke-dasharray="5,4"/>'
                     f'<text x="{width - right - 4}" y="{sy(hline) - 5:.1f}" text-anchor="end" fill="#d1242f">'
                     f'{escape(hline_label)}</text>')
    front = sorted((p for p in points if p.kind in ("pareto", "chosen")), key=lambda p: p.x)
    if len(front) > 1:
        path = " ".join(f"{sx(p.x):.1f},{sy(p.y):.1f}" for p in front)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#1f6feb" stroke-width="1.5"/>')
    order = {"trial": 0, "baseline": 1, "pareto": 2, "chosen": 3}
    for p in sorted(points, key=lambda p: order[p.kind]):
        parts.append(f'<g class="point {p.kind}"><title>{escape(p.label)}</title>{_marker(p.kind, sx(p.x), sy(p.y))}'
                     f'</g>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle">'
                 f'{escape(x_label)}</text>'
                 f'<text transform="translate(16 {(top + height - bottom) / 2}) rotate(-90)" text-anchor="middle">'
                 f'{escape(y_label)}</text></svg>')
    return "".join(parts)


def bars_svg(rows: list[tuple[str, float]], value_label: str, width: int = 640, bar_height: int = 16,
             log_scale: bool = True) -> str:
    """Horizontal bars, largest first: e.g. each layer's output error when quantized alone."""
    rows = sorted(rows, key=lambda r: -r[1])[:25]
    left, right, top = 230, 70, 10
    height = top + len(rows) * (bar_height + 4) + 30
    values = [max(v, 1e-12) for _, v in rows] or [1.0]
    lo = math.log10(min(values)) - 0.5 if log_scale else 0.0
    hi = math.log10(max(values)) if log_scale else max(values)

    def length(v: float) -> float:
        v = math.log10(max(v, 1e-12)) if log_scale else v
        return max(1.0, (v - lo) / ((hi - lo) or 1.0) * (width - left - right))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="{escape(value_label)}" font-family="sans-serif" font-size="11">']
    for i, (name, value) in enumerate(rows):
        y = top + i * (bar_height + 4)
        short = name if len(name) <= 36 else "…" + name[-35:]
        parts.append(f'<g class="bar"><title>{escape(name)}: {value:.3g}</title>'
                     f'<text x="{left - 6}" y="{y + bar_height - 4}" text-anchor="end">{escape(short)}</text>'
                     f'<rect x="{left}" y="{y}" width="{length(value):.1f}" height="{bar_height}" fill="#1f6feb"/>'
                     f'<text x="{left + length(value) + 4:.1f}" y="{y + bar_height - 4}">{value:.3g}</text></g>')
    scale = " (log scale)" if log_scale else ""
    parts.append(f'<text x="{left}" y="{height - 8}">{escape(value_label)}{scale}</text></svg>')
    return "".join(parts)
