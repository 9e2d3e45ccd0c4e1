"""The one door to the `datasets` library: it parses CSV/TSV/JSON/Parquet/text files, image folders and
``save_to_disk`` folders, so no parser is hand-written here.

`datasets` is imported inside these functions: `import sizewise.data` must stay light, and the package is an extra
(``sizewise[data]``). Reading never goes online (HF_DATASETS_OFFLINE), shows no progress bars, and leaves nothing
behind: the builders' Arrow cache goes to a temporary folder that is removed once the tables are in memory.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sizewise.core.errors import DataError
from sizewise.core.optional import require

# The names `datasets` gives splits, and the other names people give them, -> ours.
SPLIT_NAMES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
               "val": "validation", "dev": "validation", "test": "test", "testing": "test"}


def datasets_module() -> Any:
    """`datasets`, set up to stay offline and quiet, or the error naming the ``data`` extra."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # read when `datasets` is first imported
    datasets = require("datasets", "data", "reading CSV/JSON/Parquet/text files and image folders")
    for flag in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):  # in case something imported `datasets` before us
        if hasattr(datasets.config, flag):
            setattr(datasets.config, flag, True)
    return datasets


@contextmanager
def _quiet(datasets: Any) -> Iterator[None]:
    """No progress bars, and no logged error beside the one-line DataError we raise; the user's own settings
    come back afterwards (they may use `datasets` in the same process)."""
    verbosity, bars_off = datasets.logging.get_verbosity(), datasets.utils.are_progress_bars_disabled()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        datasets.logging.set_verbosity(verbosity)
        if not bars_off:
            datasets.enable_progress_bars()


def _reading_errors(datasets: Any) -> tuple[type[BaseException], ...]:
    """What a bad file makes `datasets` raise (pandas' and pyarrow's parse errors are ValueErrors)."""
    import pyarrow

    errors: list[type[BaseException]] = [OSError, ValueError, KeyError, pyarrow.ArrowException]
    for name in ("DatasetGenerationError", "DataFilesNotFoundError", "DatasetNotFoundError"):
        if hasattr(datasets.exceptions, name):
            errors.append(getattr(datasets.exceptions, name))
    return tuple(errors)


def root_cause(exc: BaseException) -> str:
    """The innermost error's first line: `datasets` wraps a parse error in a generic 'error while generating'."""
    while exc.__cause__ is not None or (exc.__context__ is not None and not exc.__suppress_context__):
        exc = exc.__cause__ or exc.__context__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def read_files(builder: str, what: str, data_files: dict[str, list[str]] | None = None,
               data_dir: str | None = None, **config: Any) -> dict[str, Any]:
    """{split: datasets.Dataset} of one packaged builder ('csv', 'json', 'parquet', 'text', 'imagefolder')."""
    datasets = datasets_module()
    try:
        with _quiet(datasets), tempfile.TemporaryDirectory(prefix="sizewise-datasets-") as cache:
            loaded = datasets.load_dataset(builder, data_files=data_files, data_dir=data_dir, cache_dir=cache,
                                           keep_in_memory=True, **config)
    except _reading_errors(datasets) as exc:
        cause = root_cause(exc)
        # A split whose files hold a header and no row fails with this; say so in the user's terms.
        empty = re.search(r'Instruction "([^"]+)" corresponds to no data', cause)
        if empty and data_files and empty[1] in data_files:
            raise DataError(f"{', '.join(data_files[empty[1]])} has no rows") from exc
        raise DataError(f"cannot read {what}: {cause}") from exc
    return {SPLIT_NAMES.get(name, name): table for name, table in loaded.items()}


def is_saved_to_disk(path: Path) -> bool:
    """A folder written by ``Dataset.save_to_disk`` (state.json) or ``DatasetDict.save_to_disk``."""
    return (path / "dataset_dict.json").is_file() or ((path / "state.json").is_file()
                                                      and (path / "dataset_info.json").is_file())


def read_saved(path: Path) -> dict[str, Any]:
    """{split: datasets.Dataset} of a save_to_disk folder; a lone Dataset is the train split."""
    datasets = datasets_module()
    try:
        with _quiet(datasets):
            loaded = datasets.load_from_disk(str(path), keep_in_memory=True)
    except _reading_errors(datasets) as exc:
        raise DataError(f"cannot read the save_to_disk folder {path}: {root_cause(exc)}") from exc
    if isinstance(loaded, datasets.Dataset):
        return {"train": loaded}
    unknown = [name for name in loaded if name not in SPLIT_NAMES]
    if unknown:
        raise DataError(f"{path} has splits {sorted(loaded)}; {unknown[0]!r} is not a train, validation or test split",
                        hint="name the splits train, validation (or valid/dev) and test")
    return {SPLIT_NAMES[name]: table for name, table in loaded.items()}
