"""``--data``: a path whose format is detected, or the name ``digits``. Nothing is downloaded."""

from __future__ import annotations

import os
from pathlib import Path

from sizewise.core.errors import DataError
from sizewise.data.dataset import TEST, TRAIN, VALIDATION, Dataset, Split, carve_validation

ACCEPTED = ("'digits' (scikit-learn's bundled 8x8 digits); an MNIST-style .npz (x_train, y_train, x_test, y_test); "
            "a CIFAR-10 folder with train.zip/test.zip; an SST-2 folder of TSVs (sentence<TAB>label); "
            "an STS-B folder of TSVs (score, sentence1, sentence2 in columns 5-7)")


def load_dataset(spec: str | os.PathLike, seed: int = 0) -> Dataset:
    """The dataset at ``spec`` with train / validation / test splits (validation carved from train, seeded and
    stratified, where the source has none: see :func:`sizewise.data.dataset.carve_validation`)."""
    return carve_validation(_read(spec), seed=seed)


def _read(spec: str | os.PathLike) -> Dataset:
    from sizewise.data import formats

    text = str(spec).strip()
    if text == "digits":
        return formats.load_digits_dataset()
    path = Path(text).expanduser()
    if not path.exists():
        raise DataError(f"no such dataset path: '{text}'", hint=f"--data accepts {ACCEPTED}")
    if path.is_file() and path.suffix == ".npz":
        return formats.load_mnist_npz(path)
    if path.is_dir():
        if (path / "mnist.npz").is_file():
            return formats.load_mnist_npz(path / "mnist.npz")
        if (path / "test.zip").is_file() or (path / "train.zip").is_file():
            return formats.load_cifar10_folder(path)
        tsv = next((path / f"{s}.tsv" for s in ("dev", "test", "train") if (path / f"{s}.tsv").is_file()), None)
        if tsv is not None:
            first = tsv.read_text(encoding="utf-8").split("\n", 1)[0]
            if first.startswith("sentence\tlabel"):
                return formats.load_sst2_folder(path)
            if first.count("\t") >= 6:
                return formats.load_stsb_folder(path)
    raise DataError(f"unrecognized dataset format at '{text}'", hint=f"--data accepts {ACCEPTED}")


__all__ = ["ACCEPTED", "TEST", "TRAIN", "VALIDATION", "Dataset", "Split", "carve_validation", "load_dataset"]
