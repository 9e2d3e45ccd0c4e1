"""Constants as data: every number that is not measured comes from a JSON file here, with its source and year."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def load_constants(name: str) -> dict[str, Any]:
    """Read ``sizewise/core/constants/<name>.json`` (cached; treat the result as read-only)."""
    text = resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)
