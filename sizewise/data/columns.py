"""Which columns of a table hold the text, the sentence pair, the label, the image, and what task that makes.

Columns are found by the names people commonly give them, or named through :class:`DataOptions`. The task follows
from what was found: a sentence pair with a float score is sentence-similarity, text (or a pair) with a label is
text-classification, an image with a label is image-classification, and text alone is causal-lm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sizewise.core.errors import DataError
from sizewise.data.chat import CHAT_NAMES, is_conversation, to_chat
from sizewise.data.dataset import TRAIN, Split
from sizewise.data.options import DataOptions

TEXT_NAMES = ("text", "sentence", "content", "review")
PAIR_NAMES = (("sentence1", "sentence2"), ("text_a", "text_b"), ("premise", "hypothesis"),
              ("question1", "question2"))
LABEL_NAMES = ("label", "labels", "class", "category")
SCORE_NAMES = ("score", "similarity")
IMAGE_NAMES = ("image", "img")


@dataclass(frozen=True)
class Columns:
    """The columns a task reads; ``text_pair`` is set for sentence pairs, ``image`` for images."""

    task: str
    text: str | None = None
    text_pair: str | None = None
    label: str | None = None
    image: str | None = None


def _find(columns: list[str], names: tuple[str, ...]) -> str | None:
    lower = {c.lower(): c for c in columns}
    return next((lower[n] for n in names if n in lower), None)


def _given(columns: list[str], name: str | None, flag: str) -> str | None:
    if name is not None and name not in columns:
        raise DataError(f"column '{name}' given with {flag} is not among {columns}")
    return name


def _is_float(feature: Any) -> bool:
    return str(getattr(feature, "dtype", "")).startswith("float")


def choose_columns(features: dict[str, Any], options: DataOptions) -> Columns:
    """The columns to read and the task, or a DataError naming the columns found and the flag that fixes it."""
    columns = list(features)
    text = _given(columns, options.text_column, "--text-column")
    pair = _given(columns, options.text_pair_column, "--text-pair-column")
    label = _given(columns, options.label_column, "--label-column")
    chat = None if text or pair else _find(columns, CHAT_NAMES)
    if chat is not None:  # conversations: causal-LM text once the model's chat template writes them out (data.chat)
        if options.task not in (None, "causal-lm"):
            raise DataError(f"the '{chat}' column holds chat conversations, which sizewise reads as causal-LM text, "
                            f"not for {options.task}", hint="drop --task, or pass --text-column NAME")
        return Columns("causal-lm", text=chat)
    if text is None and pair is None:
        found = next((p for p in PAIR_NAMES if all(_find(columns, (n,)) for n in p)), None)
        text, pair = (_find(columns, (found[0],)), _find(columns, (found[1],))) if found else (None, None)
    text = text or _find(columns, TEXT_NAMES)
    image = next((c for c in columns if type(features[c]).__name__ == "Image"), None) or _find(columns, IMAGE_NAMES)
    score = _find(columns, SCORE_NAMES)
    label = label or _find(columns, LABEL_NAMES)
    task = options.task or _infer_task(columns, features, text, pair, label, score, image)

    def need(found: str | None, what: str, flag: str) -> str:
        if found is None:
            raise DataError(f"no {what} column among {columns}; pass {flag} NAME")
        return found

    if task == "image-classification":
        if image is None:
            raise DataError(f"no image column among {columns}; name the column of images 'image'")
        return Columns(task, image=image, label=need(label, "label", "--label-column"))
    if task == "causal-lm":
        return Columns(task, text=need(text, "text", "--text-column"))
    if task == "sentence-similarity":
        if text is None or pair is None:
            raise DataError(f"no sentence-pair columns among {columns}; pass --text-column NAME "
                            "--text-pair-column NAME")
        return Columns(task, text=text, text_pair=pair, label=need(label if options.label_column else
                                                                   score or label, "score", "--label-column"))
    return Columns(task, text=need(text, "text", "--text-column"), text_pair=pair,
                   label=need(label, "label", "--label-column"))


def _infer_task(columns: list[str], features: dict[str, Any], text: str | None, pair: str | None,
                label: str | None, score: str | None, image: str | None) -> str:
    if image is not None:
        return "image-classification"
    if text is None:
        raise DataError(f"no text column among {columns}; pass --text-column NAME")
    if pair is not None and (score is not None or (label is not None and _is_float(features[label]))):
        return "sentence-similarity"
    if label is not None:
        return "text-classification"
    if [c for c in columns if c not in (text, pair)]:  # other columns may hold the label: ask, do not guess
        raise DataError(f"no label column among {columns}; pass --label-column NAME (or --task causal-lm to read "
                        f"the '{text}' column alone)")
    return "causal-lm"


def text_values(table: Any, column: str, split: str) -> list[str]:
    values = list(table[column])
    missing = sum(v is None for v in values)
    if missing:
        raise DataError(f"{missing} row(s) of the {split} split have no '{column}'",
                        hint="fill or drop the empty rows")
    return [v if isinstance(v, str) else str(v) for v in values]


def lm_split(table: Any, column: str, split: str) -> Split:
    """Causal-lm: the non-empty lines (paragraphs) in file order, kept verbatim, or a column of conversations as
    :class:`~sizewise.data.chat.Chat` items; labels are int64 zeros."""
    values = [v for v in table[column] if v is not None]
    if values and is_conversation(values[0]):
        lines = [to_chat(v, row, split) for row, v in enumerate(values)]
    else:
        lines = [t for t in values if isinstance(t, str) and t.strip()]
    return Split(lines, np.zeros(len(lines), dtype=np.int64))


def score_values(table: Any, column: str, split: str) -> np.ndarray:
    values = list(table[column])
    if any(v is None for v in values):
        raise DataError(f"some rows of the {split} split have no '{column}' score")
    try:
        return np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"the '{column}' column of the {split} split holds a non-number: {exc}") from exc


def class_ids(tables: dict[str, Any], column: str) -> tuple[dict[str, np.ndarray], list[str] | None]:
    """int64 class ids per split, and the class names when the data names them (a ClassLabel, or string labels
    mapped to their sorted order in the train split)."""
    feature = next(iter(tables.values())).features[column]
    raw = {name: list(table[column]) for name, table in tables.items()}
    for name, values in raw.items():
        missing = sum(v is None or (isinstance(v, float) and np.isnan(v)) for v in values)
        if missing:
            raise DataError(f"{missing} row(s) of the {name} split have no '{column}'",
                            hint="fill or drop the unlabelled rows")
    if type(feature).__name__ == "ClassLabel":
        names = list(feature.names)
    elif all(isinstance(v, str) for values in raw.values() for v in values):
        names = sorted(set(raw[TRAIN] if TRAIN in raw else [v for values in raw.values() for v in values]))
        index = {n: i for i, n in enumerate(names)}
        for name, values in raw.items():
            unseen = next((v for v in values if v not in index), None)
            if unseen is not None:
                raise DataError(f"label {unseen!r} in the {name} split is not among the train split's labels "
                                f"{names}", hint="a model can only predict classes it was trained on")
        return {name: np.array([index[v] for v in values], dtype=np.int64) for name, values in raw.items()}, names
    else:
        names = None
    ids = {}
    for name, values in raw.items():
        try:
            array = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"the '{column}' column of the {name} split mixes numbers and text: {exc}") from exc
        if array.size and (not np.all(array == np.round(array)) or array.min() < 0):
            bad = next(v for v in array if v != round(v) or v < 0)
            raise DataError(f"label {bad:g} in the {name} split is not a class id (a whole number >= 0)",
                            hint="for sentence pairs with a similarity score, pass --task sentence-similarity")
        ids[name] = array.astype(np.int64)
    return ids, names
