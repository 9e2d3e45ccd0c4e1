"""The per-layer table of a Deep Compression file, laid out like the paper's Tables 1-3."""

from __future__ import annotations

from rich import box
from rich.table import Table

from sizewise.core.units import format_bytes
from sizewise.models.compressed_format import TensorStats

HEADERS = ("layer", "weights", "kept", "weight bits\nshared\n→ Huffman", "index bits\nfixed\n→ Huffman", "bytes",
           "vs\nfp32")


def _bits(fixed: float, coded: float) -> str:
    return f"{fixed:.0f} → {coded:.2f}" if fixed else "-"


def inspect_table(rows: list[TensorStats], facts: dict, title: str = "") -> Table:
    """One row per shared (coded) weight; raw tensors (biases, norms, unshared weights) summed in one row.

    Bits are per stored entry: a non-zero weight or, in sparse layers, a filler zero the relative index needed.
    """
    table = Table(title=title or f"{facts['format']} — {format_bytes(facts['file_bytes'])}", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)  # no vertical rules: nine columns fit an 80-column terminal
    for header in HEADERS:
        table.add_column(header, justify="left" if header == "layer" else "right", no_wrap=True,
                         min_width=max(map(len, header.split("\n"))))
    coded = [r for r in rows if r.coding != "raw"]
    raw = [r for r in rows if r.coding == "raw"]
    for r in coded:
        table.add_row(r.name.removesuffix(".weight"), f"{r.numel:,}", f"{r.kept:.1%}",
                      _bits(r.weight_bits_fixed, r.weight_bits_huffman), _bits(r.index_bits_fixed, r.index_bits_huffman),
                      f"{r.bytes:,}", f"{r.compression:.1f}×")
    if raw:
        numel, stored = sum(r.numel for r in raw), sum(r.bytes for r in raw)
        table.add_row(f"raw ({len(raw)})", f"{numel:,}", "100%", "-", "-", f"{stored:,}",
                      f"{numel * 4 / max(1, stored):.1f}×")
    dense = sum(r.dense_bytes for r in rows)
    overhead = facts["file_bytes"] - sum(r.bytes for r in rows)
    table.add_row("file", f"{sum(r.numel for r in rows):,}",
                  f"{sum(r.nonzero for r in rows) / max(1, sum(r.numel for r in rows)):.1%}", "", "",
                  f"{facts['file_bytes']:,}", f"{dense / max(1, facts['file_bytes']):.1f}×", style="bold")
    fillers = sum(r.fillers for r in coded)
    table.caption = (f"total includes {overhead:,} bytes of header and checksum; vs fp32 = 4 bytes per value; "
                     f"bits are per stored entry ({fillers:,} filler zeros included)")
    return table
