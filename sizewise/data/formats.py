"""Readers for the formats ``--data`` accepts. Each returns a :class:`Dataset`; none downloads anything."""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

from sizewise.core.errors import DataError
from sizewise.data.dataset import Dataset, Split

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Per-channel statistics of the CIFAR-10 training set (the constants used throughout the literature).
CIFAR10_MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32).reshape(1, 3, 1, 1)
CIFAR10_STD = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32).reshape(1, 3, 1, 1)
MNIST_KEYS = ("x_train", "y_train", "x_test", "y_test")
# What reading a damaged zip / .npy / image raises besides OSError and ValueError (zipfile, zlib, numpy's header
# parser, unsupported compression or encryption).
_ARCHIVE_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, tokenize.TokenError, RuntimeError)
# Deflate cannot compress better than ~1032:1: a zip member that declares more is lying about its size.
_MAX_DEFLATE_RATIO = 1100
# A 32x32 CIFAR image is a few KB as JPEG or PNG; a member that declares more is not one (or is a zip bomb).
MAX_CIFAR_IMAGE_BYTES = 1 << 20


def load_digits_dataset(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]  # pixel values are 0..16
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return Dataset(name="digits", task="image-classification", splits={"train": Split(x_tr, y_tr),
                   "test": Split(x_te, y_te)}, heldout="test", num_classes=10, input_shape=(1, 8, 8),
                   notes=[f"scikit-learn load_digits, 8x8, stratified {1 - test_fraction:.0%}/{test_fraction:.0%} "
                          f"train/test split (seed {seed})"], source="sklearn")


def load_mnist_npz(path: Path) -> Dataset:
    try:
        with np.load(path) as npz:  # allow_pickle=False: an array of Python objects is refused
            _check_npz_sizes(npz.zip, path)
            arrays = {k: npz[k] for k in MNIST_KEYS}
    except KeyError as exc:
        raise DataError(f"{path} is an .npz without the MNIST keys: {exc}",
                        hint="expected x_train, y_train, x_test, y_test") from exc
    except (AttributeError, TypeError) as exc:  # np.load gave one array (an .npy file), not an archive
        raise DataError(f"{path} is not an .npz archive", hint="expected x_train, y_train, x_test, y_test") from exc
    except _ARCHIVE_ERRORS as exc:
        raise DataError(f"cannot read {path}: {(str(exc).strip().splitlines() or [type(exc).__name__])[0]}") from exc
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y) or x.dtype.kind not in "buif" or y.dtype.kind not in "buif":
            raise DataError(f"{path}: x_{split} must be N images (N, height, width) and y_{split} N labels, got "
                            f"{x.dtype}{list(x.shape)} and {y.dtype}{list(y.shape)}")

    def images(a: np.ndarray) -> np.ndarray:
        return (a.astype(np.float32) / 255.0)[:, None, :, :]

    return Dataset(
        name="mnist", task="image-classification",
        splits={"train": Split(images(arrays["x_train"]), arrays["y_train"].astype(np.int64)),
                "test": Split(images(arrays["x_test"]), arrays["y_test"].astype(np.int64))},
        heldout="test", num_classes=10, input_shape=(1, 28, 28), source=str(path),
        notes=["MNIST test images are the official t10k bytes; training images were recovered from a PNG "
               "re-encoding (99.998% of pixels within one grey level of the originals)."])


def _check_npz_sizes(archive: zipfile.ZipFile, path: Path) -> None:
    """Refuse, before numpy allocates anything, an array whose header declares more bytes than its zip member holds,
    a member that declares more than deflate can produce from its compressed bytes, or arrays that would not fit
    in memory."""
    from numpy.lib import format as npy

    total = 0
    for key in MNIST_KEYS:
        info = archive.getinfo(f"{key}.npy")  # KeyError: not an MNIST .npz
        if info.file_size > max(info.compress_size, 1) * _MAX_DEFLATE_RATIO or (
                info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size):
            raise DataError(f"{path}: {key} declares {info.file_size:,} bytes stored in {info.compress_size:,}",
                            hint="the archive is damaged or a zip bomb; nothing was extracted")
        with archive.open(info) as member:
            version = npy.read_magic(member)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"{key} is .npy format version {version}; expected 1.0 or 2.0")
            shape, _, dtype = (npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0)(member)
        declared = math.prod(shape) * dtype.itemsize
        if dtype.hasobject or declared > info.file_size:
            raise DataError(f"{path}: {key} declares a {dtype} array of shape {shape} ({declared:,} bytes) in a "
                            f"{info.file_size:,}-byte member", hint="the archive is damaged; nothing was allocated")
        total += declared
    import psutil

    if total > psutil.virtual_memory().available:
        raise DataError(f"{path} holds {total:,} bytes of arrays, more than the memory free here")


def _cache_dir() -> Path:
    return Path(os.environ.get("SIZEWISE_CACHE", Path.home() / ".cache" / "sizewise"))


def _decode_cifar_zip(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Decode the JPEGs once and cache the arrays, keyed by the zip's size and mtime (decoding takes ~30 s)."""
    from PIL import Image

    if not path.is_file():
        raise DataError(f"{path.parent} has no {path.name}", hint="a CIFAR-10 folder holds train.zip and test.zip")
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    cached = _cache_dir() / f"cifar10-{path.stem}-{key}.npz"
    if cached.exists():
        with np.load(cached) as npz:
            return npz["x"], npz["y"]
    try:
        archive = zipfile.ZipFile(path)
    except _ARCHIVE_ERRORS as exc:
        raise DataError(f"{path} is not a readable zip: {exc}") from exc
    names = sorted(n for n in archive.namelist() if n.lower().endswith((".jpg", ".jpeg", ".png")))
    for info in map(archive.getinfo, names):  # sizes are checked before anything is extracted
        if info.file_size > MAX_CIFAR_IMAGE_BYTES or info.file_size > max(info.compress_size, 1) * _MAX_DEFLATE_RATIO:
            raise DataError(f"{path}: {info.filename!r} declares {info.file_size:,} bytes ({info.compress_size:,} "
                            "compressed), not a 32x32 image", hint="the zip is damaged or a zip bomb; nothing was "
                                                                    "extracted")
    x = np.empty((len(names), 32, 32, 3), dtype=np.uint8)
    y = np.empty(len(names), dtype=np.int64)
    for i, name in enumerate(names):
        cls = Path(name).parent.name
        if cls not in CIFAR10_CLASSES:
            raise DataError(f"{path}: {name!r} is not under a CIFAR-10 class folder",
                            hint=f"expected <split>/<class>/NNNN.jpg with class in {', '.join(CIFAR10_CLASSES)}")
        y[i] = CIFAR10_CLASSES.index(cls)
        try:
            image = Image.open(io.BytesIO(archive.read(name)))
            if image.size != (32, 32):  # checked before the pixels are decoded
                raise DataError(f"{path}: {name!r} is {image.size[0]}x{image.size[1]}, not a 32x32 CIFAR-10 image")
            x[i] = np.asarray(image.convert("RGB"))
        except (*_ARCHIVE_ERRORS, SyntaxError, Image.DecompressionBombError) as exc:  # PIL: "broken PNG file"
            raise DataError(f"{path}: cannot read {name!r}: {type(exc).__name__}: "
                            f"{(str(exc).strip().splitlines() or [''])[0]}") from exc
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp.npz")
    np.savez(tmp, x=x, y=y)
    os.replace(tmp, cached)
    return x, y


def load_cifar10_folder(folder: Path) -> Dataset:
    splits = {}
    for split in ("train", "test"):
        x, y = _decode_cifar_zip(folder / f"{split}.zip")
        images = (x.astype(np.float32).transpose(0, 3, 1, 2) / 255.0 - CIFAR10_MEAN) / CIFAR10_STD
        splits[split] = Split(images.astype(np.float32), y)
    return Dataset(name="cifar10", task="image-classification", splits=splits, heldout="test", num_classes=10,
                   input_shape=(3, 32, 32), source=str(folder), label_names=list(CIFAR10_CLASSES),
                   notes=["CIFAR-10 images are JPEG re-encodings of the originals (lossy); accuracies can differ "
                          "slightly from papers that use the original pickles. Normalised with the usual "
                          "training-set channel mean/std."])


def _read_tsv(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def load_sst2_folder(folder: Path) -> Dataset:
    splits = {}
    for split in ("train", "dev", "test"):
        path = folder / f"{split}.tsv"
        if not path.exists():
            continue
        rows = _read_tsv(path)
        if not rows or rows[0][:2] != ["sentence", "label"]:
            raise DataError(f"{path} does not start with the header 'sentence<TAB>label'")
        try:
            texts = [r[0].strip() for r in rows[1:] if r]
            labels = np.array([int(r[1]) for r in rows[1:] if r], dtype=np.int64)
        except (IndexError, ValueError) as exc:
            raise DataError(f"{path}: a row is not 'sentence<TAB>0|1': {exc}") from exc
        splits[split] = Split(texts, labels)
    if "dev" in splits:
        splits["validation"] = splits.pop("dev")
    if "test" not in splits and "validation" in splits:  # GLUE's own test file has no labels: report on dev
        splits["test"] = splits.pop("validation")
    return Dataset(name="sst2", task="text-classification", splits=splits, heldout="test", num_classes=2,
                   source=str(folder), label_names=["negative", "positive"],  # GLUE's names for 0 and 1
                   validation_source="dev.tsv" if "validation" in splits else "",
                   notes=["SST-2 as released with GLUE; decisions on dev.tsv, reported metrics on the labelled "
                          "test.tsv."])


def load_stsb_folder(folder: Path) -> Dataset:
    splits = {}
    for split in ("train", "dev", "test"):
        path = folder / f"{split}.tsv"
        if not path.exists():
            continue
        pairs, scores = [], []
        for i, row in enumerate(_read_tsv(path), start=1):
            if len(row) < 7:  # some rows carry extra trailing columns; fewer than 7 is malformed
                raise DataError(f"{path}:{i} has {len(row)} columns, expected at least 7",
                                hint="STS-B rows are genre, file, year, id, score, sentence1, sentence2")
            try:
                scores.append(float(row[4]))
            except ValueError as exc:
                raise DataError(f"{path}:{i}: score {row[4]!r} is not a number") from exc
            pairs.append((row[5], row[6]))
        splits["validation" if split == "dev" else split] = Split(pairs, np.asarray(scores, dtype=np.float32))
    return Dataset(name="stsb", task="sentence-similarity", splits=splits, heldout="test", source=str(folder),
                   validation_source="dev.tsv" if "validation" in splits else "",
                   notes=["STS Benchmark (CC BY-SA 4.0); Spearman x 100 of cosine similarity vs gold score; "
                          "decisions on dev, reported on test."])
