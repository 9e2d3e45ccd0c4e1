"""A user's own data: CSV/TSV/JSON/JSONL/Parquet/text files or folders of them, ``save_to_disk`` folders and image
folders -> a :class:`Dataset`.

This module decides the layout (which files make which split, which columns hold what); the `datasets` library
parses (see :mod:`sizewise.data.hf`). In a folder, a file's split comes from a word of its name: ``train*``,
``valid*``/``dev*``/``val*`` or ``test*`` (``ag_train.csv``, ``dev.jsonl``, ``wiki.test.raw``). A single file, or a
folder whose names say no split, is the train split; test and then validation are carved from it, seeded (see
:func:`sizewise.data.dataset.carve_test`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


from sizewise.core.errors import DataError
from sizewise.data import hf
from sizewise.data.columns import choose_columns, class_ids, lm_split, score_values, text_values
from sizewise.data.dataset import TEST, TRAIN, VALIDATION, Dataset, Split, carve_test
from sizewise.data.options import DataOptions

# suffix -> (builder, its options). TSVs are read unquoted, as GLUE and most ML TSVs are written: a quote inside a
# sentence is text, not a field delimiter. Only empty fields are missing values: pandas' default also turns the
# strings "NA", "None" and "null" into missing, which are fine words and labels.
TABLE_FORMATS = {".csv": ("csv", {}), ".tsv": ("csv", {"sep": "\t", "quoting": 3}), ".json": ("json", {}),
                 ".jsonl": ("json", {}), ".parquet": ("parquet", {})}
TEXT_FORMATS = {".txt": ("text", {}), ".raw": ("text", {})}
FORMATS = {**TABLE_FORMATS, **TEXT_FORMATS}
CSV_NA = {"keep_default_na": False, "na_values": [""]}
# `datasets`' imagefolder reads labels (or other columns) for the images from these
IMAGE_METADATA = {"metadata.csv", "metadata.jsonl", "metadata.parquet"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def split_of(path: Path) -> str | None:
    """The split a file's name says, from its first word that starts like one (``wiki.test.raw`` -> test)."""
    for word in re.split(r"[^a-z0-9]+", path.stem.lower()):
        if word.startswith("train"):
            return TRAIN
        if word.startswith(("valid", "dev", "val")):
            return VALIDATION
        if word.startswith("test"):
            return TEST
    return None


def is_user_data(path: Path) -> bool:
    """Whether ``path`` looks like data this module reads (it may still turn out unreadable)."""
    if path.is_file():
        return path.suffix.lower() in FORMATS
    return path.is_dir() and (hf.is_saved_to_disk(path) or bool(_data_files(path)) or _has_images(path))


def _data_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in FORMATS)
    if any(p.name in IMAGE_METADATA for p in files) and _has_images(folder):  # an image folder's labels, not data
        files = [p for p in files if p.name not in IMAGE_METADATA]
    return files


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES for depth in ("*", "*/*", "*/*/*") for p in folder.glob(depth))


def _layout(path: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """{split: files} and notes on files left out."""
    if path.is_file():
        return {TRAIN: [path]}, []
    files, notes = _data_files(path), []
    if any(p.suffix.lower() in TABLE_FORMATS for p in files):  # a README.txt beside the tables is not data
        skipped = [p.name for p in files if p.suffix.lower() in TEXT_FORMATS]
        files = [p for p in files if p.suffix.lower() in TABLE_FORMATS]
        notes += [f"ignored text files beside the tables: {', '.join(skipped)}"] if skipped else []
    named = {p: split_of(p) for p in files}
    if not any(named.values()):
        return {TRAIN: files}, notes
    unnamed = [p.name for p, split in named.items() if split is None]
    notes += [f"ignored files whose names say no split (train*, valid*/dev*/val*, test*): {', '.join(unnamed)}"] \
        if unnamed else []
    layout: dict[str, list[Path]] = {}
    for p, split in named.items():
        if split is not None:
            layout.setdefault(split, []).append(p)
    return layout, notes


def _read_tables(layout: dict[str, list[Path]], options: DataOptions) -> dict[str, Any]:
    formats = {FORMATS[p.suffix.lower()][0] + str(FORMATS[p.suffix.lower()][1]) for ps in layout.values() for p in ps}
    every = [p for ps in layout.values() for p in ps]
    if len(formats) > 1:
        raise DataError(f"mixed formats: {', '.join(p.name for p in every)}", hint="keep one file format per folder")
    for p in every:
        if p.stat().st_size == 0:
            raise DataError(f"{p} is empty")
    builder, config = FORMATS[every[0].suffix.lower()]
    config = {**config, **(CSV_NA if builder == "csv" else {})}
    if options.columns is not None:
        if builder != "csv":
            raise DataError(f"--columns names the columns of a headerless CSV/TSV file, but {every[0].name} is "
                            f"{builder}, which names its own columns")
        config["column_names"] = list(options.columns)
    what = every[0] if len(every) == 1 else f"{every[0].parent} ({', '.join(p.name for p in every)})"
    return hf.read_files(builder, str(what), data_files={s: [str(p) for p in ps] for s, ps in layout.items()},
                         **config)


def read_user_data(path: Path, options: DataOptions, seed: int = 0) -> Dataset:
    """The dataset at ``path`` with a test split (carved from train when the source has none; validation is
    carved afterwards by :func:`sizewise.data.load_dataset`)."""
    layout: dict[str, list[Path]] = {}
    if path.is_dir() and hf.is_saved_to_disk(path):
        tables, notes, kind = hf.read_saved(path), [], "a save_to_disk folder"
    elif path.is_file() or _data_files(path):
        layout, notes = _layout(path)
        tables = _read_tables(layout, options)
        kind = "files (" + "; ".join(f"{split}: {', '.join(p.name for p in ps)}" for split, ps in layout.items()) + ")"
    else:
        tables, notes, kind = _read_image_folder(path), [], "an image folder"
    for split, table in tables.items():
        if table.num_rows == 0:
            source = ", ".join(str(p) for p in layout[split]) if split in layout else f"the {split} split of {path}"
            raise DataError(f"{source} has no rows")
    try:
        dataset = _to_dataset(tables, path, options, [f"read from {kind} with the `datasets` library", *notes])
    except UnicodeDecodeError as exc:  # pyarrow's JSON reader keeps bytes that are not UTF-8 until a column is read
        raise DataError(f"{path} holds text that is not UTF-8: {exc}", hint="save the file as UTF-8") from exc
    if VALIDATION in dataset.splits:
        dataset.validation_source = ", ".join(p.name for p in layout.get(VALIDATION, [])) or \
            "the source's validation split"
    dataset = carve_test(dataset, seed=seed)
    if TEST not in dataset.splits:
        if VALIDATION not in dataset.splits:
            raise DataError(f"{path} has {len(dataset.splits[TRAIN])} example(s): too few to set a validation and a "
                            "test split apart (10 or more are needed)", hint="add rows, or add a test* file")
        dataset.heldout = VALIDATION
        dataset.notes.append("no test split: results are reported on validation, which also takes decisions")
    return dataset


def _read_image_folder(path: Path) -> dict[str, Any]:
    # drop_labels=False: labels always come from the parent folder's name, so one class is reported as such
    # (by default `datasets` silently drops a label that has a single value)
    tables = hf.read_files("imagefolder", f"the image folder {path}", data_dir=str(path), drop_labels=False)
    label = next(iter(tables.values())).features.get("label")
    # (with a metadata.csv/jsonl beside the images, its columns replace the folder labels: choose_columns reads them)
    if type(label).__name__ == "ClassLabel" and len(label.names) < 2:
        raise DataError(f"image folder {path} has one class ({', '.join(label.names)}); classification needs a "
                        "subfolder for each of two or more classes")
    return tables


def _to_dataset(tables: dict[str, Any], path: Path, options: DataOptions, notes: list[str]) -> Dataset:
    order = [s for s in (TRAIN, VALIDATION, TEST) if s in tables]
    tables = {s: tables[s] for s in order}
    first = tables[order[0]]
    chosen = choose_columns(dict(first.features), options)
    for split, table in tables.items():
        missing = [c for c in (chosen.text, chosen.text_pair, chosen.label, chosen.image)
                   if c is not None and c not in table.column_names]
        if missing:
            raise DataError(f"the {split} split of {path} has no column '{missing[0]}' (its columns: "
                            f"{table.column_names})")
    label_names, input_shape, num_classes = None, None, None
    if chosen.task == "causal-lm":
        splits = {s: lm_split(t, chosen.text, s) for s, t in tables.items()}
        empty = [s for s, split in splits.items() if len(split) == 0]
        if empty:
            raise DataError(f"the {empty[0]} split of {path} has no text (every line is empty)")
    else:
        if chosen.task == "image-classification":
            from sizewise.data.images import image_arrays

            inputs, (height, width), note = image_arrays(tables, chosen.image, options.image_size)
            input_shape, notes = (3, height, width), [*notes, note]
        elif chosen.text_pair is not None:
            inputs = {s: list(zip(text_values(t, chosen.text, s), text_values(t, chosen.text_pair, s)))
                      for s, t in tables.items()}
        else:
            inputs = {s: text_values(t, chosen.text, s) for s, t in tables.items()}
        if chosen.task == "sentence-similarity":
            labels = {s: score_values(t, chosen.label, s) for s, t in tables.items()}
        else:
            labels, label_names = class_ids(tables, chosen.label)
            num_classes = len(label_names) if label_names else int(max(a.max(initial=0) for a in labels.values())) + 1
            if label_names:
                notes.append(f"class ids of the '{chosen.label}' column: " + _id_list(label_names))
        splits = {s: Split(inputs[s], labels[s]) for s in tables}
    columns = ", ".join(f"{what} '{c}'" for what, c in (("text", chosen.text), ("pair", chosen.text_pair),
                        ("label", chosen.label), ("image", chosen.image)) if c is not None)
    return Dataset(name=path.stem if path.is_file() else path.name, task=chosen.task, splits=splits,
                   heldout=TEST, num_classes=num_classes, input_shape=input_shape, source=str(path),
                   notes=[*notes, f"task {chosen.task}, columns: {columns}"], label_names=label_names)


def _id_list(names: list[str], shown: int = 10) -> str:
    ids = ", ".join(f"{i}={n}" for i, n in enumerate(names[:shown]))
    return ids + (f", ... ({len(names)} classes)" if len(names) > shown else "")


__all__ = ["DataOptions", "is_user_data", "read_user_data", "split_of"]
