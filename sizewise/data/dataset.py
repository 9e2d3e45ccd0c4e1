"""The in-memory dataset every loader returns: named splits of inputs and labels, the task, and fidelity notes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

TASKS = ("image-classification", "text-classification", "sentence-similarity")


@dataclass
class Split:
    inputs: Any  # np.ndarray (N, C, H, W) float32 | list[str] | list[tuple[str, str]]
    labels: np.ndarray  # int64 class ids, or float32 scores for sentence similarity

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int | None) -> Split:
        if n is None or n >= len(self):
            return self
        return Split(self.inputs[:n], self.labels[:n])


@dataclass
class Dataset:
    name: str
    task: str
    splits: dict[str, Split]
    heldout: str  # the split metrics are reported on
    num_classes: int | None = None
    input_shape: tuple[int, ...] | None = None  # per-example shape for images
    notes: list[str] = field(default_factory=list)  # fidelity notes a result must repeat
    source: str = ""

    def split(self, name: str | None = None) -> Split:
        name = name or self.heldout
        if name not in self.splits:
            from sizewise.core.errors import DataError

            raise DataError(f"dataset '{self.name}' has no '{name}' split", hint=f"available: {sorted(self.splits)}")
        return self.splits[name]
