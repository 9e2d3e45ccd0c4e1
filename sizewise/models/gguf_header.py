"""Every count and size a GGUF file's header declares, checked against the bytes the file holds before the ``gguf``
package parses it.

Written by hand because ``gguf.GGUFReader`` trusts what the file declares: a 60-byte file whose metadata says it
holds an array of 2**40 items keeps the reader looping and allocating for minutes until memory runs out. Here each
count is bounded by the bytes left (an item takes at least one byte), so such a file is refused at once, with the
field that lies. The walk reads only the header (keys, values, tensor descriptions), never the weights.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from sizewise.core.errors import ModelReferenceError

_MAGIC = b"GGUF"
_VERSIONS = (2, 3)  # what gguf.GGUFReader reads; other versions are left to its own error
_SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUFValueType -> bytes
_STRING, _ARRAY = 8, 9
_MAX_DIMS = 8  # ggml has 4; room for newer files, none for a lie
_MAX_NESTING = 4


class _Lie(Exception):
    """Raised inside the walk; turned into one ModelReferenceError naming the file."""


class _Walk:
    def __init__(self, data, order: str):
        self.data, self.order, self.at = data, order, 0

    def left(self) -> int:
        return len(self.data) - self.at

    def take(self, fmt: str, what: str) -> int:
        size = struct.calcsize(fmt)
        if size > self.left():
            raise _Lie(f"it ends inside {what}")
        (value,) = struct.unpack_from(self.order + fmt, self.data, self.at)
        self.at += size
        return value

    def skip(self, n: int, what: str) -> None:
        if n > self.left():
            raise _Lie(f"{what} declares {n:,} bytes but only {self.left():,} are left")
        self.at += n

    def string(self, what: str) -> str:
        n = self.take("Q", what)
        start = self.at
        self.skip(n, what)
        return bytes(self.data[start:start + min(n, 80)]).decode("utf-8", "replace")

    def strings(self, count: int, what: str) -> None:
        unpack, data, at, end = struct.Struct(self.order + "Q").unpack_from, self.data, self.at, len(self.data)
        for _ in range(count):
            if at + 8 > end:
                raise _Lie(f"it ends inside {what}")
            at += 8 + unpack(data, at)[0]
            if at > end:
                raise _Lie(f"a string in {what} runs past the end of the file")
        self.at = at

    def value(self, kind: int, what: str, depth: int = 0) -> None:
        if kind in _SCALAR_BYTES:
            self.skip(_SCALAR_BYTES[kind], what)
        elif kind == _STRING:
            self.string(what)
        elif kind == _ARRAY and depth < _MAX_NESTING:
            item = self.take("I", what)
            count = self.take("Q", what)
            least = _SCALAR_BYTES.get(item, 8 if item == _STRING else 12)  # a string or an array: its length field
            if count * least > self.left():
                raise _Lie(f"{what} declares an array of {count:,} items but only {self.left():,} bytes are left")
            if item in _SCALAR_BYTES:
                self.skip(count * least, what)
            elif item == _STRING:  # a vocabulary: 50k-250k strings, so the loop is kept tight
                self.strings(count, what)
            else:
                for _ in range(count):
                    self.value(item, what, depth + 1)
        else:
            raise _Lie(f"{what} has value type {kind}, which GGUF does not define")


def check_gguf_header(path: str | Path) -> None:
    """Refuse a GGUF file whose header declares more than the file holds (counts, lengths, tensor data)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    path = Path(path)
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            _check(data, GGML_QUANT_SIZES, GGMLQuantizationType)
    except _Lie as lie:
        raise ModelReferenceError(f"the GGUF file {path} is damaged or hostile: {lie}",
                                  hint="nothing was loaded from it; download or convert the file again") from None
    except (OSError, ValueError):  # an empty file cannot be mapped: the reader's own error says it is not GGUF
        return


def _check(data, quant_sizes, quant_type) -> None:
    if bytes(data[:4]) != _MAGIC or len(data) < 24:
        return  # not GGUF at all: the reader says so
    order = "<" if struct.unpack_from("<I", data, 4)[0] in _VERSIONS else ">"
    walk = _Walk(data, order)
    walk.at = 4
    if walk.take("I", "the version") not in _VERSIONS:
        return
    tensors = walk.take("Q", "the tensor count")
    keys = walk.take("Q", "the key count")
    if keys * 13 > walk.left():  # a key: its length (8), a name (>= 1), a value type (4)
        raise _Lie(f"it declares {keys:,} metadata keys but holds {walk.left():,} bytes")
    alignment = 32
    for i in range(keys):
        key = walk.string(f"metadata key {i + 1}")
        kind = walk.take("I", f"metadata '{key}'")
        start = walk.at
        walk.value(kind, f"metadata '{key}'")
        if key == "general.alignment" and kind == 4:
            alignment = struct.unpack_from(order + "I", data, start)[0] or 1
    if tensors * 24 > walk.left():  # a tensor: name length (8), dimension count (4), type (4), offset (8)
        raise _Lie(f"it declares {tensors:,} tensors but holds {walk.left():,} bytes")
    spans = []
    for i in range(tensors):
        name = walk.string(f"tensor {i + 1}'s name")
        dims = walk.take("I", f"tensor '{name}'")
        if dims > _MAX_DIMS:
            raise _Lie(f"tensor '{name}' declares {dims:,} dimensions")
        elements = 1
        for _ in range(dims):
            elements *= walk.take("Q", f"tensor '{name}'")
        kind = walk.take("I", f"tensor '{name}'")
        offset = walk.take("Q", f"tensor '{name}'")
        try:
            block, block_bytes = quant_sizes[quant_type(kind)]
        except (ValueError, KeyError):
            raise _Lie(f"tensor '{name}' has type {kind}, which ggml does not define") from None
        spans.append((name, offset, elements // block * block_bytes))
    start = walk.at + (-walk.at % alignment)
    for name, offset, size in spans:
        if start + offset + size > len(data):
            raise _Lie(f"tensor '{name}' declares {size:,} bytes at offset {offset:,} but the file holds "
                       f"{len(data):,} bytes")
