"""Model surgery for transfer learning: a fresh task head, frozen layers, and LoRA adapters merged back in.

The head of a zoo/factory model is its final ``nn.Linear``, found by running one forward pass and seeing which Linear
produced the output (registration order can lie: a model may define its classifier first). A Hugging Face encoder gets
the ``AutoModelForSequenceClassification`` of its own architecture around the *same* encoder module, so pruned or
factorized encoders keep their shapes; only the classifier is new.

LoRA comes from ``peft`` (its layers, initialisation and ``merge_and_unload`` are the reference implementation); we only
choose the target layers and check that merging did not change what the model computes.
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from sizewise.core.errors import ConfigError, DataError, ModelReferenceError, SizewiseError
from sizewise.core.optional import require
from sizewise.models.loaded import LoadedModel

FREEZE_FORMS = "none, backbone, or N-layers (the embeddings/first N layers), e.g. 2-layers"
_N_LAYERS = re.compile(r"^(\d+)(?:-?layers?)?$")
_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def parse_freeze(spec: str | int) -> str | int:
    """``"none"`` | ``"backbone"`` | a number of layers, from ``"none"``, ``"backbone"``, ``"2-layers"``, ``"2"``, 2."""
    if isinstance(spec, bool):
        raise ConfigError(f"--freeze must be {FREEZE_FORMS}, got {spec!r}")
    if isinstance(spec, int):
        if spec < 0:
            raise ConfigError(f"--freeze needs a number of layers >= 0, got {spec}")
        return spec
    text = str(spec).strip().lower()
    if text in ("none", "backbone"):
        return text
    match = _N_LAYERS.match(text)
    if not match:
        raise ConfigError(f"--freeze must be {FREEZE_FORMS}, got '{spec}'")
    return int(match.group(1))


def is_hf(loaded: LoadedModel) -> bool:
    return loaded.inputs.kind == "tokens" and hasattr(loaded.module, "base_model") and hasattr(loaded.module, "config")


def check_trainable(loaded: LoadedModel) -> None:
    if loaded.is_onnx:
        raise ModelReferenceError(f"'{loaded.reference}' is an ONNX file: it has no PyTorch weights to fine-tune",
                                  hint="fine-tune the PyTorch model (zoo:NAME, a Hugging Face directory or a run "
                                       "directory) and export afterwards")
    from sizewise.models.torch_quant import is_int8_weight

    if any(is_int8_weight(p) for p in loaded.module.parameters()) or \
            not any(p.is_floating_point() for p in loaded.module.parameters()):
        raise ModelReferenceError(f"model '{loaded.reference}' has no floating-point parameters to train (a "
                                  f"quantized model?)", hint="fine-tune before quantizing")


# ---------------------------------------------------------------------------------------------------- the head --

def _output_of(out) -> torch.Tensor:
    from sizewise.tasks.evaluate import first_output

    return first_output(out)


def final_linear(loaded: LoadedModel) -> str | None:
    """Name of the ``nn.Linear`` whose output is the model's output (the classifier), or None."""
    module = loaded.module
    linears = {name: m for name, m in module.named_modules() if isinstance(m, nn.Linear)}
    if not linears:
        return None
    produced: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_hook(lambda _m, _a, o, n=name: produced.__setitem__(n, o))
               for name, m in linears.items()]
    try:
        with torch.no_grad():
            out = _output_of(module(**loaded.example_inputs(1)))
    except Exception:  # no usable input shape: fall back to the last Linear registered
        return list(linears)[-1]
    finally:
        for h in handles:
            h.remove()
    for name, tensor in produced.items():
        if tensor is out:
            return name
    return list(produced)[-1] if produced else list(linears)[-1]


def head_names(loaded: LoadedModel) -> list[str]:
    """Module names of the task head: what ``--freeze backbone`` leaves trainable. Empty for a bare encoder."""
    module = loaded.module
    if is_hf(loaded):
        if module.base_model is module:
            return []  # AutoModel: an encoder without a task head
        prefix = module.base_model_prefix
        return [name for name, child in module.named_children()
                if name != prefix and any(True for _ in child.parameters())]
    name = final_linear(loaded)
    return [name] if name else []


def new_head(loaded: LoadedModel, num_classes: int) -> list[str]:
    """Give ``loaded`` a freshly initialised classifier for ``num_classes``; returns the head's module names.

    Sets ``loaded.task`` and ``loaded.num_classes`` so evaluation, training and saving treat it as a classifier.
    """
    check_trainable(loaded)
    if not isinstance(num_classes, int) or num_classes < 2:
        raise DataError(f"a classification head needs at least 2 classes, got {num_classes!r}")
    if is_hf(loaded):
        _new_hf_head(loaded, num_classes)
        loaded.task = "text-classification"
    else:
        name = final_linear(loaded)
        if name is None:
            raise ModelReferenceError(f"model '{loaded.reference}' has no nn.Linear layer to use as its head, so "
                                      f"--head new cannot replace it", hint="use --head keep")
        old = loaded.module.get_submodule(name)
        parent_name, _, child = name.rpartition(".")
        parent = loaded.module.get_submodule(parent_name) if parent_name else loaded.module
        fresh = nn.Linear(old.in_features, num_classes, bias=old.bias is not None,
                          dtype=old.weight.dtype, device=old.weight.device)
        setattr(parent, child, fresh)
        if loaded.task == "unknown":
            loaded.task = "image-classification"
    loaded.num_classes = num_classes
    loaded.module.eval()
    return head_names(loaded)


def _new_hf_head(loaded: LoadedModel, num_classes: int) -> None:
    transformers = require("transformers", "hf", "Hugging Face models")
    base = loaded.module.base_model
    config = copy.deepcopy(base.config)
    config.num_labels = num_classes  # also resets id2label/label2id to LABEL_0..
    try:
        # A throwaway encoder is initialised along with the head; the loaded encoder then takes its place, so
        # whatever was done to it (pruning, factorizing) is kept exactly.
        model = transformers.AutoModelForSequenceClassification.from_config(config)
    except ValueError as exc:  # no sequence-classification class for this architecture
        raise ModelReferenceError(f"transformers has no sequence-classification model for '{config.model_type}' "
                                  f"({str(exc).splitlines()[0][:200]})",
                                  hint="use an encoder such as BERT, RoBERTa or MiniLM") from exc
    prefix = model.base_model_prefix
    if type(getattr(model, prefix)) is not type(base):
        raise ModelReferenceError(f"the classifier for '{config.model_type}' expects a "
                                  f"{type(getattr(model, prefix)).__name__}, not the loaded {type(base).__name__}")
    setattr(model, prefix, base)
    model.config.architectures = [type(model).__name__]
    loaded.module = model.eval()
    loaded.metadata["architectures"] = model.config.architectures
    try:
        with torch.no_grad():
            model(**loaded.example_inputs(1, 8))
    except Exception as exc:  # e.g. an encoder saved without the pooler the classifier reads
        raise ModelReferenceError(f"the new classification head does not run on '{loaded.reference}': "
                                  f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from exc


# --------------------------------------------------------------------------------------------------- freezing --

def _in(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _hf_layers(loaded: LoadedModel) -> tuple[list[str], list[str]]:
    """(embedding module names, encoder layer module names in order) of a Hugging Face model."""
    module = loaded.module
    base = module.base_model
    prefix = "" if base is module else module.base_model_prefix + "."
    wanted = getattr(base.config, "num_hidden_layers", None)
    lists = [(name, m) for name, m in base.named_modules() if isinstance(m, nn.ModuleList) and len(m)]
    if not lists:
        raise ModelReferenceError(f"cannot find the encoder layers of '{loaded.reference}'",
                                  hint="use --freeze backbone or none")
    name, layers = next(((n, m) for n, m in lists if len(m) == wanted), max(lists, key=lambda nm: len(nm[1])))
    if getattr(base, "embeddings", None) is not None:
        embeddings = [prefix + "embeddings"]
    else:
        emb = base.get_input_embeddings()
        embeddings = [prefix + n for n, m in base.named_modules() if m is emb]
    return embeddings, [f"{prefix}{name}.{i}" for i in range(len(layers))]


def _tensor_layers(loaded: LoadedModel, head: list[str]) -> list[list[str]]:
    """Conv/Linear layers below the head, in order, each with the parameterised modules that follow it (its BN)."""
    groups: list[list[str]] = []
    for name, m in loaded.module.named_modules():
        if _in(name, head) or not any(True for _ in m.parameters(recurse=False)):
            continue
        if isinstance(m, _LAYERS) or not groups:
            groups.append([name])
        else:
            groups[-1].append(name)
    return groups


def _covering(module: nn.Module, head: list[str]) -> list[str]:
    """The fewest module names whose parameters are all the parameters outside ``head`` (``bert``, not its 100 layers)."""
    names: list[str] = []
    for name, sub in module.named_modules():
        if not name or _in(name, names) or _in(name, head):
            continue
        params = [n for n, _ in sub.named_parameters()]
        if params and not any(_in(f"{name}.{n}", head) for n in params):
            names.append(name)
    return names


def layer_count(loaded: LoadedModel, head: list[str]) -> int:
    """How many layers ``--freeze N-layers`` can count: encoder layers, or Conv/Linear layers below the head."""
    return len(_hf_layers(loaded)[1]) if is_hf(loaded) else len(_tensor_layers(loaded, head))


def frozen_modules(loaded: LoadedModel, spec: str | int, head: list[str]) -> list[str]:
    """Names of the modules ``--freeze spec`` freezes (their parameters, recursively)."""
    spec = parse_freeze(spec)
    if spec == "none":
        return []
    if spec == "backbone":
        if not head:
            raise ConfigError(f"--freeze backbone would leave nothing to train: model '{loaded.reference}' has no task "
                              f"head", hint="use --head new, --freeze N-layers, or --lora R")
        return _covering(loaded.module, head)
    if is_hf(loaded):
        embeddings, layers = _hf_layers(loaded)
        if spec > len(layers):
            raise ConfigError(f"--freeze {spec}-layers, but model '{loaded.reference}' has {len(layers)} encoder "
                              f"layers", hint=f"use 0 to {len(layers)} layers, or --freeze backbone")
        return embeddings + layers[:spec]
    groups = _tensor_layers(loaded, head)
    if spec > len(groups):
        raise ConfigError(f"--freeze {spec}-layers, but model '{loaded.reference}' has {len(groups)} layers below its "
                          f"head", hint=f"use 0 to {len(groups)} layers, or --freeze backbone")
    return [n for group in groups[:spec] for n in group]


@dataclass
class Frozen:
    """Parameters held fixed: ``requires_grad`` off, and frozen BatchNorm layers kept in eval mode so their running
    statistics stay those of the pretraining data (the training loop puts the whole model in train mode every epoch).
    """

    parameters: list[nn.Parameter] = field(default_factory=list)
    handles: list = field(default_factory=list)

    def release(self) -> None:
        for p in self.parameters:
            p.requires_grad_(True)
        for h in self.handles:
            h.remove()
        self.parameters, self.handles = [], []

    @property
    def count(self) -> int:
        return sum(p.numel() for p in self.parameters)


def _keep_eval(module: nn.Module, _args) -> None:
    module.training = False


def freeze(module: nn.Module, names: list[str]) -> Frozen:
    """Freeze the parameters of the modules named ``names`` in ``module``."""
    frozen = Frozen()
    for name, sub in module.named_modules():
        if not _in(name, names):
            continue
        for p in sub.parameters(recurse=False):
            if p.requires_grad:
                p.requires_grad_(False)
                frozen.parameters.append(p)
        if isinstance(sub, _BATCHNORM):
            frozen.handles.append(sub.register_forward_pre_hook(_keep_eval))
    return frozen


# ------------------------------------------------------------------------------------------------------- LoRA --

def lora_targets(loaded: LoadedModel, head: list[str], frozen: list[str]) -> list[str]:
    """The Linear layers LoRA adapts: every one outside the head and outside layers frozen by ``--freeze N-layers``."""
    return [n for n, m in loaded.module.named_modules()
            if isinstance(m, nn.Linear) and not _in(n, head) and not _in(n, frozen)]


def check_lora_targets(loaded: LoadedModel, targets: list[str]) -> None:
    if not targets:
        if not any(isinstance(m, nn.Linear) for m in loaded.module.modules()):
            raise ConfigError(f"--lora needs nn.Linear layers, and model '{loaded.reference}' has none",
                              hint="drop --lora, or use --freeze to choose what trains")
        raise ConfigError(f"--lora found no nn.Linear layer to adapt in '{loaded.reference}' outside its head and its "
                          f"frozen layers", hint="freeze fewer layers, or drop --lora")
    require("peft", "transfer", "LoRA adapters")


def add_lora(loaded: LoadedModel, rank: int, alpha: float, targets: list[str], head: list[str]) -> int:
    """Wrap ``loaded.module`` in a peft model with rank-``rank`` adapters on ``targets``; the base weights are frozen,
    the head stays trainable. Returns the number of adapter parameters."""
    check_lora_targets(loaded, targets)
    peft = require("peft", "transfer", "LoRA adapters")
    head_modules = [loaded.module.get_submodule(n) for n in head]
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, bias="none",
                             target_modules="^(?:" + "|".join(re.escape(t) for t in targets) + ")$")
    with warnings.catch_warnings():  # transformers' deprecation notices from peft's introspection
        warnings.simplefilter("ignore", FutureWarning)
        loaded.module = peft.get_peft_model(loaded.module, config)
    for m in head_modules:  # peft froze everything that is not an adapter; the new head must learn
        m.requires_grad_(True)
    return sum(p.numel() for n, p in loaded.module.named_parameters() if "lora_" in n)


def is_lora(module: nn.Module) -> bool:
    return hasattr(module, "merge_and_unload") and hasattr(module, "peft_config")


class MergeError(SizewiseError):
    pass


def merge_lora(loaded: LoadedModel) -> float:
    """Fold the adapters into the base weights (W + BA x alpha/r) so the model is an ordinary one again.

    Returns the largest absolute difference between the adapted and the merged model's outputs on example inputs;
    raises :class:`MergeError` (nothing is saved) when they disagree beyond float32 rounding.
    """
    module = loaded.module
    module.eval()
    probe = loaded.example_inputs(2)
    with torch.no_grad():
        adapted = _output_of(module(**probe)).float()
        merged = module.merge_and_unload()
        merged.eval()
        loaded.module = merged
        got = _output_of(merged(**probe)).float()
    diff = float((adapted - got).abs().max()) if adapted.numel() else 0.0
    if got.shape != adapted.shape or diff > 1e-4 * max(1.0, float(adapted.abs().max())):
        raise MergeError(f"merging the LoRA adapters changed the model's outputs (max difference {diff:.3g})",
                         hint="this is a sizewise bug; please report it with the model reference")
    return diff
