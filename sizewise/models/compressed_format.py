"""The Deep Compression file: codebooks, Huffman-coded indices and Huffman-coded sparse structure in one file.

Layout (``.swz``)::

    b"SWDC" | version: u8 | header length: u32 LE | header: zlib(JSON) | payload | SHA-256 of everything before it

The header holds the model manifest (so the file alone rebuilds the model) and, per tensor, how it is coded and
where its bytes are in the payload. A weight whose non-zero values take at most 256 distinct values (after weight
sharing) is coded as Han et al. did: a codebook of those values, one symbol per stored entry (0 = zero), and for
sparse layers the position of each entry as a gap from the previous one in ``index_bits`` bits (the width that
gives the smallest layer, 2 to 8), with a *filler* zero entry whenever a gap does not fit -- then both symbol streams are Huffman coded. A dense variant (no positions)
is used when it is smaller. Everything else (biases, norms, unshared weights) is stored raw. Decoding is exact:
the decoded tensors are bit-identical to the encoded ones; a truncated or altered file fails its checksum.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sizewise.core import huffman
from sizewise.core.errors import ModelReferenceError

MAGIC = b"SWDC"
VERSION = 1
FORMAT = "sizewise.deep-compression/1"
SUFFIX = ".swz"
WEIGHTS = "model.swz"
MAX_SHARED_VALUES = 256
_PREFIX = struct.Struct("<4sBI")
_DIGEST = 32
# An inflated header (the manifest and one entry per tensor, ~300 bytes each) past this is not one sizewise wrote.
MAX_HEADER_BYTES = 64 << 20
# A sparse tensor's trailing zeros are not stored, so its declared shape is not bounded by the file's length: the
# decoded tensors may be at most this many times the file (Deep Compression reaches 35-50x), or MIN_DECODED_LIMIT.
MAX_DECODED_RATIO = 1024
MIN_DECODED_LIMIT = 64 << 20
# The paper fixed the relative-index width (8 bits for conv layers, 5 for FC); the best width depends on each layer's
# density (wide: few fillers; narrow: short gaps), so unless one is given every width in this range is tried per layer.
INDEX_BITS_SEARCHED = tuple(range(2, 9))


class CorruptFileError(ModelReferenceError):
    pass


@dataclass(frozen=True)
class TensorStats:
    """One row of the paper's per-layer table (Tables 1-3 of Deep Compression)."""

    name: str
    shape: tuple[int, ...]
    coding: str  # "shared-sparse" | "shared-dense" | "raw"
    numel: int
    nonzero: int
    entries: int  # stored entries: non-zeros plus filler zeros (sparse), or every weight (dense)
    fillers: int
    codebook_size: int
    weight_bits_fixed: float  # bits per entry before Huffman: ceil(log2(codebook + zero))
    weight_bits_huffman: float
    index_bits_fixed: float
    index_bits_huffman: float
    bytes: int

    @property
    def kept(self) -> float:
        return self.nonzero / max(1, self.numel)

    @property
    def dense_bytes(self) -> int:
        return self.numel * 4

    @property
    def compression(self) -> float:
        return self.dense_bytes / max(1, self.bytes)


def _tensor_bytes(t: torch.Tensor) -> bytes:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _tensor_from(data: bytes, dtype: str, shape: list[int]) -> torch.Tensor:
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return raw.view(_dtype(dtype)).reshape(shape).clone()


def _gaps_with_fillers(positions: np.ndarray, index_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Relative indexing: each entry's distance to the previous (minus one); a filler entry every ``2**bits`` when
    the distance does not fit. Returns (gap symbols, is_filler) for the entry stream."""
    limit = 1 << index_bits
    distance = np.diff(np.asarray(positions, dtype=np.int64), prepend=-1)
    n_fillers = (distance - 1) // limit  # a filler per full `limit` the distance overruns
    real = np.cumsum(n_fillers + 1) - 1  # where each real entry lands in the entry stream
    gaps = np.full(int(real[-1]) + 1 if real.size else 0, limit - 1, dtype=np.int64)
    is_filler = np.ones(gaps.size, dtype=bool)
    gaps[real] = distance - n_fillers * limit - 1
    is_filler[real] = False
    return gaps, is_filler


def _positions_from_gaps(gaps: np.ndarray) -> np.ndarray:
    return np.cumsum(gaps + 1) - 1


class _Payload:
    """Byte parts with offsets; a candidate coding is built in its own payload and merged only if chosen."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.refs: list[dict[str, int]] = []

    def add(self, data: bytes) -> dict[str, int]:
        self.parts.append(data)
        self.size += len(data)
        ref = {"offset": self.size - len(data), "length": len(data)}
        self.refs.append(ref)
        return ref

    def merge(self, other: _Payload) -> None:
        for ref in other.refs:
            ref["offset"] += self.size
        self.parts.extend(other.parts)
        self.size += other.size
        self.refs.extend(other.refs)


def _huffman_stream(symbols: np.ndarray, alphabet: int, payload: _Payload) -> tuple[dict[str, Any], float]:
    counts = np.bincount(symbols, minlength=alphabet)
    code = huffman.code_lengths(counts)
    data, n_bits = huffman.encode(symbols, code)
    entry = {"lengths": payload.add(code.lengths.tobytes()), "bits": payload.add(data), "n_bits": n_bits,
             "alphabet": alphabet}
    return entry, n_bits / max(1, symbols.size)


def _encode_shared(t: torch.Tensor, index_bits: tuple[int, ...]) -> tuple[dict[str, Any], dict[str, Any], _Payload]:
    """The smallest of the dense coding (every weight) and the sparse codings (entries + gaps) at each relative-index
    width in ``index_bits`` of a shared-weight tensor."""
    flat = t.detach().cpu().contiguous().reshape(-1)
    nonzero_mask = flat != 0
    codebook, inverse = torch.unique(flat[nonzero_mask], return_inverse=True)
    symbols_all = torch.zeros(flat.numel(), dtype=torch.long)
    symbols_all[nonzero_mask] = inverse + 1  # 0 is "zero"
    alphabet = codebook.numel() + 1
    stats = {"nonzero": int(nonzero_mask.sum()), "codebook_size": int(codebook.numel()),
             "weight_bits_fixed": max(1, math.ceil(math.log2(alphabet)))}

    dense = _Payload()
    d_codebook = dense.add(_tensor_bytes(codebook))
    d_weights, d_bits = _huffman_stream(symbols_all.numpy(), alphabet, dense)
    best = ({"coding": "shared-dense", "codebook": d_codebook, "weights": d_weights, "entries": flat.numel()},
            {**stats, "entries": flat.numel(), "fillers": 0, "weight_bits_huffman": d_bits, "index_bits_fixed": 0,
             "index_bits_huffman": 0.0}, dense)

    positions = torch.nonzero(nonzero_mask).flatten().numpy()
    for bits in index_bits:
        gaps, is_filler = _gaps_with_fillers(positions, bits)
        entry_symbols = np.zeros(gaps.size, dtype=np.int64)
        entry_symbols[~is_filler] = symbols_all.numpy()[positions]
        sparse = _Payload()
        s_codebook = sparse.add(_tensor_bytes(codebook))
        s_weights, s_bits = _huffman_stream(entry_symbols, alphabet, sparse)
        s_gaps, g_bits = _huffman_stream(gaps, 1 << bits, sparse)
        if sparse.size < best[2].size:
            best = ({"coding": "shared-sparse", "codebook": s_codebook, "weights": s_weights, "gaps": s_gaps,
                     "entries": int(gaps.size), "index_bits": bits},
                    {**stats, "entries": int(gaps.size), "fillers": int(is_filler.sum()),
                     "weight_bits_huffman": s_bits, "index_bits_fixed": bits, "index_bits_huffman": g_bits}, sparse)
    return best


def _shareable(t: torch.Tensor) -> bool:
    if not t.is_floating_point() or t.dim() < 2:
        return False
    if ((t == 0) & torch.signbit(t)).any():  # -0.0 would decode as +0.0: such a tensor is stored raw, bit-exact
        return False
    nonzero = t[t != 0]
    return nonzero.numel() > 0 and torch.unique(nonzero).numel() <= MAX_SHARED_VALUES


def encode(state: dict[str, torch.Tensor], manifest: dict[str, Any], index_bits: int | None = None) -> bytes:
    """The whole file's bytes for ``state`` (tensors keep their dtype) and the model ``manifest``."""
    payload = _Payload()
    tensors, aliases, seen = [], {}, {}
    for name, t in state.items():
        key = (t.data_ptr(), t.numel(), tuple(t.shape))
        if key in seen and t.numel():
            aliases[name] = seen[key]  # a tied weight is stored once
            continue
        seen[key] = name
        meta = {"name": name, "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
        raw = _tensor_bytes(t)
        widths = (index_bits,) if index_bits else INDEX_BITS_SEARCHED
        try:
            coded = _encode_shared(t, widths) if _shareable(t) else None
        except huffman.CodeTooLongError:  # pathologically skewed symbols: raw is exact and not much bigger
            coded = None
        if coded and coded[2].size < len(raw):  # a codebook of many values can cost more than the raw tensor
            entry, stats, own = coded
            payload.merge(own)
            meta.update(entry, stats=stats)
        else:
            meta.update(coding="raw", data=payload.add(raw))
        tensors.append(meta)
    header = zlib.compress(json.dumps({"format": FORMAT, "manifest": manifest, "tensors": tensors,
                                       "aliases": aliases}, separators=(",", ":")).encode(), 9)
    body = _PREFIX.pack(MAGIC, VERSION, len(header)) + header + b"".join(payload.parts)
    return body + hashlib.sha256(body).digest()


def write(path: str | Path, state: dict[str, torch.Tensor], manifest: dict[str, Any],
          index_bits: int | None = None) -> int:
    """Write atomically; returns the file's size in bytes."""
    path = Path(path)
    data = encode(state, manifest, index_bits)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return len(data)


def _parse(data: bytes, source: str) -> tuple[dict[str, Any], memoryview]:
    if len(data) < _PREFIX.size + _DIGEST or data[:4] != MAGIC:
        raise CorruptFileError(f"{source} is not a sizewise compressed model (or is truncated)",
                               hint="expected a .swz file written by sizewise compress / cluster")
    _, version, header_len = _PREFIX.unpack_from(data)
    if version != VERSION:
        raise CorruptFileError(f"{source} uses compressed-format version {version}; this sizewise reads {VERSION}",
                               hint="upgrade sizewise")
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise CorruptFileError(f"{source} is corrupted or truncated: its SHA-256 checksum does not match",
                               hint="copy the file again; nothing was loaded")
    # Past the checksum the file is still untrusted (anyone can append a fresh SHA-256): every size it declares is
    # checked against its length before anything is allocated from it.
    start = _PREFIX.size
    if header_len > len(body) - start:
        raise CorruptFileError(f"{source} declares a {header_len:,}-byte header but holds {len(body) - start:,} bytes "
                               "after its prefix")
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(body[start:start + header_len], MAX_HEADER_BYTES)
        if inflater.unconsumed_tail:
            raise CorruptFileError(f"{source} has a header that inflates past {MAX_HEADER_BYTES:,} bytes")
        header = json.loads(text) if inflater.eof else None
    except (zlib.error, ValueError, RecursionError) as exc:
        raise CorruptFileError(f"{source} has an unreadable header: {_first_line(exc)}") from exc
    if not (isinstance(header, dict) and isinstance(header.get("tensors"), list)
            and isinstance(header.get("manifest"), dict) and isinstance(header.get("aliases", {}), dict)):
        raise CorruptFileError(f"{source} has a truncated or malformed header (expected tensors, manifest, aliases)")
    return header, memoryview(body)[start + header_len:]


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _dtype(name: Any) -> torch.dtype:
    dtype = getattr(torch, name, None) if isinstance(name, str) else None
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dtype


def _ref(ref: Any, payload_size: int, what: str) -> dict[str, int]:
    if not (isinstance(ref, dict) and _is_size(ref.get("offset")) and _is_size(ref.get("length"))
            and ref["offset"] + ref["length"] <= payload_size):
        raise ValueError(f"{what} points at {ref!r}, outside the {payload_size:,}-byte payload")
    return ref


def _checked_bytes(meta: Any, payload_size: int) -> int:
    """The bytes the tensor ``meta`` decodes to, after every size it declares is checked against the payload's
    length (raises ValueError). Raw and dense tensors are bounded by the file this way; a sparse tensor's trailing
    zeros are not stored, so its shape is bounded only by MAX_DECODED_RATIO and free memory (:func:`read_bytes`)."""
    if not (isinstance(meta, dict) and isinstance(meta.get("name"), str)):
        raise ValueError(f"a tensor entry without a name: {str(meta)[:80]}")
    name, shape, coding = meta["name"], meta.get("shape"), meta.get("coding")
    if not (isinstance(shape, list) and all(_is_size(n) for n in shape)):
        raise ValueError(f"tensor {name}: shape {str(shape)[:80]} is not a list of sizes")
    numel, itemsize = math.prod(shape), _dtype(meta.get("dtype")).itemsize
    if coding == "raw":
        length = _ref(meta.get("data"), payload_size, f"tensor {name}")["length"]
        if numel * itemsize != length:
            raise ValueError(f"tensor {name}: shape {shape} of {meta['dtype']} is {numel * itemsize:,} bytes, but its "
                             f"data is {length:,}")
        return length
    if coding not in ("shared-dense", "shared-sparse"):
        raise ValueError(f"tensor {name}: unknown coding {str(coding)[:40]!r}")
    if _ref(meta.get("codebook"), payload_size, f"tensor {name}'s codebook")["length"] % itemsize:
        raise ValueError(f"tensor {name}: its codebook is not a whole number of {meta['dtype']} values")
    entries = meta.get("entries")
    if not (_is_size(entries) and entries <= numel):
        raise ValueError(f"tensor {name}: {str(entries)[:40]} entries for {numel:,} elements")
    if coding == "shared-dense" and entries != numel:
        raise ValueError(f"tensor {name}: a dense coding of {entries:,} entries for {numel:,} elements")
    for part in ("weights", "gaps") if coding == "shared-sparse" else ("weights",):
        stream = meta.get(part)
        if not isinstance(stream, dict):
            raise ValueError(f"tensor {name}: no {part} stream")
        _ref(stream.get("lengths"), payload_size, f"tensor {name}'s {part} code")
        bits = _ref(stream.get("bits"), payload_size, f"tensor {name}'s {part} bits")["length"]
        if not (_is_size(stream.get("n_bits")) and entries <= stream["n_bits"] <= 8 * bits):
            raise ValueError(f"tensor {name}: {entries:,} {part} symbols cannot be coded in {stream.get('n_bits')!r} "
                             f"bits of a {bits:,}-byte stream")
    return numel * itemsize


def _slice(payload: memoryview, ref: dict[str, int]) -> bytes:
    return bytes(payload[ref["offset"]:ref["offset"] + ref["length"]])


def _decode_stream(payload: memoryview, stream: dict[str, Any], count: int) -> np.ndarray:
    code = huffman.HuffmanCode(np.frombuffer(_slice(payload, stream["lengths"]), dtype=np.uint8))
    return huffman.decode(_slice(payload, stream["bits"]), stream["n_bits"], count, code)


def _decode_tensor(meta: dict[str, Any], payload: memoryview) -> torch.Tensor:
    if meta["coding"] == "raw":
        return _tensor_from(_slice(payload, meta["data"]), meta["dtype"], meta["shape"])
    codebook = _tensor_from(_slice(payload, meta["codebook"]), meta["dtype"], [-1])
    values = torch.cat([torch.zeros(1, dtype=codebook.dtype), codebook])
    numel = int(np.prod(meta["shape"]))
    symbols = _decode_stream(payload, meta["weights"], meta["entries"])
    if symbols.size and symbols.max() >= values.numel():
        raise ValueError(f"tensor {meta['name']} has symbols past its codebook of {codebook.numel()} values")
    if meta["coding"] == "shared-dense":
        return values[torch.from_numpy(symbols)].reshape(meta["shape"])
    positions = _positions_from_gaps(_decode_stream(payload, meta["gaps"], meta["entries"]))
    if positions.size and positions[-1] >= numel:
        raise CorruptFileError(f"tensor {meta['name']} decodes to positions outside its shape")
    flat = torch.zeros(numel, dtype=codebook.dtype)
    flat[torch.from_numpy(positions)] = values[torch.from_numpy(symbols)]
    return flat.reshape(meta["shape"])


def read_bytes(data: bytes, source: str = "the file") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, manifest) from the bytes of a ``.swz`` file, verified."""
    header, payload = _parse(data, source)
    try:
        declared = sum(_checked_bytes(meta, len(payload)) for meta in header["tensors"])
    except ValueError as exc:
        raise CorruptFileError(f"{source} is malformed: {_first_line(exc)}") from exc
    if declared > max(MIN_DECODED_LIMIT, MAX_DECODED_RATIO * len(data)):
        raise CorruptFileError(f"{source} declares {declared:,} bytes of tensors in {len(data):,} bytes, more than "
                               f"{MAX_DECODED_RATIO} times its size", hint="nothing was allocated; Deep Compression "
                               "stores models in 1/35 to 1/50 of their size, not less")
    import psutil

    available = psutil.virtual_memory().available
    if declared > available:
        raise CorruptFileError(f"{source} declares {declared:,} bytes of tensors, more than the {available:,} bytes "
                               "of memory free here", hint="nothing was allocated; a file this large needs more memory")
    try:
        state = {meta["name"]: _decode_tensor(meta, payload) for meta in header["tensors"]}
    except (ValueError, KeyError, RuntimeError, TypeError, IndexError) as exc:
        raise CorruptFileError(f"{source} does not decode: {_first_line(exc)}") from exc
    for alias, target in header.get("aliases", {}).items():
        if not isinstance(target, str) or target not in state:
            raise CorruptFileError(f"{source} is malformed: alias {alias} names no tensor ({str(target)[:80]})")
        state[alias] = state[target]
    return state, header["manifest"]


def read(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelReferenceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return read_bytes(data, str(path))


def inspect(path: str | Path) -> tuple[list[TensorStats], dict[str, Any]]:
    """The per-layer table and file facts, from the header alone (after the checksum is verified)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelReferenceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    header, payload = _parse(data, str(path))
    try:
        rows = [_stats_row(meta, len(payload)) for meta in header["tensors"]]
        facts = {"format": str(header["format"]), "version": VERSION, "file_bytes": len(data),
                 "header_bytes": _PREFIX.unpack_from(data)[2], "manifest": header["manifest"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptFileError(f"{path} is malformed: {_first_line(exc)}") from exc
    return rows, facts


def _stats_row(meta: Any, payload_size: int) -> TensorStats:
    _checked_bytes(meta, payload_size)
    numel = math.prod(meta["shape"])
    if meta["coding"] == "raw":
        length = meta["data"]["length"]
        item_bits = length * 8 / max(1, numel)
        return TensorStats(meta["name"], tuple(meta["shape"]), "raw", numel, numel, numel, 0, 0,
                           item_bits, item_bits, 0.0, 0.0, length)
    s = meta["stats"]
    numbers = [s[k] for k in ("nonzero", "entries", "fillers", "codebook_size", "weight_bits_fixed",
                              "weight_bits_huffman", "index_bits_fixed", "index_bits_huffman")]
    if not all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers):
        raise ValueError(f"tensor {meta['name']}: its stats are not numbers")
    refs = [meta["codebook"], meta["weights"]["lengths"], meta["weights"]["bits"]]
    if "gaps" in meta:
        refs += [meta["gaps"]["lengths"], meta["gaps"]["bits"]]
    return TensorStats(meta["name"], tuple(meta["shape"]), meta["coding"], numel, *numbers,
                       sum(r["length"] for r in refs))
