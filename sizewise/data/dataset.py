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

TASKS = ("image-classification", "text-classification", "sentence-similarity", "causal-lm")
TRAIN, VALIDATION, TEST = "train", "validation", "test"
VALIDATION_FRACTION = 0.1
TEST_FRACTION = 0.1


def take(items: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of an array or a list."""
    return items[idx] if isinstance(items, np.ndarray) else [items[i] for i in idx]


@dataclass
class Split:
    # np.ndarray (N, C, H, W) float32 | list[str] | list[tuple[str, str]]; for causal-lm, the non-empty lines
    # (paragraphs) in file order, which a perplexity evaluator joins with "\n"
    inputs: Any
    labels: np.ndarray  # int64 class ids, float32 scores for sentence similarity; causal-lm: int64 zeros

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int | None) -> Split:
        if n is None or n >= len(self):
            return self
        return Split(self.inputs[:n], self.labels[:n])

    def sample(self, n: int | None, seed: int = 0) -> Split:
        """``n`` examples drawn from the whole split (seeded, kept in split order): what a subset for a proxy score,
        recovery training or calibration needs. ``head(n)`` is not that: image folders are read class by class, so
        the first examples of a split can all be one class (the first 1,250 of CIFAR-10's carved validation split
        hold classes 0-2 only)."""
        if n is None or n >= len(self):
            return self
        return self.subset(np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False)))

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
    # class id i -> label_names[i] where the source named its classes (string labels, a ClassLabel, class folders),
    # so a model saved later can carry id2label
    label_names: list[str] | None = None

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
    if VALIDATION in dataset.splits:
        return dataset
    carved, how = _carve(dataset, fraction, seed)
    if carved is None:
        return dataset
    rest, val = carved
    splits = {TRAIN: rest, VALIDATION: val, **{k: v for k, v in dataset.splits.items() if k != TRAIN}}
    return replace(dataset, splits=splits, validation_source=how, notes=[*dataset.notes, f"validation split {how}"])


def carve_test(dataset: Dataset, fraction: float = TEST_FRACTION, seed: int = 0) -> Dataset:
    """Give ``dataset`` a test split taken from its train split, the same way as :func:`carve_validation`; run it
    first, so validation is then carved from what is left and the two never overlap. The test split becomes the
    held-out one."""
    if TEST in dataset.splits:
        return dataset
    carved, how = _carve(dataset, fraction, seed)
    if carved is None:
        return dataset
    rest, test = carved
    splits = {TRAIN: rest, **{k: v for k, v in dataset.splits.items() if k != TRAIN}, TEST: test}
    return replace(dataset, splits=splits, heldout=TEST, notes=[*dataset.notes, f"test split {how}"])


def _carve(dataset: Dataset, fraction: float, seed: int) -> tuple[tuple[Split, Split] | None, str]:
    """(rest of train, carved part) and how it was carved, or (None, "") when train is absent or under 10 rows."""
    if TRAIN not in dataset.splits or len(dataset.splits[TRAIN]) < 10:
        return None, ""
    train = dataset.splits[TRAIN]
    n_out = max(1, int(round(len(train) * fraction)))
    if dataset.task == "causal-lm":
        # Lines of one article are not independent: a random pick would put neighbours of held-out paragraphs
        # into train. The tail of the text, kept whole, is the honest held-out part (and needs no seed).
        idx = np.arange(len(train))
        how = (f"carved from train: the last {n_out:,} of {len(train):,} lines ({fraction:.0%}), contiguous")
        return (train.subset(idx[:-n_out]), train.subset(idx[-n_out:])), how
    stratify = None
    if dataset.task != "sentence-similarity":
        _, counts = np.unique(train.labels, return_counts=True)
        if counts.min() >= 2 and n_out >= len(counts):
            stratify = train.labels
    from sklearn.model_selection import train_test_split

    keep_idx, out_idx = train_test_split(np.arange(len(train)), test_size=n_out, random_state=seed, shuffle=True,
                                         stratify=stratify)
    how = (f"carved from train: {n_out:,} of {len(train):,} examples ({fraction:.0%}), "
           f"{'stratified by class, ' if stratify is not None else ''}seed {seed}")
    return (train.subset(np.sort(keep_idx)), train.subset(np.sort(out_idx))), how
