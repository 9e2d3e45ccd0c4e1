"""``sizewise inspect FILE``: what is inside a Deep Compression file, layer by layer."""

from __future__ import annotations

from pathlib import Path

import typer

from sizewise.cli.common import console, handles_errors


@handles_errors
def inspect(
    path: Path = typer.Argument(..., help="A .swz file, or a run directory whose model/ holds one."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the table as JSON."),
) -> None:
    """Per-layer table of a compressed model: weights kept, bits after sharing and after Huffman, index bits."""
    import dataclasses

    from sizewise.core.errors import ModelReferenceError
    from sizewise.core.serialize import write_json_atomic
    from sizewise.models import compressed_format
    from sizewise.report.compressed_view import inspect_table

    candidates = [path, path / compressed_format.WEIGHTS, path / "model" / compressed_format.WEIGHTS]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise ModelReferenceError(f"no compressed model at {path}",
                                  hint="give a .swz file or a run directory from sizewise cluster / compress --recipe")
    rows, facts = compressed_format.inspect(found)
    console.print(inspect_table(rows, facts, title=f"{found} — {facts['file_bytes']:,} bytes"))
    if json_out:
        write_json_atomic(json_out, {"file": str(found), **{k: v for k, v in facts.items() if k != "manifest"},
                                     "tensors": [dataclasses.asdict(r) | {"kept": r.kept, "compression": r.compression}
                                                 for r in rows]})
