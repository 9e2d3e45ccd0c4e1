"""``benchmarks/results/distill.md`` is assembled from the sections the distillation benchmarks write into their JSON
files, so each script can be re-run alone without dropping the others' numbers."""

from __future__ import annotations

import json
from pathlib import Path

from _common import RESULTS

PARTS = ("distill_sst2.json", "distill_stsb.json", "distill_curve.json")


def render() -> Path:
    lines = ["# Distillation and transfer learning", "",
             "Each section below was written by the script its command names, on the machine it names."]
    for name in PARTS:
        path = RESULTS / name
        if path.is_file():
            lines += ["", json.loads(path.read_text())["markdown"].rstrip()]
    reading = RESULTS / "distill_reading.md"  # the written interpretation of the sections above
    if reading.is_file():
        lines += ["", reading.read_text().rstrip()]
    out = RESULTS / "distill.md"
    out.write_text("\n".join(lines) + "\n")
    return out
