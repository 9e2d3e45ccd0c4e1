"""How to read a user's files when names alone do not say: which columns hold what, the task, the image size.

Every field is optional; a field left unset is found from the data (common column names, the most common image
size). The CLI maps ``--text-column``, ``--text-pair-column``, ``--label-column``, ``--columns``, ``--task`` and
``--image-size`` onto these fields one to one.
"""

from __future__ import annotations

from dataclasses import dataclass

from sizewise.core.errors import ConfigError
from sizewise.data.dataset import TASKS


@dataclass(frozen=True)
class DataOptions:
    text_column: str | None = None
    text_pair_column: str | None = None  # the second sentence of a pair (sentence-similarity, pair classification)
    label_column: str | None = None
    columns: tuple[str, ...] | None = None  # the names, in order, of a headerless CSV/TSV's columns
    task: str | None = None  # one of TASKS; otherwise it follows from the columns found
    image_size: int | tuple[int, int] | None = None  # (height, width), or one number for square; default: most common
    seed: int | None = None  # seeds the carved splits; None: the seed given to load_dataset

    def __post_init__(self) -> None:
        for name in ("text_column", "text_pair_column", "label_column"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"{name} must be a non-empty column name, got {value!r}")
        if self.columns is not None:
            if isinstance(self.columns, str):  # "a,b,c" from a command line
                object.__setattr__(self, "columns", tuple(c.strip() for c in self.columns.split(",")))
            columns = tuple(self.columns)
            if not columns or not all(isinstance(c, str) and c for c in columns) or len(set(columns)) != len(columns):
                raise ConfigError(f"columns must be distinct non-empty names, got {list(columns)!r}")
            object.__setattr__(self, "columns", columns)  # a list is accepted; stored as a tuple (frozen, hashable)
        if self.task is not None and self.task not in TASKS:
            raise ConfigError(f"unknown task '{self.task}'", hint=f"choose one of: {', '.join(TASKS)}")
        if self.image_size is not None:
            size = (self.image_size, self.image_size) if isinstance(self.image_size, int) else tuple(self.image_size)
            if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
                raise ConfigError(f"image_size must be a positive int or (height, width), got {self.image_size!r}")
            object.__setattr__(self, "image_size", size)
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)):
            raise ConfigError(f"seed must be an int, got {self.seed!r}")
