"""The model artifact every sizewise command writes, so commands chain (``train`` -> ``prune`` -> ``quantize``).

A model directory holds ``sizewise-model.json`` (how to rebuild the architecture, the task, the input spec) and the
weights in safetensors: Hugging Face models through ``save_pretrained`` (config + tokenizer travel along), everything
else through :mod:`sizewise.models.sparse_format`, which stores pruned weights as bitmask + values (so disk bytes
really drop), tied weights once, and layer shapes that let a structurally pruned model be rebuilt.
A run directory is ``OUT/`` with the model in ``OUT/model/`` and ``OUT/card.json`` beside it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path

import torch

from sizewise.core.errors import ModelReferenceError
from sizewise.models import compressed_format
from sizewise.models.loaded import InputSpec, LoadedModel
from sizewise.models.lowrank import apply_lowrank_structure, lowrank_ranks

MANIFEST = "sizewise-model.json"
FORMAT = "sizewise.model/1"
WEIGHTS = "model.safetensors"
ENCODING_DEEP_COMPRESSION = "deep-compression"
ENCODING_GGUF = "gguf"  # the weights are a GGUF file a step wrote (metadata["gguf_file"]), for llama.cpp
# the weights are a folder ONNX Runtime GenAI's builder wrote (metadata["ortgenai_dir"]): graph, weights, genai_config
ENCODING_ORTGENAI = "ortgenai"
ENCODINGS = (ENCODING_DEEP_COMPRESSION, ENCODING_GGUF, ENCODING_ORTGENAI)
IN_MEMORY = "in-memory"  # the arch of a module wrapped in Python: no reference rebuilds it
_PROVENANCE = ("gguf", "notes")  # metadata kept in the manifest: a reloaded model still says where it came from


def find_model_dir(path: Path) -> Path | None:
    """``path`` itself, or its ``model/`` child, when it holds a sizewise manifest."""
    for candidate in (path, path / "model"):
        if (candidate / MANIFEST).is_file():
            return candidate
    return None


def save_model(loaded: LoadedModel, directory: str | Path, encoding: str | None = None) -> Path:
    """Write ``loaded`` to ``directory`` atomically (a temporary sibling renamed into place).

    ``encoding="deep-compression"`` writes the weights as one Huffman-coded ``model.swz``
    (:mod:`sizewise.models.compressed_format`) instead of safetensors.
    """
    from sizewise.models.sparse_format import FORMAT as SPARSE_FORMAT
    from sizewise.models.sparse_format import pays_to_store_sparse, save_sparse

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    encoding = encoding or loaded.metadata.get("encoding")  # a model read from a .swz is written back as one
    if encoding is not None and encoding not in ENCODINGS:
        raise ModelReferenceError(f"unknown weight encoding '{encoding}'", hint=f"known: {', '.join(ENCODINGS)}")
    if encoding == ENCODING_GGUF:
        return _save_gguf(loaded, directory)
    if encoding == ENCODING_ORTGENAI:
        return _save_ortgenai(loaded, directory)
    with _staged(directory) as tmp:
        manifest = {"format": FORMAT, "source": loaded.source, "task": loaded.task,
                    **({"label_names": loaded.metadata["label_names"]} if loaded.metadata.get("label_names") else {}),
                    "num_classes": loaded.num_classes, "reference": loaded.reference}
        ranks = {} if loaded.is_onnx else lowrank_ranks(loaded.module)
        if ranks:  # factorized layers: rebuilt from these ranks before the weights are loaded
            manifest["lowrank"] = ranks
        if loaded.is_onnx:  # the file is the artifact (plus the tokenizer of a text model, which is not counted as weights)
            shutil.copy2(loaded.module.path, tmp / "model.onnx")
            manifest.update(arch="onnx", weights="model.onnx")
            if loaded.inputs.tokenizer is not None:
                loaded.inputs.tokenizer.save_pretrained(tmp)
                manifest["input"] = {"kind": "tokens", "default_seq_len": loaded.inputs.default_seq_len}
            elif loaded.inputs.kind == "tensor":
                manifest["input"] = {"kind": "tensor", "shape": list(loaded.inputs.shape), "name": loaded.inputs.name}
        elif loaded.inputs.kind == "tokens" or _is_hf_image_model(loaded):  # text (incl. causal LMs) and images
            from sizewise.models.torch_quant import QUANTIZED_LINEAR, dynamic_linear_modules, quantized_state

            if dynamic_linear_modules(loaded.module):  # torch int8: config + tokenizer from HF, weights exact int8
                loaded.module.config.save_pretrained(tmp)
                save_sparse(quantized_state(loaded.module), tmp / WEIGHTS)
                manifest["torch_quantization"] = QUANTIZED_LINEAR
            elif ranks or encoding or pays_to_store_sparse(loaded.module.state_dict()):
                # config + state dict: save_pretrained cannot rebuild low-rank layers, and stores zeros densely
                config = loaded.module.config
                config.architectures = config.architectures or [type(loaded.module).__name__]
                config.save_pretrained(tmp)
                if not encoding:
                    save_sparse(loaded.module.state_dict(), tmp / WEIGHTS)
                    if not ranks:
                        manifest["weights_format"] = SPARSE_FORMAT
            else:
                loaded.module.save_pretrained(tmp, safe_serialization=True)
            from sizewise.models.hf import save_preprocessors

            save_preprocessors(loaded, tmp)  # the tokenizer or the image processor
            manifest.update(arch="huggingface", input=_hf_input_manifest(loaded.inputs),
                            pruned_shapes=not ({"torch_quantization", "lowrank"} & set(manifest))
                            and _differs_from_config(loaded.module))
            if encoding and "torch_quantization" not in manifest:
                manifest.update(weights=compressed_format.WEIGHTS, weights_format=compressed_format.FORMAT)
                compressed_format.write(tmp / compressed_format.WEIGHTS, loaded.module.state_dict(), manifest)
        elif loaded.inputs.kind == "tensor":
            from sizewise.models.torch_quant import QUANTIZED_LINEAR, dynamic_linear_modules, quantized_state

            if dynamic_linear_modules(loaded.module):
                save_sparse(quantized_state(loaded.module), tmp / WEIGHTS)
                manifest["torch_quantization"] = QUANTIZED_LINEAR
            elif encoding:
                manifest.update(weights=compressed_format.WEIGHTS, weights_format=compressed_format.FORMAT)
            else:
                save_sparse(loaded.module.state_dict(), tmp / WEIGHTS)
            manifest["dtype"] = loaded.inputs.dtype
            # a module wrapped in Python (sizewise.wrap) has no reference that rebuilds it: its weights are saved, and
            # reloading them needs the module (load_model_dir's ``template``)
            manifest = {"weights": WEIGHTS, "weights_format": SPARSE_FORMAT, **manifest, "arch": loaded.arch or IN_MEMORY,
                        "input": {"kind": "tensor", "shape": list(loaded.inputs.shape), "name": loaded.inputs.name}}
            if encoding:  # written last: the file carries the finished manifest, so it also loads on its own
                compressed_format.write(tmp / compressed_format.WEIGHTS, loaded.module.state_dict(), manifest)
        manifest.update({k: loaded.metadata[k] for k in _PROVENANCE if loaded.metadata.get(k)})
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return directory


@contextlib.contextmanager
def _staged(directory: Path):
    """A sibling folder to write into, swapped in for ``directory`` only once everything is written: a kill
    mid-save leaves the previous directory (or none), never half of one."""
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        yield tmp
        if directory.exists():
            shutil.rmtree(directory)
        tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_runtime_copy(loaded: LoadedModel, what: str, source: str | None, present: bool, fingerprint_key: str,
                        method: str) -> None:
    """A model whose weights live in a runtime's own file(s) (GGUF, an ORT GenAI folder) is saved by copying them:
    they must still exist, and hold the weights the module has now."""
    from sizewise.models.gguf import weights_fingerprint

    if not present:
        raise ModelReferenceError(f"the {what} of '{loaded.reference}' is gone ({source})",
                                  hint="run the quantization step again")
    if weights_fingerprint(loaded.module) != loaded.metadata.get(fingerprint_key):
        raise ModelReferenceError(f"the weights of '{loaded.reference}' changed after its {what} was written",
                                  hint=f"put the {method} quantization last in the plan")


def _runtime_manifest(loaded: LoadedModel, arch: str, weights: str) -> dict:
    return {"format": FORMAT, "source": loaded.source, "task": loaded.task, "num_classes": loaded.num_classes,
            "reference": loaded.reference, "arch": arch, "weights": weights,
            "input": {"kind": "tokens", "default_seq_len": loaded.inputs.default_seq_len}}


def _save_gguf(loaded: LoadedModel, directory: Path) -> Path:
    """A model whose weights are a GGUF file: the file (it carries the tokenizer) and the manifest."""
    from sizewise.models.gguf import GGUF_ARTIFACT

    source = loaded.metadata.get("gguf_file")
    _check_runtime_copy(loaded, "GGUF file", source, bool(source) and Path(source).is_file(), "gguf_fingerprint",
                        "GGUF (int4-rtn / int4-awq)")
    with _staged(directory) as tmp:
        shutil.copy2(source, tmp / GGUF_ARTIFACT)
        manifest = _runtime_manifest(loaded, "gguf", GGUF_ARTIFACT)
        if loaded.metadata.get("notes"):  # the file's own summary is read from it on loading, not kept here
            manifest["notes"] = loaded.metadata["notes"]
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return directory


def _save_ortgenai(loaded: LoadedModel, directory: Path) -> Path:
    """A model whose weights are an ORT GenAI folder: the folder's files (graph, weights, genai_config.json,
    tokenizer), the transformers config its PyTorch twin is rebuilt from, and the manifest."""
    from sizewise.models.ortgenai import MODEL_FILE, folder_files

    source = loaded.metadata.get("ortgenai_dir")
    _check_runtime_copy(loaded, "ORT GenAI folder", source, bool(source) and (Path(source) / MODEL_FILE).is_file(),
                        "ortgenai_fingerprint", "ORT GenAI (int4-ortgenai)")
    with _staged(directory) as tmp:
        for file in folder_files(source):
            shutil.copy2(file, tmp / file.name)
        loaded.module.config.save_pretrained(tmp)
        manifest = _runtime_manifest(loaded, "ortgenai", MODEL_FILE) | {
            k: loaded.metadata[k] for k in _PROVENANCE if loaded.metadata.get(k)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return directory


def _load_ortgenai(directory: Path, manifest: dict, reference: str) -> LoadedModel:
    """An ORT GenAI folder saved by :func:`_save_ortgenai`: the PyTorch twin built from its config and given the
    folder's weights (int4 blocks dequantized), marked so that measuring it on ORT GenAI runs this folder."""
    import transformers

    from sizewise.models.gguf import weights_fingerprint
    from sizewise.models.hf import load_hf_directory
    from sizewise.models.ortgenai import load_weights

    config = transformers.AutoConfig.from_pretrained(str(directory))
    model_class = getattr(transformers, (config.architectures or ["AutoModelForCausalLM"])[0], None)
    if model_class is None:
        raise ModelReferenceError(f"{directory}: transformers has no class {config.architectures}")
    module = load_weights(model_class(config).eval(), directory)
    loaded = load_hf_directory(directory, reference=reference, source="run-dir", module=module)
    spec = _input_spec(manifest, directory / MANIFEST)
    loaded.inputs.default_seq_len = spec.get("default_seq_len", loaded.inputs.default_seq_len)
    loaded.metadata.update(encoding=ENCODING_ORTGENAI, ortgenai_dir=str(directory.resolve()),
                           ortgenai_fingerprint=weights_fingerprint(module))
    return loaded


def _is_hf_image_model(loaded: LoadedModel) -> bool:
    """A transformers image model with its processor: saved like a text model, the processor for the tokenizer."""
    return loaded.inputs.processor is not None and hasattr(loaded.module, "save_pretrained")


def _hf_input_manifest(spec: InputSpec) -> dict:
    if spec.kind == "tensor":  # an image model: pixel_values of the processor's size
        return {"kind": "tensor", "shape": list(spec.shape), "name": spec.name}
    return {"kind": "tokens", "default_seq_len": spec.default_seq_len}


def _differs_from_config(module) -> bool:
    """True when some layer is smaller than the config says (heads or neurons pruned): reloading must then resize."""
    import torch

    with torch.device("meta"):
        fresh = type(module)(module.config)
    shapes = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    return any(shapes.get(k) != tuple(v.shape) for k, v in module.state_dict().items())


def _load_pruned_hf(directory: Path, reference: str) -> LoadedModel:
    """Build the model from its config, resize layers to the saved shapes, then load the weights."""
    import transformers
    from safetensors.torch import load_file

    from sizewise.models.hf import load_hf_directory
    from sizewise.models.reshape import fit_shapes

    config = transformers.AutoConfig.from_pretrained(str(directory))
    arch = (config.architectures or ["AutoModel"])[0]
    model_class = getattr(transformers, arch, None) or transformers.AutoModel
    module = model_class(config) if model_class is not transformers.AutoModel else transformers.AutoModel.from_config(config)
    state = {}
    for f in sorted(directory.glob("*.safetensors")):
        state.update(load_file(str(f)))
    fit_shapes(module, state)
    missing, unexpected = module.load_state_dict(state, strict=False)
    tied = {k for k in missing if any(k.endswith(s) for s in ("decoder.weight", "lm_head.weight"))}
    if set(missing) - tied or unexpected:
        raise ModelReferenceError(f"the weights in {directory} do not fit the pruned model: missing "
                                  f"{sorted(set(missing) - tied)[:5]}, unexpected {sorted(unexpected)[:5]}")
    _sync_heads(module)
    loaded = load_hf_directory(directory, reference=reference, source="run-dir", module=module.eval())
    return loaded


def _sync_heads(module) -> None:
    """Attention modules keep their head count as attributes: set them from the (possibly pruned) query size."""
    for sub in module.modules():
        if all(hasattr(sub, a) for a in ("query", "attention_head_size", "num_attention_heads")):
            sub.num_attention_heads = sub.query.out_features // sub.attention_head_size
            sub.all_head_size = sub.query.out_features


def _load_hf_from_state(directory: Path, manifest: dict, reference: str) -> LoadedModel:
    """A Hugging Face model saved as config + state dict (factorized, or Huffman-coded): built from its config,
    low-rank layers put in, resized to the saved shapes, then its state loaded strictly."""
    import transformers

    from sizewise.models.hf import load_hf_directory
    from sizewise.models.reshape import fit_shapes

    config = transformers.AutoConfig.from_pretrained(str(directory))
    model_class = getattr(transformers, (config.architectures or ["AutoModel"])[0], None)
    module = model_class(config) if model_class is not None else transformers.AutoModel.from_config(config)
    apply_lowrank_structure(module, manifest.get("lowrank") or {})
    state = read_state(directory / manifest.get("weights", WEIGHTS), manifest)
    fit_shapes(module, state)  # heads or neurons pruned before factorizing
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelReferenceError(f"the weights in {directory} do not fit the model its config describes: "
                                  f"{str(exc).splitlines()[0][:300]}") from exc
    _sync_heads(module)
    loaded = load_hf_directory(directory, reference=reference, source="run-dir", module=module.eval())
    if manifest.get("weights_format") == compressed_format.FORMAT:
        loaded.metadata["encoding"] = ENCODING_DEEP_COMPRESSION
    return loaded


def _load_quantized_hf(directory: Path, reference: str, ranks: dict[str, int] | None = None) -> LoadedModel:
    """A torch dynamic-int8 Hugging Face model: built from its config, then its int8 layers set exactly."""
    import transformers

    from sizewise.models.hf import load_hf_directory
    from sizewise.models.sparse_format import load_sparse
    from sizewise.models.torch_quant import load_quantized_state

    config = transformers.AutoConfig.from_pretrained(str(directory))
    model_class = getattr(transformers, (config.architectures or ["AutoModel"])[0], None)
    module = model_class(config) if model_class is not None else transformers.AutoModel.from_config(config)
    apply_lowrank_structure(module, ranks or {})
    module = load_quantized_state(module.eval(), load_sparse(directory / WEIGHTS))
    return load_hf_directory(directory, reference=reference, source="run-dir", module=module.eval())


# The manifest fields the rebuild reads, with the JSON types they must have (a manifest may come from anyone).
_FIELD_TYPES = {"arch": str, "weights": str, "weights_format": str, "dtype": str, "task": str, "source": str,
                "num_classes": int, "lowrank": dict, "label_names": list, "notes": list, "input": dict}


def _check_field_types(manifest: dict, where: Path) -> None:
    """``where``: the manifest file, or the .swz file that carries it."""
    for field, kind in _FIELD_TYPES.items():
        value = manifest.get(field)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise ModelReferenceError(f"{where}: field '{field}' should be a JSON "
                                      f"{ {str: 'string', int: 'integer', dict: 'object', list: 'array'}[kind]}, "
                                      f"not {str(value)[:80]}", hint="the folder may be damaged; save the model again")


def _input_spec(manifest: dict, where: Path) -> dict:
    """The manifest's ``input`` entry (an object or absent: :func:`_check_field_types` ran first), its contents
    checked: the file may come from anyone, and a wrong type here would otherwise surface as an AttributeError deep
    in the rebuild."""
    spec = manifest.get("input") or {}
    shape, seq_len = spec.get("shape"), spec.get("default_seq_len", 1)
    if ((spec.get("kind") == "tensor" and not (isinstance(shape, list) and shape
                                               and all(isinstance(d, int) and d > 0 for d in shape)))
            or not (isinstance(seq_len, int) and seq_len > 0)
            or not isinstance(spec.get("name", "x"), str)):
        raise ModelReferenceError(f"{where} has a malformed 'input' entry: {str(spec)[:200]}",
                                  hint="expected {'kind': 'tensor', 'shape': [positive ints]} or "
                                       "{'kind': 'tokens', 'default_seq_len': positive int}")
    return spec


def read_state(path: Path, manifest: dict) -> dict[str, torch.Tensor]:
    """The state dict of a weights file in either format the manifest may name."""
    from sizewise.models.sparse_format import load_sparse

    if manifest.get("weights_format") == compressed_format.FORMAT:
        return compressed_format.read(path)[0]
    return load_sparse(path)


def weight_files(directory: Path) -> list[Path]:
    """The files a user ships: weights and config, not the manifest or tokenizer vocabulary."""
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and (p.suffix in {".safetensors", ".onnx", ".data", ".gguf", compressed_format.SUFFIX}
                      or p.name == "config.json"))


def load_model_dir(directory: Path, reference: str, template: LoadedModel | None = None) -> LoadedModel:
    """The model saved in ``directory``. ``template``: the in-memory model a wrapped module's weights belong to."""
    from sizewise.models import loader  # the factory/zoo resolvers live there

    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelReferenceError(f"cannot read {directory / MANIFEST}: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ModelReferenceError(f"{directory / MANIFEST} is not a JSON object",
                                  hint="the folder may be damaged; save the model again")
    _check_field_types(manifest, directory / MANIFEST)
    if manifest.get("arch") not in (None, "huggingface") and not manifest.get("weights"):
        raise ModelReferenceError(f"{directory / MANIFEST} names no weights file",
                                  hint="the folder may be damaged; save the model again")
    if manifest.get("format") != FORMAT:
        raise ModelReferenceError(f"{directory} was written by an unknown sizewise format {manifest.get('format')!r}",
                                  hint=f"this version reads {FORMAT}")
    arch = manifest.get("arch")
    if arch == "huggingface":  # a config asking for code of its own is refused before transformers reads it
        from sizewise.models.hf import _read_config, check_remote_code

        check_remote_code(directory, _read_config(directory), loader.trusts_remote_code())
    if arch == "huggingface" and manifest.get("torch_quantization"):
        loaded = _load_quantized_hf(directory, reference, manifest.get("lowrank"))
    elif arch == "huggingface" and (manifest.get("lowrank") or manifest.get("weights_format")):
        loaded = _load_hf_from_state(directory, manifest, reference)
    elif arch == "huggingface" and manifest.get("pruned_shapes"):
        loaded = _load_pruned_hf(directory, reference)
    elif arch == "huggingface":
        from sizewise.models.hf import load_hf_directory

        loaded = load_hf_directory(directory, reference=reference, source="run-dir",
                                   trust_remote_code=loader.trusts_remote_code())
    elif arch == "gguf":
        from sizewise.models.gguf import load_gguf_artifact

        loaded = load_gguf_artifact(directory / manifest["weights"], reference)
        spec = _input_spec(manifest, directory / MANIFEST)
        loaded.inputs.default_seq_len = spec.get("default_seq_len", loaded.inputs.default_seq_len)
    elif arch == "ortgenai":
        loaded = _load_ortgenai(directory, manifest, reference)
    elif arch == "onnx":
        loaded = loader.load_onnx(directory / manifest["weights"], reference)
        loaded.source = "run-dir"
        spec = _input_spec(manifest, directory / MANIFEST)
        if spec.get("kind") == "tokens":
            from sizewise.core.optional import require

            tokenizer = require("transformers", "hf", "text models").AutoTokenizer.from_pretrained(str(directory))
            loaded.inputs = InputSpec(kind="tokens", tokenizer=tokenizer,
                                      default_seq_len=spec.get("default_seq_len", 128))
        elif spec.get("kind") == "tensor":
            loaded.inputs = InputSpec(kind="tensor", shape=tuple(spec["shape"]), name=spec.get("name", "x"))
    else:
        loaded = _build_tensor_model(manifest, directory / manifest["weights"], reference, template=template)
    loaded.task = manifest.get("task") or loaded.task
    loaded.num_classes = manifest.get("num_classes", loaded.num_classes)
    if manifest.get("label_names"):
        loaded.metadata["label_names"] = manifest["label_names"]
    loaded.metadata["model_dir"] = str(directory)
    for key in _PROVENANCE:  # where the weights came from (a GGUF file) and what was done to load them
        if key == "notes" and manifest.get(key):
            loaded.metadata[key] = list(dict.fromkeys([*manifest[key], *loaded.metadata.get(key, [])]))
        elif manifest.get(key):
            loaded.metadata[key] = manifest[key]
    return loaded


def _build_tensor_model(manifest: dict, weights: Path, reference: str,
                        state: dict[str, torch.Tensor] | None = None, template: LoadedModel | None = None) -> LoadedModel:
    """A zoo/factory model rebuilt from its manifest and weights file (or an already decoded ``state``)."""
    from sizewise.models import loader  # the factory/zoo resolvers live there
    from sizewise.models.reshape import fit_shapes

    if manifest["arch"] == IN_MEMORY:
        if template is None:
            raise ModelReferenceError(f"{weights.parent} holds the weights of a module wrapped in Python "
                                      f"(sizewise.wrap): there is no reference that rebuilds its architecture",
                                      hint="build the module in Python and load the weights with "
                                           "safetensors.torch.load_file, or save it from a zoo:/factory reference")
        if manifest.get("torch_quantization"):  # the template is already the quantized module
            return _in_memory_copy(template)
        loaded = _in_memory_copy(template)
    else:
        # the file that names the architecture: a factory named there needs the user's consent
        named_in = weights.parent / MANIFEST if state is None else weights
        loaded = loader.build_architecture(manifest["arch"], reference=reference, named_in=named_in)
    try:
        state = read_state(weights, manifest) if state is None else state
        dtype = manifest.get("dtype", "float32")
        apply_lowrank_structure(loaded.module, manifest.get("lowrank") or {})
        if manifest.get("torch_quantization"):
            from sizewise.models.torch_quant import load_quantized_state

            loaded.module = load_quantized_state(loaded.module, state)
        else:
            fit_shapes(loaded.module, state)  # a structurally pruned model: same architecture, fewer channels
            loaded.module.to(getattr(torch, dtype))  # fp16/bf16 weights stay in their dtype
            loaded.module.load_state_dict(state, strict=True)
    except ModelReferenceError:
        raise
    except Exception as exc:  # safetensors raises SafetensorError / RuntimeError on corrupt or mismatched files
        raise ModelReferenceError(f"cannot load weights from {weights}: {exc}",
                                  hint="the file may be truncated, or belong to another architecture") from exc
    loaded.source = "run-dir"
    spec = _input_spec(manifest, weights if state is not None else weights.parent / MANIFEST)
    if spec.get("kind") == "tensor":
        loaded.inputs = InputSpec(kind="tensor", shape=tuple(spec["shape"]), name=spec.get("name", "x"), dtype=dtype)
    if manifest.get("weights_format") == compressed_format.FORMAT:
        loaded.metadata["encoding"] = ENCODING_DEEP_COMPRESSION
    return loaded


def _in_memory_copy(template: LoadedModel) -> LoadedModel:
    import copy

    loaded = copy.copy(template)
    loaded.module = copy.deepcopy(template.module)
    loaded.metadata = dict(template.metadata)
    return loaded


def load_compressed_file(path: Path, reference: str) -> LoadedModel:
    """A ``.swz`` file on its own: it carries its manifest, so a zoo/factory model needs nothing else."""
    state, manifest = compressed_format.read(path)
    _check_field_types(manifest, path)
    if manifest.get("arch") in (None, "huggingface", "onnx"):
        raise ModelReferenceError(f"{path} holds a Hugging Face model's weights only",
                                  hint="load the run directory it was written in (config and tokenizer are there)")
    loaded = _build_tensor_model(manifest, path, reference, state)
    loaded.task = manifest.get("task") or loaded.task
    loaded.num_classes = manifest.get("num_classes", loaded.num_classes)
    return loaded
