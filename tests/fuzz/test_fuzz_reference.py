"""Fuzzing the model-reference resolver (:func:`sizewise.load`): arbitrary strings, and files of every suffix it
dispatches on filled with damaged or random bytes.

Every input must load or raise one ``ModelReferenceError`` line (``UnsafePickleError`` included). By design a
``package.module:factory`` reference imports ``package.module`` and calls ``factory`` (the user typed it); the fuzzer
only checks that a module that does not exist gives one line, so factory-like strings are pointed at a module name
that cannot exist rather than at whatever random text happens to name (``os:fork`` is a valid reference).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
import struct
import sys
import zlib

import pytest
import torch
from hypothesis import strategies as st

import sizewise
from sizewise.core.errors import ModelReferenceError, UnsafePickleError
from sizewise.models import compressed_format as cf

from fuzzing import expect_sizewise_error, run_target

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")  # the loader's pattern for package.module:factory
ABSENT = "sizewise_fuzz_absent_"


def _no_real_module(ref: str) -> str:
    """A factory-like reference re-pointed at a module that cannot exist; anything else unchanged."""
    ref_ = ref.strip()
    return f"{ABSENT}{ref_}" if _FACTORY.match(ref_) and not ref_.startswith("zoo:") else ref


REFERENCES = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="abcxyz_.:/~-0123456789", max_size=20),
    st.sampled_from(["", " ", "zoo:", "zoo:nope", "zoo:digits-cnn", "zoo:" + "x" * 300, ":", "a:", ":b", "a:b:c",
                     "a..b:c", ".a:b", "a.:b", "~", "~nosuchuser", "~nosuchuser/m.onnx", "a" * 300, "a/" * 3000,
                     "x\x00y", "nope.onnx", "nope.gguf", "nope.swz", "nope.pt", "nope", "/dev/null", "/proc/self/mem",
                     ".", "/", "minilm ", "MINILM", "smollm2-135m/x"]),
).map(_no_real_module)

# Found by the fuzzer, not fixed here: none (the ones in models/loader.py were fixed; see the regressions below).
KNOWN_REFERENCE_CRASHES: frozenset[tuple[str, str]] = frozenset()


def test_fuzz_reference_strings(tmp_path, monkeypatch):
    """In an empty folder with an empty home, so a random string names no file of this machine."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    before = set(sys.modules)

    def body(reference: str) -> None:
        expect_sizewise_error(lambda: sizewise.load(reference), ModelReferenceError)

    # Some strings are real aliases ("minilm ", "smollm2-135m"): they load real models, which took 11.6 and 12.5 s
    # on a busy machine (transformers' first import; a GGUF dequantized) and tripped the 5 s deadline in the
    # 10-minute runs. 60 s still catches a hang.
    run_target("reference-strings", body, {"reference": REFERENCES}, ci_examples=300, deadline_s=60,
               known=KNOWN_REFERENCE_CRASHES)
    assert not [m for m in set(sys.modules) - before if m.startswith(ABSENT)]


# -- files of each suffix the resolver dispatches on ------------------------------------------------------------------

def _state_dict_bytes() -> bytes:
    buf = io.BytesIO()
    torch.save({"w": torch.arange(6.0).reshape(2, 3)}, buf)
    return buf.getvalue()


def _safetensors_bytes() -> bytes:
    from safetensors.torch import save

    return save({"w": torch.arange(6.0).reshape(2, 3)})


SEEDS = {".pt": _state_dict_bytes, ".safetensors": _safetensors_bytes,
         ".swz": lambda: cf.encode({"w": torch.arange(6.0).reshape(2, 3)}, {"arch": "zoo:nope"}),
         ".gguf": lambda: b"GGUF" + struct.pack("<IQQ", 3, 0, 0), ".onnx": lambda: b"\x08\x07\x12\x04test"}


@st.composite
def model_file(draw) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from([".pt", ".pth", ".bin", ".ckpt", ".pkl", ".safetensors", ".swz", ".gguf", ".onnx"]))
    seed = SEEDS.get(suffix, _state_dict_bytes)()
    how = draw(st.sampled_from(["mutated", "mutated", "random", "truncated"]))
    if how == "random":
        return suffix, draw(st.binary(max_size=200))
    if how == "truncated":
        return suffix, seed[:draw(st.integers(0, len(seed)))]
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if data and draw(st.booleans()):
            data[at] = draw(st.integers(0, 255))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    if suffix == ".swz" and len(data) > 32 and draw(st.booleans()):  # resealed: past the checksum
        data[-32:] = hashlib.sha256(bytes(data[:-32])).digest()
    return suffix, bytes(data)


# Found by the fuzzer in files outside this change, not fixed yet: (exception, file under sizewise/).
KNOWN_FILE_CRASHES: frozenset[tuple[str, str]] = frozenset()


def test_fuzz_model_files(tmp_path):
    def body(file: tuple[str, bytes], arch: str | None) -> None:
        suffix, data = file
        path = tmp_path / f"model{suffix}"
        path.write_bytes(data)
        expect_sizewise_error(lambda: sizewise.load(str(path), arch=arch), ModelReferenceError)
        path.unlink()

    run_target("reference-files", body, {"file": model_file(), "arch": st.sampled_from([None, "zoo:digits-cnn"])},
               ci_examples=120, deadline_s=10, known=KNOWN_FILE_CRASHES)


# -- named cases -------------------------------------------------------------------------------------------------------

def test_a_factory_in_a_module_that_does_not_exist_is_one_line():
    with pytest.raises(ModelReferenceError) as info:
        sizewise.load(f"{ABSENT}pkg.module:factory")
    assert info.value.message.startswith(f"cannot import factory '{ABSENT}pkg.module:factory': No module named")
    assert "\n" not in str(info.value)


class _RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def test_a_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps({"w": _RunsCode(str(marker))}))
    with pytest.raises(UnsafePickleError, match="pickle that can run arbitrary code"):
        sizewise.load(str(path), arch="zoo:digits-cnn")
    assert not marker.exists()


def test_regression_a_user_without_a_home_directory_is_one_line(tmp_path, monkeypatch):
    """``~nosuchuser`` made ``Path.expanduser`` raise RuntimeError at models/loader.py:84."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelReferenceError, match="~nosuchuser"):
        sizewise.load("~nosuchuser/model.onnx")


def test_regression_a_null_byte_after_a_tilde_is_one_line(tmp_path, monkeypatch):
    """Found by the long run: ``~\\x00`` made ``Path.expanduser`` raise ValueError (embedded null byte) at
    models/loader.py:84."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelReferenceError, match="cannot understand the model reference '~\\\\x00'"):
        sizewise.load("~\x00")


def test_regression_a_name_longer_than_the_filesystem_allows_is_one_line(tmp_path, monkeypatch):
    """A 300-byte name made ``Path.exists`` raise OSError (ENAMETOOLONG) at models/loader.py:85."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelReferenceError) as info:
        sizewise.load("a" * 300)
    assert "\n" not in str(info.value)


def _swz_with_manifest_arch(arch: str) -> bytes:
    data = cf.encode({"fc1.weight": torch.zeros(16, 64)}, {"arch": "zoo:digits-cnn"})
    _, _, header_len = struct.unpack_from("<4sBI", data)
    import json

    header = json.loads(zlib.decompress(data[9:9 + header_len]))
    header["manifest"]["arch"] = arch
    new = zlib.compress(json.dumps(header).encode())
    body = struct.pack("<4sBI", cf.MAGIC, cf.VERSION, len(new)) + new + data[9 + header_len:-32]
    return body + hashlib.sha256(body).digest()


def test_a_factory_named_inside_a_downloaded_file_is_not_called(tmp_path, monkeypatch):
    """SECURITY (found while fuzzing): a .swz file's manifest (or a run directory's sizewise-model.json) can name any
    importable `module:callable` as its architecture (os:fork, builtins:input, a module whose import has effects).
    A reference the user typed may run one by design; one read from a file needs their consent (trust_remote_code)."""
    marker = tmp_path / "ran"
    (tmp_path / "fuzz_side_effect.py").write_text(
        f"from pathlib import Path\n\ndef factory():\n    Path({str(marker)!r}).touch()\n    raise RuntimeError('x')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "m.swz").write_bytes(_swz_with_manifest_arch("fuzz_side_effect:factory"))
    with pytest.raises(ModelReferenceError, match="names the factory 'fuzz_side_effect:factory'.*--trust-remote-code"):
        sizewise.load(str(tmp_path / "m.swz"))
    assert not marker.exists() and "fuzz_side_effect" not in sys.modules  # not even imported
    with pytest.raises(ModelReferenceError, match="factory 'fuzz_side_effect:factory' raised RuntimeError"):
        sizewise.load(str(tmp_path / "m.swz"), trust_remote_code=True)  # the user's consent: it is called
    assert marker.exists()
