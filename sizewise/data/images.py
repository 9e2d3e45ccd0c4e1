"""Images from a `datasets` table -> one float32 array (N, 3, H, W) in [0, 1] at one size.

Models take one input shape, so every image is resized to one size: the one given, else the most common size in the
data (so most images are not resampled at all). Images are converted to RGB (grey and RGBA alike) and scaled to
[0, 1] without per-dataset normalisation, which a model's own preprocessing may add.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from typing import Any

import numpy as np

from sizewise.core.errors import DataError


def _open(value: Any, split: str, row: int) -> Any:
    """A PIL image from what a `datasets` Image column holds undecoded: {'bytes', 'path'}, a path, or an image."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict):
        value = io.BytesIO(value["bytes"]) if value.get("bytes") else value.get("path")
    if value is None:
        raise DataError(f"row {row} of the {split} split has no image")
    if not isinstance(value, (str, bytes, os.PathLike, io.IOBase)):
        raise DataError(f"row {row} of the {split} split holds {type(value).__name__} {str(value)[:40]!r} where an "
                        f"image belongs", hint="an image column holds image files' paths or their bytes")
    try:
        return Image.open(value)
    except (OSError, UnidentifiedImageError) as exc:
        what = value if isinstance(value, str) else f"row {row}"
        raise DataError(f"cannot read image {what} of the {split} split: {exc}") from exc


def _undecoded(table: Any, column: str) -> list[Any]:
    """The column's values without decoding every image up front (PIL reads sizes from headers alone)."""
    feature = table.features[column]
    if type(feature).__name__ == "Image" and feature.decode:
        from sizewise.data.hf import datasets_module

        table = table.cast_column(column, datasets_module().Image(decode=False))
    return list(table[column])


def image_arrays(tables: dict[str, Any], column: str,
                 size: tuple[int, int] | None) -> tuple[dict[str, np.ndarray], tuple[int, int], str]:
    """{split: (N, 3, H, W) float32}, the (height, width) used, and a note saying how it was chosen."""
    from PIL import Image

    values = {name: _undecoded(table, column) for name, table in tables.items()}
    how = "as given"
    if size is None:
        counts = Counter()
        for name, items in values.items():
            for row, value in enumerate(items):
                with _open(value, name, row) as image:
                    counts[(image.height, image.width)] += 1
        if not counts:
            raise DataError("no images to read")
        size, n = counts.most_common(1)[0]
        how = f"the most common size, {n:,} of {sum(counts.values()):,} images"
    height, width = size
    arrays = {}
    for name, items in values.items():
        out = np.empty((len(items), 3, height, width), dtype=np.float32)
        for row, value in enumerate(items):
            with _open(value, name, row) as image:
                rgb = image.convert("RGB")
                if rgb.size != (width, height):
                    rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
                out[row] = np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0
        arrays[name] = out
    note = (f"images as RGB at {height}x{width} (height x width; {how}; others resized bilinearly), scaled to "
            "[0, 1], not normalised")
    return arrays, (height, width), note
