"""``--data``: a path whose format is detected, or the name ``digits``. Nothing is downloaded.

The packed formats sizewise knows (digits, MNIST .npz, the CIFAR-10 zips, SST-2 and STS-B folders) are recognised
first, so their fidelity notes and split conventions hold; anything else is read through the `datasets` library
(:mod:`sizewise.data.userdata`), which is imported only then.
"""

from __future__ import annotations

import os
from pathlib import Path

from sizewise.core.errors import DataError
from sizewise.data.dataset import (TASKS, TEST, TRAIN, VALIDATION, Dataset, Split, carve_test,
                                   carve_validation)
from sizewise.data.options import DataOptions

ACCEPTED = ("'digits' (scikit-learn's bundled 8x8 digits); an MNIST-style .npz (x_train, y_train, x_test, y_test); "
            "a CIFAR-10 folder with train.zip/test.zip; an SST-2 folder of TSVs (sentence<TAB>label); "
            "an STS-B folder of TSVs (score, sentence1, sentence2 in columns 5-7); "
            "a CSV, TSV, JSON, JSONL or Parquet file, or a folder of them named train*/valid*/dev*/test*; "
            "a folder written by datasets' save_to_disk; an image folder (a subfolder per class, or train/ and "
            "test/ folders of them); a .txt/.raw text file or folder of them for causal-lm")


def load_dataset(spec: str | os.PathLike, seed: int = 0, options: DataOptions | None = None) -> Dataset:
    """The dataset at ``spec`` with train / validation / test splits (validation carved from train, seeded and
    stratified, where the source has none: see :func:`sizewise.data.dataset.carve_validation`; for a user's own
    files without a test split, test is carved first the same way). ``options`` names columns, the task or the
    image size where the data does not say; its ``seed``, when set, replaces ``seed``."""
    options = options or DataOptions()
    seed = options.seed if options.seed is not None else seed
    return carve_validation(_read(spec, options, seed), seed=seed)


def _existing_path(text: str) -> Path:
    """``text`` as an existing path; what the filesystem cannot even look up (``~nosuchuser``, a NUL byte, a name
    past the filesystem's length limit) is the same one-line error as a path that is not there."""
    shown = text.replace("\x00", "\\x00")
    try:
        path = Path(text).expanduser()
        if path.exists():
            return path
        why = ""
    except (RuntimeError, ValueError, OSError) as exc:  # unknown user, NUL byte, ENAMETOOLONG
        why = f" ({type(exc).__name__}: {exc})"
    raise DataError(f"no such dataset path: '{shown}'{why}", hint=f"--data accepts {ACCEPTED}")


def _read(spec: str | os.PathLike, options: DataOptions, seed: int) -> Dataset:
    text = str(spec).strip()
    if text == "digits":
        from sizewise.data import formats

        return formats.load_digits_dataset()
    path = _existing_path(text)
    # Naming columns means "read my file": the packed formats have fixed columns, so they are not tried then.
    if options.columns is None and options.text_column is None and options.text_pair_column is None \
            and options.label_column is None:
        builtin = _read_packed(path)
        if builtin is not None:
            return builtin
    from sizewise.data import userdata

    if userdata.is_user_data(path):
        return userdata.read_user_data(path, options, seed)
    raise DataError(f"unrecognized dataset format at '{text}'", hint=f"--data accepts {ACCEPTED}")


def _read_packed(path: Path) -> Dataset | None:
    """One of the packed formats sizewise knows, or None."""
    from sizewise.data import formats

    if path.is_file() and path.suffix == ".npz":
        return formats.load_mnist_npz(path)
    if not path.is_dir():
        return None
    if (path / "mnist.npz").is_file():
        return formats.load_mnist_npz(path / "mnist.npz")
    if (path / "test.zip").is_file() or (path / "train.zip").is_file():
        return formats.load_cifar10_folder(path)
    tsv = next((path / f"{s}.tsv" for s in ("dev", "test", "train") if (path / f"{s}.tsv").is_file()), None)
    if tsv is not None:
        first = tsv.read_text(encoding="utf-8").split("\n", 1)[0]
        if first.startswith("sentence\tlabel"):
            return formats.load_sst2_folder(path)
        if first.count("\t") >= 6 and _is_number(first.split("\t")[4]):  # a headered TSV of 7 columns is a user's
            return formats.load_stsb_folder(path)
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


__all__ = ["ACCEPTED", "TASKS", "TEST", "TRAIN", "VALIDATION", "DataOptions", "Dataset", "Split", "carve_test",
           "carve_validation", "load_dataset"]
