"""The accuracy budget every command that takes ``--max-drop`` understands.

``0.01`` (or ``1%``) means at most 1% of the baseline metric may be lost (relative); ``0.5pp`` means at most half a
percentage point (absolute). Metrics are compared in points: accuracy 0.981 is 98.1 points, Spearman x 100 already is.
For a score where lower is better (perplexity) a loss is a rise: ``5%`` lets perplexity rise by 5% of the baseline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sizewise.core.errors import ConfigError

_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(pp|%)?\s*$")
FRACTION_METRICS = {"accuracy"}  # reported as 0..1; shown and budgeted in points


def points(metric: str, value: float) -> float:
    return value * 100 if metric in FRACTION_METRICS else value


def quality_drop(metric: str, baseline: float, candidate: float) -> float:
    """How much worse ``candidate`` is than ``baseline``, in points (negative: better)."""
    from sizewise.core.metrics import higher_is_better

    change = points(metric, baseline) - points(metric, candidate)
    return change if higher_is_better(metric) else -change


@dataclass(frozen=True)
class Budget:
    value: float
    absolute: bool  # True: percentage points; False: fraction of the baseline

    def __post_init__(self) -> None:
        if self.value < 0 or (not self.absolute and self.value >= 1):
            raise ConfigError(f"a drop budget must be >= 0 (and < 1 when relative), got {self}")

    @classmethod
    def parse(cls, text: str | float) -> Budget:
        match = _PATTERN.match(str(text))
        if not match:
            raise ConfigError(f"cannot read the budget '{text}'",
                              hint="use a fraction like 0.01 (1% of the baseline), 1%, or points like 0.5pp")
        number, unit = float(match.group(1)), match.group(2)
        if unit == "pp":
            return cls(number, absolute=True)
        return cls(number / 100 if unit == "%" else number, absolute=False)

    def allowed_drop(self, metric: str, baseline: float) -> float:
        """The largest loss allowed, in points."""
        base = points(metric, baseline)
        return self.value if self.absolute else abs(base) * self.value

    def drop(self, metric: str, baseline: float, candidate: float) -> float:
        return quality_drop(metric, baseline, candidate)

    def allows(self, metric: str, baseline: float, candidate: float) -> bool:
        return self.drop(metric, baseline, candidate) <= self.allowed_drop(metric, baseline) + 1e-9

    def __str__(self) -> str:
        return f"{self.value:g}pp" if self.absolute else f"{self.value:g} (relative)"
