"""Fuzzing the dataset readers behind ``--data`` (:func:`sizewise.load_dataset`): a user's CSV/TSV/JSON/JSONL files
(through the `datasets` library), MNIST-style ``.npz`` files and CIFAR-10 folders of zips.

Every input must give a Dataset or one-line ``DataError`` (any ``SizewiseError``), and an archive member that
declares more bytes than the archive can hold is refused before anything is extracted or allocated.
"""

from __future__ import annotations

import io
import shutil
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st

from sizewise.core.errors import DataError
from sizewise.data import DataOptions, load_dataset

from fuzzing import expect_sizewise_error, run_target

pytest.importorskip("datasets")
pytest.importorskip("PIL")


def check_load(path: Path, options: DataOptions | None = None) -> None:
    out: list = []
    if expect_sizewise_error(lambda: out.append(load_dataset(path, options=options))) is None:
        dataset = out[0]
        assert dataset.splits and all(len(s.inputs) == len(s.labels) for s in dataset.splits.values())


def mutate(data: bytes, draw) -> bytes:
    """1-4 byte-level edits: flip, set, truncate, insert, delete, duplicate a run."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "duplicate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(st.sampled_from([0, 0xFF, ord(","), ord("\t"), ord("\n"), ord('"'), ord("{"), 0x80]))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        elif op == "duplicate":
            data[at:at] = data[at:at + draw(st.integers(1, 64))]
    return bytes(data)


# -- text tables -----------------------------------------------------------------------------------------------------

def _table_seed(suffix: str) -> bytes:
    rows = [(f"sentence number {i} is {'good' if i % 2 else 'bad'}", "pos" if i % 2 else "neg") for i in range(12)]
    if suffix in (".csv", ".tsv"):
        sep = "," if suffix == ".csv" else "\t"
        return ("\n".join([f"text{sep}label", *(f"{t}{sep}{lab}" for t, lab in rows)]) + "\n").encode()
    import json

    lines = [json.dumps({"text": t, "label": lab}) for t, lab in rows]
    return ("\n".join(lines) + "\n").encode() if suffix == ".jsonl" else ("[" + ",".join(lines) + "]").encode()


CELLS = st.one_of(st.text(max_size=8), st.integers(-3, 3).map(str), st.sampled_from(["", "NA", "nan", "1e400", '"',
                                                                                    "0.5", "-1", "\x00"]))
HEADERS = st.lists(st.sampled_from(["text", "label", "sentence1", "sentence2", "score", "image", "", "text",
                                    "label", "a"]) | st.text(max_size=5), min_size=1, max_size=4)


@st.composite
def table_file(draw) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from([".csv", ".tsv", ".jsonl", ".json"]))
    how = draw(st.sampled_from(["mutated", "mutated", "generated", "random"]))
    if how == "mutated":
        return suffix, mutate(_table_seed(suffix), draw)
    if how == "random":
        return suffix, draw(st.binary(max_size=300))
    header = draw(HEADERS)
    rows = draw(st.lists(st.lists(CELLS, min_size=len(header), max_size=len(header)), max_size=14))
    if suffix in (".csv", ".tsv"):
        sep = "," if suffix == ".csv" else "\t"
        return suffix, "\n".join(sep.join(r) for r in [header, *rows]).encode("utf-8", "surrogatepass")
    import json

    objs = [dict(zip(header, r)) for r in rows]
    if draw(st.booleans()):  # numbers and nulls where strings were
        objs = [{k: draw(st.none() | st.integers() | st.floats() | st.just(v)) for k, v in o.items()} for o in objs]
    text = "\n".join(json.dumps(o) for o in objs) if suffix == ".jsonl" else json.dumps(objs)
    return suffix, text.encode("utf-8", "surrogatepass")


OPTIONS = st.one_of(st.none(), st.builds(DataOptions, text_column=st.sampled_from([None, "text", "a"]),
                                         label_column=st.sampled_from([None, "label", "score"]),
                                         task=st.sampled_from([None, "text-classification", "causal-lm",
                                                               "sentence-similarity"])))


# Found by the long run, outside this change (data/images.py): a JSON "image" column of numbers reaches
# PIL.Image.open(0), AttributeError. (A string there is opened as a local path: a data file can name any image file on
# the machine.)
KNOWN_TABLE_CRASHES: frozenset = frozenset()  # the one found (a number in an image column) is fixed
IMAGE_COLUMN_OF_NUMBERS = (b'{"text": null, "image": 0, "label": null}\n{"text": null, "image": null, "label": null}\n'
                           b'{"text": null, "image": null, "label": null}')  # the minimized input, as .jsonl


def test_regression_image_column_of_numbers_is_one_line(tmp_path):
    (tmp_path / "data.jsonl").write_bytes(IMAGE_COLUMN_OF_NUMBERS)
    with pytest.raises(DataError):
        load_dataset(tmp_path / "data.jsonl")


def test_fuzz_text_tables(tmp_path):
    def body(file: tuple[str, bytes], options: DataOptions | None) -> None:
        suffix, data = file
        shutil.rmtree(tmp_path / "d", ignore_errors=True)
        (tmp_path / "d").mkdir()
        path = tmp_path / "d" / f"data{suffix}"
        path.write_bytes(data)
        check_load(path, options)

    run_target("data-tables", body, {"file": table_file(), "options": OPTIONS}, ci_examples=60, deadline_s=20,
               known=KNOWN_TABLE_CRASHES)


# -- MNIST-style .npz ------------------------------------------------------------------------------------------------

def _npz_bytes(arrays: dict[str, np.ndarray], compressed: bool = False) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def _npz_seed() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x_train": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8), "y_train": np.arange(12) % 10,
            "x_test": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8), "y_test": np.arange(4)}


DTYPES = st.sampled_from([np.uint8, np.int64, np.float32, np.float64, np.bool_, np.complex64, "U3", "S2", "V4",
                          "<m8[s]", "M8[D]", np.float16])
SHAPES = st.lists(st.integers(0, 5), max_size=4).map(tuple)


def _npy_header_bomb(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    """An .npy member that declares ``shape`` and holds 16 bytes of data."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * ((64 - (10 + len(header) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + bytes(16)


@st.composite
def npz_file(draw) -> bytes:
    how = draw(st.sampled_from(["mutated", "generated", "bomb", "random"]))
    seed = _npz_seed()
    if how == "mutated":
        return mutate(_npz_bytes(seed, compressed=draw(st.booleans())), draw)
    if how == "random":
        return draw(st.binary(max_size=200))
    if how == "generated":
        arrays = dict(seed)
        for key in draw(st.lists(st.sampled_from(list(seed)), max_size=4, unique=True)):
            if draw(st.integers(0, 4)) == 0:
                del arrays[key]
            else:
                arrays[key] = np.zeros(draw(SHAPES), dtype=draw(DTYPES))
        return _npz_bytes(arrays, compressed=draw(st.booleans()))
    buf = io.BytesIO()  # a member whose header declares far more than the archive holds
    with zipfile.ZipFile(buf, "w") as zf:
        for key, value in seed.items():
            zf.writestr(f"{key}.npy", _npy_bytes(value))
        bomb = draw(st.sampled_from(list(seed)))
        shape = draw(st.sampled_from([(10**12,), (2**40, 28, 28), (2**31,), (10**6, 10**6), (2**62,), (-1,)]))
        zf.writestr(f"{bomb}.npy", _npy_header_bomb(shape))
    return buf.getvalue()


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_fuzz_npz(tmp_path):
    path = tmp_path / "mnist.npz"

    def body(data: bytes) -> None:
        path.write_bytes(data)
        check_load(path)

    run_target("data-npz", body, {"data": npz_file()}, ci_examples=150, deadline_s=10)


# -- CIFAR-10 folders of zips -----------------------------------------------------------------------------------------

def _image_bytes(size=(32, 32), fmt="JPEG", color=(200, 30, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


CLASS_PATHS = st.sampled_from(["train/cat/0000.jpg", "train/truck/0001.png", "test/dog/0002.jpeg", "cat/x.jpg",
                               "train/notaclass/0.jpg", "0.jpg", "train/cat/../../etc/x.jpg", "/abs/cat/x.jpg",
                               "train/cat/x.JPG", "train/ship/\u00e9.jpg"])


@st.composite
def member(draw) -> tuple[str, bytes]:
    name = draw(CLASS_PATHS)
    how = draw(st.sampled_from(["jpeg", "png", "odd-size", "mutated", "random", "gray"]))
    if how == "jpeg":
        return name, _image_bytes()
    if how == "png":
        return name, _image_bytes(fmt="PNG")
    if how == "odd-size":
        return name, _image_bytes(size=draw(st.sampled_from([(1, 1), (31, 32), (64, 64), (32, 1)])))
    if how == "gray":
        from PIL import Image

        buf = io.BytesIO()
        mode = draw(st.sampled_from(["L", "RGBA", "P", "1", "I;16", "CMYK"]))
        Image.new(mode, (32, 32)).save(buf, format="TIFF" if mode == "CMYK" else draw(st.sampled_from(["PNG", "TIFF"])))
        return name, buf.getvalue()
    if how == "mutated":
        return name, mutate(_image_bytes(fmt=draw(st.sampled_from(["JPEG", "PNG"]))), draw)
    return name, draw(st.binary(max_size=64))


def _zip(members: list[tuple[str, bytes]], compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def declare_size(archive: bytes, name: str, size: int) -> bytes:
    """``archive`` with member ``name``'s uncompressed size set to ``size`` in its local and central headers (the
    CRC and the data stay): what a zip bomb's directory says before anything is inflated."""
    data = bytearray(archive)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        info = zf.getinfo(name)
    struct.pack_into("<I", data, info.header_offset + 22, min(size, 0xFFFFFFFF))  # local header
    at = data.find(b"PK\x01\x02")
    while at != -1:
        name_len = struct.unpack_from("<H", data, at + 28)[0]
        if bytes(data[at + 46:at + 46 + name_len]).decode() == name:
            struct.pack_into("<I", data, at + 24, min(size, 0xFFFFFFFF))
        at = data.find(b"PK\x01\x02", at + 4)
    return bytes(data)


@st.composite
def cifar_folder(draw) -> dict[str, bytes]:
    files = {}
    for split in draw(st.lists(st.sampled_from(["train", "test"]), min_size=1, max_size=2, unique=True)):
        how = draw(st.sampled_from(["members", "members", "members", "mutated", "bomb", "random"]))
        members = draw(st.lists(member(), min_size=0, max_size=4))
        compression = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
        if how == "members":
            files[f"{split}.zip"] = _zip(members, compression)
        elif how == "mutated":
            files[f"{split}.zip"] = mutate(_zip([("train/cat/0.jpg", _image_bytes()), *members], compression), draw)
        elif how == "bomb":
            archive = _zip([("train/cat/0.jpg", _image_bytes()), *members], compression)
            files[f"{split}.zip"] = declare_size(archive, "train/cat/0.jpg",
                                                 draw(st.sampled_from([2**32 - 1, 2**31, 10**9, 2**20 + 1])))
        else:
            files[f"{split}.zip"] = draw(st.binary(max_size=100))
    return files


def test_fuzz_cifar_zips(tmp_path, monkeypatch):
    folder = tmp_path / "cifar"

    def body(files: dict[str, bytes]) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(tmp_path / "cache", ignore_errors=True)  # the decoded arrays are cached by size and mtime
        folder.mkdir()
        for name, data in files.items():
            (folder / name).write_bytes(data)
        check_load(folder)

    monkeypatch.setenv("SIZEWISE_CACHE", str(tmp_path / "cache"))
    run_target("data-cifar", body, {"files": cifar_folder()}, ci_examples=120, deadline_s=10)


# -- the spec string itself -------------------------------------------------------------------------------------------

# Found by the fuzzer, not fixed here (sizewise/data/__init__.py is outside this change): `Path(spec).expanduser()`
# raises RuntimeError for "~nosuchuser" and ValueError for "~\x00", `path.exists()` OSError (ENAMETOOLONG) for a
# name over 255 bytes.
KNOWN_SPEC_CRASHES = frozenset({("RuntimeError", "data/__init__.py"), ("OSError", "data/__init__.py"),
                                ("ValueError", "data/__init__.py")})  # "~\x00": expanduser's embedded null byte


def test_fuzz_dataset_spec_strings(tmp_path, monkeypatch):
    """Arbitrary ``--data`` strings, run in an empty folder with an empty home: random text names nothing there,
    so what is tested is how a string that names nothing, or cannot be a path, is refused. (Naming a large real
    folder, e.g. the home directory, makes `datasets` walk all of it: slow, but what was asked for.)"""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))

    def body(spec: str) -> None:
        out: list = []
        if expect_sizewise_error(lambda: out.append(load_dataset(spec))) is None:
            assert out[0].splits

    # without line breaks: "no such dataset path: '{spec}'" (data/__init__.py) echoes the string as it is
    relative = st.text(max_size=30).map(lambda s: "".join(c for c in s if len(f"a{c}b".splitlines()) == 1)).filter(
        lambda s: not s.strip().startswith("/") and ".." not in s)
    specs = st.one_of(relative, st.sampled_from(["~", "~nosuchuser", "~nosuchuser/x.csv", "a" * 5000, "x\x00y",
                                                 "/dev/null", "/proc/self/mem", "digits", " digits ",
                                                 "a/" * 3000, "~" + "a" * 300, "nope.csv", "nope.npz"]))
    run_target("data-spec", body, {"spec": specs}, ci_examples=150, known=KNOWN_SPEC_CRASHES)


# -- regressions: inputs that crashed the readers before (exception and place noted) ----------------------------------
# Small archives are built by a one-line recipe from tiny arrays/images (deterministic bytes, ~1 KB); short inputs are
# kept as literal bytes.

def _npz(**arrays) -> bytes:
    return _npz_bytes(arrays)


def _mnist(**override) -> dict[str, np.ndarray]:
    arrays = {"x_train": np.zeros((12, 1, 1), np.uint8), "y_train": np.zeros(12, np.int64),
              "x_test": np.zeros((1, 1, 1), np.uint8), "y_test": np.zeros(1, np.int64)}
    return {**arrays, **override}


def _npz_with_member(key: str, npy_bytes: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, value in _mnist().items():
            zf.writestr(f"{name}.npy", npy_bytes if name == key else _npy_bytes(value))
    return buf.getvalue()


def _flip_after(data: bytes, marker: bytes, offset: int, value: int | None = None) -> bytes:
    """``data`` with the byte ``offset`` after the first ``marker`` flipped (or set to ``value``)."""
    at = data.index(marker) + offset
    return data[:at] + bytes([data[at] ^ 1 if value is None else value]) + data[at + 1:]


NPZ_REGRESSIONS = {
    "empty_file": (lambda: b"", "EOFError at formats.py:39"),
    "zip_magic_only": (lambda: b"PK\x03\x04", "zipfile.BadZipFile at formats.py:39"),
    "damaged_member_header": (lambda: _flip_after(_npz(**_mnist()), b"y_train.npy", -30),  # its local header
                              "zipfile.BadZipFile at formats.py:40"),
    "images_fewer_than_labels": (lambda: _npz(**_mnist(x_train=np.zeros((10, 1, 1), np.uint8))),
                                 "IndexError at data/dataset.py:24 (carving validation)"),
    "header_declares_1e12_float64": (lambda: _npz_with_member("x_train", _npy_header_bomb((10**12,))),
                                     "MemoryError (7.3 TiB) at formats.py:40"),
    "python2_style_header": (lambda: _npz_with_member("x_train", b"\x93NUMPY\x01\x00\x10\x00{'descr': 1L, (\n"),
                             "tokenize.TokenError at formats.py:40"),
    "images_one_dimensional": (lambda: _npz(**_mnist(x_train=np.zeros(12, np.uint8))), "IndexError at formats.py:48"),
    "images_of_strings": (lambda: _npz(**_mnist(x_train=np.full((12, 1, 1), "a"))), "ValueError at formats.py:48"),
}


def test_regression_jsonl_with_bytes_that_are_not_utf8(tmp_path):
    """Found by the long run: pyarrow's JSON reader keeps a string with byte 0x80 until the column is read, then
    UnicodeDecodeError escaped from data/columns.py:106 (via userdata.py:126)."""
    rows = [b'{"text": "\x80sentence 0 is bad", "label": "neg"}'] + [
        b'{"text": "sentence %d is fine", "label": "%s"}' % (i, b"pos" if i % 2 else b"neg") for i in range(1, 12)]
    (tmp_path / "data.jsonl").write_bytes(b"\n".join(rows) + b"\n")
    with pytest.raises(DataError, match="holds text that is not UTF-8"):
        load_dataset(tmp_path / "data.jsonl")


@pytest.mark.parametrize("name", NPZ_REGRESSIONS)
def test_npz_regression_is_a_one_line_data_error(name, tmp_path):
    (tmp_path / "m.npz").write_bytes(NPZ_REGRESSIONS[name][0]())
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        load_dataset(tmp_path / "m.npz")
    assert time.monotonic() - start < 5 and "\n" not in str(info.value)


_JPG = "train/cat/0.jpg"


def _cifar(archive: bytes, test: bool = True) -> dict[str, bytes]:
    return {"train.zip": archive, **({"test.zip": archive} if test else {})}


BROKEN_PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00 \x00\x00\x00 \x08\x02\x00\x00\x00\xfc\x18\xed\xa3"
              b"\x00\x00\x00+IDATx\x9c\xed\xcdA\x01\x00\x00\x04\xc0@\x04\xd1?\x8aXJ\xf0\xbb\x05\xd8\xe5t\xc7g\xf5z"
              b"\x07XJ\xf0\xbb\x05\xd8\xe5t\xc7g\xf5z\x07\x00\x00\x00\x00\x00\x00\x00\x00\x00\x87-\xe0\x05\x01D"
              b"\xe2v\x99\xbb\x00\x00\x00\x00IEND\xaeB`\x82")
CIFAR_REGRESSIONS = {
    "only_train_zip": (lambda: _cifar(_zip([(_JPG, _image_bytes())]), test=False),
                       "FileNotFoundError at formats.py:67"),
    "member_not_an_image": (lambda: _cifar(_zip([(_JPG, b"")])), "PIL.UnidentifiedImageError at formats.py:86"),
    "image_31_pixels_wide": (lambda: _cifar(_zip([(_JPG, _image_bytes(size=(31, 32)))])),
                             "ValueError (broadcast) at formats.py:86"),
    "truncated_jpeg": (lambda: _cifar(_zip([(_JPG, _image_bytes()[:200])])), "OSError at formats.py:86"),
    "corrupt_deflate_stream": (lambda: _cifar(_flip_after(_zip([(_JPG, _image_bytes())], zipfile.ZIP_DEFLATED),
                                                          b"0.jpg", 5, value=0xFF)), "zlib.error at formats.py:86"),
    "member_crc_mismatch": (lambda: _cifar(_flip_after(_zip([(_JPG, _image_bytes())]), b"JFIF", 40)),
                            "zipfile.BadZipFile at formats.py:86"),
    # found by the long run: a PNG whose IDAT chunk has 14 bytes repeated; PIL raises SyntaxError (formats.py:145)
    "png_with_a_broken_chunk": (lambda: _cifar(_zip([(_JPG, BROKEN_PNG)])), "SyntaxError from PIL at formats.py:86"),
    # found by the long run: a line break in a member's name, quoted into the message (two lines; formats.py:82)
    "line_break_in_a_member_name": (lambda: _cifar(_zip([("train\ncat/0.jpg", _image_bytes())])),
                                    "a DataError of two lines at formats.py:82"),
}


@pytest.mark.parametrize("name", CIFAR_REGRESSIONS)
def test_cifar_regression_is_a_one_line_data_error(name, tmp_path, monkeypatch):
    monkeypatch.setenv("SIZEWISE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "c").mkdir()
    for file, data in CIFAR_REGRESSIONS[name][0]().items():
        (tmp_path / "c" / file).write_bytes(data)
    with pytest.raises(DataError) as info:
        load_dataset(tmp_path / "c")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("declared", [64 << 20, 2**32 - 1], ids=["real_deflate_bomb_64mb", "header_says_4gb"])
def test_a_zip_bomb_member_is_refused_before_extracting(declared, tmp_path, monkeypatch):
    """A member that declares a huge uncompressed size: 64 MiB of zeros deflated to 64 KB (a real bomb, scaled
    down), or a 450-byte JPEG whose directory entry says 4 GiB. Refused from the directory alone."""
    monkeypatch.setenv("SIZEWISE_CACHE", str(tmp_path / "cache"))
    if declared == 64 << 20:
        archive = _zip([(_JPG, bytes(declared))], zipfile.ZIP_DEFLATED)
        assert len(archive) < 100_000
    else:
        archive = declare_size(_zip([(_JPG, _image_bytes())], zipfile.ZIP_DEFLATED), _JPG, declared)
    (tmp_path / "c").mkdir()
    for file in ("train.zip", "test.zip"):
        (tmp_path / "c" / file).write_bytes(archive)

    def never(*args, **kwargs):
        raise AssertionError("a member was extracted")

    monkeypatch.setattr(zipfile.ZipFile, "read", never)
    monkeypatch.setattr(zipfile.ZipFile, "open", never)
    with pytest.raises(DataError, match=f"declares {declared:,} bytes .* not a 32x32 image") as info:
        load_dataset(tmp_path / "c")
    assert "zip bomb; nothing was extracted" in str(info.value)


@pytest.mark.parametrize("spec", ["~nosuchuser/data.csv", "a" * 300, "~\x00"],
                         ids=["unknown_user", "name_too_long", "null_byte_after_tilde"])
def test_dataset_spec_regression_is_one_line(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError):
        load_dataset(spec)
