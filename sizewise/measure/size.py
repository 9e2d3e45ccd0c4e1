"""Bytes: in memory by dtype, on disk as sizewise saves the artifact, and that artifact zip-compressed."""

from __future__ import annotations

import tempfile
import zipfile
from collections import defaultdict
from pathlib import Path

from torch import nn

from sizewise.measure.card import SizeStats
from sizewise.models.loaded import LoadedModel
from sizewise.models.torch_quant import stored_tensors


def memory_bytes_by_dtype(module: nn.Module) -> dict[str, int]:
    by_dtype: dict[str, int] = defaultdict(int)
    tensors = {id(t): t for t in [*module.parameters(), *module.buffers()]}
    for t in tensors.values():
        for part in stored_tensors(t):  # a torchao int8 weight: int8 values + float32 scales, not the float it mimics
            by_dtype[str(part.dtype).removeprefix("torch.")] += part.numel() * part.element_size()
    return dict(by_dtype)


# Deflate level 9 above this size costs minutes on a small CPU (a 135M-parameter LLM in fp32: ~540 MB) for a
# fraction of a percent less; larger artifacts are zipped at level 1 and the card's artifact name says so.
ZIP_LEVEL_9_LIMIT = 64 * 2**20


def artifact_bytes(files: list[Path]) -> tuple[int, int]:
    """(raw bytes, zip-deflated bytes) of ``files``."""
    raw = sum(f.stat().st_size for f in files)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "artifact.zip"
        level = 9 if raw <= ZIP_LEVEL_9_LIMIT else 1
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
            for f in files:
                zf.write(f, arcname=f.name)
        return raw, archive.stat().st_size


def onnx_size(path: str | Path) -> SizeStats:
    """An ONNX file (plus external data): its weights by dtype, and its bytes as shipped."""
    from sizewise.models.onnx_module import onnx_initializers

    by_dtype: dict[str, int] = defaultdict(int)
    for a in onnx_initializers(path).values():
        by_dtype[str(a.dtype)] += a.nbytes
    path = Path(path)
    files = [path, *path.parent.glob(path.name + ".data")]
    raw, zipped = artifact_bytes(files)
    return SizeStats(memory_bytes=sum(by_dtype.values()), memory_by_dtype=dict(by_dtype), disk_bytes=raw,
                     zip_bytes=zipped, artifact=" + ".join(f.name for f in files))


def measure_size(loaded: LoadedModel) -> SizeStats:
    from sizewise.models.artifact import save_model, weight_files
    from sizewise.models.onnx_module import OnnxModule

    if isinstance(loaded.module, OnnxModule):
        return onnx_size(loaded.module.path)
    by_dtype = memory_bytes_by_dtype(loaded.module)
    with tempfile.TemporaryDirectory() as tmp:
        if loaded.arch or loaded.inputs.kind == "tokens":
            files = weight_files(save_model(loaded, Path(tmp) / "model"))
        else:  # e.g. a trusted pickle: no architecture reference to record, but the weights are still the artifact
            from sizewise.models.sparse_format import save_sparse

            files = [Path(tmp) / "model.safetensors"]
            save_sparse(loaded.module.state_dict(), files[0])
        raw, zipped = artifact_bytes(files)
    return SizeStats(memory_bytes=sum(by_dtype.values()), memory_by_dtype=by_dtype, disk_bytes=raw, zip_bytes=zipped,
                     artifact=" + ".join(f.name for f in files))
