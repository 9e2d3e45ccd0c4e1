"""The in-memory dataset every loader returns: named splits of inputs and labels, the task, and fidelity notes.

Split discipline: every dataset sizewise hands on has ``train``, ``validation`` and ``test`` (when the source has
them). Decisions — early stopping, calibration, fallbacks, a search's proxy and choice — read ``validation``; the
``test`` split is scored once, for the number a run reports. A source without a validation split gets one carved
from its train split, seeded and stratified, and ``validation_source`` says how (see :func:`carve_validation`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

TASKS = ("image-classification", "text-classification", "sentence-similarity")
TRAIN, VALIDATION, TEST = "train", "validation", "test"
VALIDATION_FRACTION = 0.1


def take(items: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of an array or a list."""
    return items[idx] if isinstance(items, np.ndarray) else [items[i] for i in idx]


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

    def subset(self, idx: np.ndarray) -> Split:
        return Split(take(self.inputs, idx), self.labels[idx])


@dataclass
class Dataset:
    name: str
    task: str
    splits: dict[str, Split]
    heldout: str = TEST  # the split a run reports on, scored once
    num_classes: int | None = None
    input_shape: tuple[int, ...] | None = None  # per-example shape for images
    notes: list[str] = field(default_factory=list)  # fidelity notes a result must repeat
    source: str = ""
    validation_source: str = ""  # how the validation split came about (a file, or carved from train)

    def split(self, name: str | None = None) -> Split:
        name = name or self.heldout
        if name not in self.splits:
            from sizewise.core.errors import DataError

            raise DataError(f"dataset '{self.name}' has no '{name}' split", hint=f"available: {sorted(self.splits)}")
        return self.splits[name]

    @property
    def decision_split(self) -> str:
        """The split decisions are made on: validation when there is one, else (a hand-made dataset) the held-out."""
        return VALIDATION if VALIDATION in self.splits else self.heldout

    def without_test(self) -> Dataset:
        """This dataset with the test split removed: what a compression step may see. Its held-out split becomes
        validation, so anything evaluated inside a step is evaluated on validation."""
        if TEST not in self.splits or VALIDATION not in self.splits:
            return self
        return replace(self, splits={k: v for k, v in self.splits.items() if k != TEST}, heldout=VALIDATION,
                       notes=list(self.notes))

    def describe_splits(self) -> dict[str, Any]:
        return {"sizes": {k: len(v) for k, v in self.splits.items()}, "reported": self.heldout,
                "decisions": self.decision_split, "validation_source": self.validation_source}


def carve_validation(dataset: Dataset, fraction: float = VALIDATION_FRACTION, seed: int = 0) -> Dataset:
    """Give ``dataset`` a validation split taken from its train split (seeded; stratified by class for
    classification when every class has at least two examples). A dataset that has one, or no train split, is
    returned as it is."""
    if VALIDATION in dataset.splits or TRAIN not in dataset.splits or len(dataset.splits[TRAIN]) < 10:
        return dataset
    train = dataset.splits[TRAIN]
    n_val = max(1, int(round(len(train) * fraction)))
    stratify = None
    if dataset.task != "sentence-similarity":
        _, counts = np.unique(train.labels, return_counts=True)
        if counts.min() >= 2 and n_val >= len(counts):
            stratify = train.labels
    from sklearn.model_selection import train_test_split

    train_idx, val_idx = train_test_split(np.arange(len(train)), test_size=n_val, random_state=seed, shuffle=True,
                                          stratify=stratify)
    how = (f"carved from train: {n_val:,} of {len(train):,} examples ({fraction:.0%}), "
           f"{'stratified by class, ' if stratify is not None else ''}seed {seed}")
    splits = {TRAIN: train.subset(np.sort(train_idx)), VALIDATION: train.subset(np.sort(val_idx)),
              **{k: v for k, v in dataset.splits.items() if k != TRAIN}}
    return replace(dataset, splits=splits, validation_source=how, notes=[*dataset.notes, f"validation split {how}"])
