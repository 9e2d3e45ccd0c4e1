"""Canonical Huffman coding of small-alphabet symbol streams (codebook indices, sparse index gaps).

Written here because what the compressed format needs is narrow and must be exact and compact: only the code
*lengths* are stored (one byte per symbol; canonical codes are rebuilt from them, as in DEFLATE), encoding is
vectorised with numpy, and decoding uses a lookup table on the next ``max_length`` bits.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

# The decoder's lookup table has 2**max_length entries: 20 bits keeps it at 1M entries. Only extremely skewed counts
# need longer codes; the compressed format then stores that tensor uncoded instead.
MAX_CODE_LENGTH = 20


class CodeTooLongError(ValueError):
    pass


@dataclass(frozen=True)
class HuffmanCode:
    lengths: np.ndarray  # uint8, one per symbol of the alphabet; 0 = symbol never occurs

    @property
    def max_length(self) -> int:
        return int(self.lengths.max()) if self.lengths.size else 0

    def codes(self) -> np.ndarray:
        """Canonical codes (as integers) from the lengths: shorter codes first, ties by symbol."""
        codes = np.zeros(len(self.lengths), dtype=np.uint64)
        order = sorted((int(n), s) for s, n in enumerate(self.lengths) if n)
        code, prev_len = 0, order[0][0] if order else 0
        for i, (length, symbol) in enumerate(order):
            if i:
                code = (code + 1) << (length - prev_len)
            codes[symbol] = code
            prev_len = length
        return codes


def code_lengths(counts: np.ndarray) -> HuffmanCode:
    """Huffman code lengths for symbol frequencies ``counts`` (a symbol that never occurs gets no code)."""
    counts = np.asarray(counts, dtype=np.int64)
    lengths = np.zeros(len(counts), dtype=np.uint8)
    used = [s for s in range(len(counts)) if counts[s] > 0]
    if len(used) == 1:  # one symbol still needs one bit per occurrence to be decodable by count
        lengths[used[0]] = 1
        return HuffmanCode(lengths)
    heap = [(int(counts[s]), s, [s]) for s in used]
    heapq.heapify(heap)
    depth = np.zeros(len(counts), dtype=np.int64)
    while len(heap) > 1:
        c1, t1, s1 = heapq.heappop(heap)
        c2, t2, s2 = heapq.heappop(heap)
        depth[s1 + s2] += 1
        heapq.heappush(heap, (c1 + c2, min(t1, t2), s1 + s2))
    if depth.max(initial=0) > MAX_CODE_LENGTH:
        raise CodeTooLongError(f"a Huffman code longer than {MAX_CODE_LENGTH} bits: the counts are too skewed")
    lengths[:] = depth
    return HuffmanCode(lengths)


def encode(symbols: np.ndarray, code: HuffmanCode) -> tuple[bytes, int]:
    """The packed bitstream (MSB first) and its length in bits."""
    symbols = np.asarray(symbols, dtype=np.int64)
    if symbols.size == 0:
        return b"", 0
    lengths = code.lengths.astype(np.int64)[symbols]
    if (lengths == 0).any():
        raise ValueError("a symbol to encode has no code")
    codes = code.codes()[symbols]
    width = code.max_length
    # every code left-aligned in a `width`-bit field, then only its first `length` bits are kept
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64)
    aligned = codes << (width - lengths).astype(np.uint64)
    bits = ((aligned[:, None] >> shifts[None, :]) & np.uint64(1)).astype(np.uint8)
    keep = np.arange(width)[None, :] < lengths[:, None]
    stream = bits[keep]
    return np.packbits(stream).tobytes(), int(stream.size)


def decode(data: bytes, n_bits: int, count: int, code: HuffmanCode) -> np.ndarray:
    """``count`` symbols from a bitstream written by :func:`encode`."""
    # The stream comes from a file: every declared size is checked before anything is allocated from it. A code
    # longer than MAX_CODE_LENGTH would need a 2**length table; a symbol takes at least one bit.
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (n_bits, count)):
        raise ValueError(f"bit and symbol counts must be integers, got {n_bits!r} and {count!r}")
    if not 0 <= count <= n_bits <= 8 * len(data):
        raise ValueError(f"{count} symbols in {n_bits} bits of a {len(data)}-byte stream do not fit")
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    width = code.max_length
    if not 0 < width <= MAX_CODE_LENGTH:
        raise ValueError(f"a code of {width} bits: code lengths must be 1 to {MAX_CODE_LENGTH} bits")
    used = code.lengths[code.lengths > 0].astype(np.int64)
    if int((np.int64(1) << (width - used)).sum()) > 1 << width:
        raise ValueError("the code lengths are not a prefix code (they break Kraft's inequality)")
    codes, lengths = code.codes(), code.lengths.astype(np.int64)
    # lookup table: every `width`-bit window -> (symbol, length) of the code it starts with
    table_symbol = np.full(1 << width, -1, dtype=np.int64)
    table_length = np.zeros(1 << width, dtype=np.int64)
    for symbol in np.flatnonzero(lengths):
        start = int(codes[symbol]) << (width - lengths[symbol])
        span = 1 << (width - lengths[symbol])
        table_symbol[start:start + span] = symbol
        table_length[start:start + span] = lengths[symbol]
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[:n_bits]
    if bits.size < n_bits:
        raise ValueError("the bitstream is shorter than its header says")
    # windows[i] = the `width` bits starting at bit i (zero-padded at the end)
    padded = np.concatenate([bits, np.zeros(width, dtype=np.uint8)]).astype(np.int64)
    windows = np.zeros(n_bits, dtype=np.int64)
    for j in range(width):  # width vector passes instead of an (n_bits x width) matrix
        windows |= padded[j:j + n_bits] << (width - 1 - j)
    out = np.empty(count, dtype=np.int64)
    pos = 0
    sym_at, len_at = table_symbol[windows], table_length[windows]  # decoded as if a code started at every bit
    for i in range(count):
        if pos >= n_bits:
            raise ValueError("the bitstream ended before all symbols were decoded")
        if len_at[pos] == 0:  # no code starts with these bits: stop here rather than loop `count` times in place
            raise ValueError(f"bit {pos} of the stream starts no code")
        out[i] = sym_at[pos]
        pos += int(len_at[pos])
    if pos != n_bits or (out < 0).any():
        raise ValueError("the bitstream does not decode to the expected symbols")
    return out


def mean_bits(counts: np.ndarray, code: HuffmanCode) -> float:
    counts = np.asarray(counts, dtype=np.int64)
    return float((counts * code.lengths).sum() / max(1, counts.sum()))
