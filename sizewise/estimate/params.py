"""Count a model's parameters without its weights.

Where transformers knows the architecture, the model is built on PyTorch's meta device: every tensor has a shape and no
storage, so GPT-3 175B is "built" in well under a second and the count is exact, tied embeddings included. Hand-written
formulas drift from the real modules (biases, norms, position tables, gated MLPs), which is why they are only the
fallback, for architectures transformers does not know, and are labelled ``method: "formula"``.

Which class is built decides what is counted: the backbone (``AutoModel``) by default, so ``bert-base-uncased`` counts
109,482,240 like its model card; for generative models (``*ForCausalLM``, ``*LMHeadModel``,
``*ForConditionalGeneration``) the language-model head too, because serving them needs it and an untied head (Llama 2)
is a vocabulary-sized matrix. Small task heads (masked-LM, classification) are left out.
"""

from __future__ import annotations

from collections.abc import Callable

import dataclasses
import difflib
import json
from pathlib import Path
from typing import Any

from sizewise.core.errors import ConfigError, ModelReferenceError, SizewiseError
from sizewise.estimate.presets import Preset, get_preset, preset_names

_GENERATIVE_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")
_ENCODER_TYPES = {"bert", "roberta", "distilbert", "albert", "electra", "deberta", "deberta-v2", "xlm-roberta",
                  "mpnet", "camembert", "ernie"}


@dataclasses.dataclass(frozen=True)
class Architecture:
    """The sizes the memory and FLOP formulas need; ``None`` where the model does not say (then those parts are n/a)."""

    family: str  # "decoder", "encoder", "encoder-decoder", "cnn" or "unknown"
    model_type: str | None = None
    n_layers: int | None = None  # all transformer blocks, encoder and decoder
    n_cache_layers: int | None = None  # blocks that keep a key/value cache when generating
    d_model: int | None = None
    n_heads: int | None = None
    n_kv_heads: int | None = None
    head_dim: int | None = None
    d_ff: int | None = None
    vocab_size: int | None = None
    context: int | None = None
    lm_head: bool = False

    @property
    def is_transformer(self) -> bool:
        return self.n_layers is not None and self.d_model is not None and self.n_heads is not None


@dataclasses.dataclass(frozen=True)
class ParamCount:
    total: int
    non_embedding: int | None  # total minus token/position embeddings and an untied output head (Kaplan et al. 2020)
    embedding: int | None
    method: str  # "meta-device", "formula", "published" or "loaded"
    detail: str  # the class built, the formula used, or the source of the published figure
    published: float | None = None
    published_source: str | None = None


@dataclasses.dataclass(frozen=True)
class ResolvedModel:
    name: str
    description: str
    params: ParamCount
    architecture: Architecture
    preset: Preset | None = None
    notes: tuple[str, ...] = ()


def _first(cfg: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if cfg.get(key) is not None:
            return cfg[key]
    return None


def architecture_from_config(cfg: dict[str, Any]) -> Architecture:
    """Read the sizes from a Hugging Face config dict, whatever each family calls them."""
    d_model = _first(cfg, "hidden_size", "n_embd", "d_model", "dim")
    n_layers = _first(cfg, "num_hidden_layers", "n_layer", "num_layers", "n_layers")
    n_heads = _first(cfg, "num_attention_heads", "n_head", "num_heads", "n_heads")
    archs = [str(a) for a in cfg.get("architectures") or []]
    model_type = cfg.get("model_type")
    if cfg.get("is_encoder_decoder"):
        family = "encoder-decoder"
    elif any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs) or cfg.get("is_decoder"):
        family = "decoder"
    elif model_type in _ENCODER_TYPES or any("MaskedLM" in a for a in archs):
        family = "encoder"
    else:
        family = "unknown"
    if family == "encoder-decoder" and n_layers is not None:
        decoder_layers = _first(cfg, "num_decoder_layers", "decoder_layers") or n_layers
        total_layers, cache_layers = n_layers + decoder_layers, decoder_layers
    else:
        total_layers = n_layers
        cache_layers = 0 if family == "encoder" else n_layers
    head_dim = _first(cfg, "head_dim", "d_kv")
    if head_dim is None and d_model and n_heads:
        head_dim = d_model // n_heads
    d_ff = _first(cfg, "intermediate_size", "n_inner", "d_ff", "ffn_dim")
    if d_ff is None and d_model:
        d_ff = 4 * d_model  # the GPT-2/BERT convention when the config leaves it implicit
    return Architecture(
        family=family, model_type=model_type, n_layers=total_layers, n_cache_layers=cache_layers, d_model=d_model,
        n_heads=n_heads, n_kv_heads=_first(cfg, "num_key_value_heads", "n_kv_heads") or n_heads, head_dim=head_dim,
        d_ff=d_ff, vocab_size=cfg.get("vocab_size"),
        context=_first(cfg, "max_position_embeddings", "n_positions", "n_ctx", "max_seq_len", "seq_length"),
        lm_head=any(a.endswith(_GENERATIVE_SUFFIXES) for a in archs),
    )


class _NotBuildable(Exception):
    """transformers cannot build this config; the message says why, for the note on the formula fallback."""


def count_on_meta(cfg: dict[str, Any]) -> ParamCount:
    """Build the model from ``cfg`` on the meta device and count; raises ``_NotBuildable`` with the reason."""
    try:
        import torch
        import transformers
        from transformers import CONFIG_MAPPING
    except ImportError as exc:
        raise _NotBuildable(f"transformers is not installed ({exc}); pip install 'sizewise[hf]'") from exc
    model_type = cfg.get("model_type")
    if not model_type or model_type not in CONFIG_MAPPING:
        raise _NotBuildable(f"transformers {transformers.__version__} does not know model_type {model_type!r}")
    config = CONFIG_MAPPING[model_type].from_dict(dict(cfg))
    archs = [a for a in cfg.get("architectures") or [] if str(a).endswith(_GENERATIVE_SUFFIXES)]
    candidates = [getattr(transformers, archs[0], None)] if archs else []
    candidates.append(transformers.AutoModel)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # construction chatter would bury the estimate
    errors = []
    try:
        for cls in [c for c in candidates if c is not None]:
            try:
                with torch.device("meta"):
                    model = cls.from_config(config) if cls is transformers.AutoModel else cls(config)
                break
            except Exception as exc:  # any failure just means "try the next class, then the formula"
                errors.append(f"{getattr(cls, '__name__', cls)}: {str(exc).splitlines()[0] if str(exc) else exc!r}")
        else:
            raise _NotBuildable("transformers could not build it: " + "; ".join(errors))
    finally:
        transformers.logging.set_verbosity(verbosity)
    total, embedding = count_module(model)
    return ParamCount(total=total, non_embedding=total - embedding, embedding=embedding, method="meta-device",
                      detail=f"{type(model).__name__} built on the meta device (transformers {transformers.__version__})")


def count_module(model: Any) -> tuple[int, int]:
    """(total, embedding) parameters of an ``nn.Module``; shared (tied) tensors are counted once."""
    import torch.nn as nn

    total = sum(p.numel() for p in model.parameters())  # parameters() already skips tied duplicates
    seen: set[int] = set()
    embedding = 0
    for module in model.modules():
        if isinstance(module, nn.Embedding) and id(module.weight) not in seen:
            seen.add(id(module.weight))
            embedding += module.weight.numel()
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    weight = getattr(head, "weight", None)
    if weight is not None and id(weight) not in seen:  # an untied unembedding is vocabulary-sized, like the input table
        embedding += weight.numel()
    return total, embedding


def count_by_formula(arch: Architecture, cfg: dict[str, Any]) -> ParamCount:
    """Weight matrices of a standard transformer; biases and learned position tables are left out (a few tenths of %)."""
    missing = [name for name, value in [("hidden_size (or n_embd/d_model)", arch.d_model),
                                        ("num_hidden_layers (or n_layer/num_layers)", arch.n_layers),
                                        ("num_attention_heads (or n_head)", arch.n_heads),
                                        ("vocab_size", arch.vocab_size)] if value is None]
    if missing:
        raise ConfigError(
            f"cannot count parameters of model_type {arch.model_type!r}: transformers cannot build it and the config "
            f"lacks {', '.join(missing)} for the formula",
            hint=f"add those fields to config.json, or use a preset: {', '.join(preset_names())}",
        )
    d, hd = arch.d_model, arch.head_dim
    gated = str(cfg.get("hidden_act", "")).lower() in ("silu", "swish") or "gated" in str(cfg.get("feed_forward_proj", ""))
    attention = 2 * d * arch.n_heads * hd + 2 * d * arch.n_kv_heads * hd  # q, o and k, v projections
    mlp = (3 if gated else 2) * d * arch.d_ff  # a gated (SwiGLU) MLP has a third matrix
    per_layer = attention + mlp + 2 * d  # two norms
    tied = cfg.get("tie_word_embeddings", True)
    embedding = arch.vocab_size * d * (1 if tied else 2)
    total = arch.n_layers * per_layer + d + embedding
    detail = (f"formula: n_layer x (2*d*(n_heads+n_kv_heads)*head_dim + {3 if gated else 2}*d*d_ff + 2*d) + d "
              f"+ vocab*d{'' if tied else ' x 2 (untied head)'}; biases and position tables ignored")
    return ParamCount(total=total, non_embedding=total - embedding, embedding=embedding, method="formula", detail=detail)


def read_config_file(path: Path) -> dict[str, Any]:
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise ModelReferenceError(f"no config.json in directory '{path}'",
                                  hint="point at a Hugging Face model directory or its config.json")
    try:
        cfg = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelReferenceError(f"cannot read '{file}' as JSON: {exc}", hint="is it a Hugging Face config.json?") from exc
    if not isinstance(cfg, dict):
        raise ModelReferenceError(f"'{file}' holds a JSON {type(cfg).__name__}, not a config object")
    return cfg


def resolve_config(name: str, cfg: dict[str, Any], description: str, preset: Preset | None = None) -> ResolvedModel:
    arch = architecture_from_config(cfg)
    notes: list[str] = []
    try:
        params = count_on_meta(cfg)
    except _NotBuildable as exc:
        params = count_by_formula(arch, cfg)
        notes.append(f"parameters by formula, not counted exactly: {exc}")
    if arch.family == "unknown":
        notes.append("could not tell encoder from decoder; assumed a decoder (key/value cache counted)")
        arch = dataclasses.replace(arch, family="decoder")
    if preset is not None:
        params = dataclasses.replace(params, published=preset.published_params, published_source=preset.params_source)
    return ResolvedModel(name, description, params, arch, preset, tuple(notes))


def _resolve_published(preset: Preset) -> ResolvedModel:
    n = int(preset.published_params)
    params = ParamCount(total=n, non_embedding=None, embedding=None, method="published",
                        detail=preset.params_source or "published", published=preset.published_params,
                        published_source=preset.params_source)
    notes = ("no transformers architecture for this model: parameter count and multiply-adds are the published "
             "figures, not counted here",)
    return ResolvedModel(preset.name, preset.description, params, Architecture(family="cnn"), preset, notes)


def _suggest(ref: str) -> str:
    """'did you mean' for a mistyped preset name; nothing for things that are clearly paths or loader forms."""
    name = ref.strip().lower()
    if ":" in name or "/" in name or "\\" in name or "." in name:
        return ""
    close = [p for p in preset_names() if p.startswith(name)] or difflib.get_close_matches(name, preset_names(), n=1)
    return f"did you mean the preset '{close[0]}'? " if close else ""


def _resolve_loaded(ref: str, load: Callable[[str], Any] | None) -> ResolvedModel:
    # The loader lives in a higher layer (models): the caller hands it in, so estimating needs sizewise.core alone.
    if load is None:
        guess = _suggest(ref)
        raise ModelReferenceError(
            f"'{ref}' is not a preset, a config.json or a directory holding one",
            hint=f"{guess}presets: {', '.join(preset_names())}; a loadable model reference is estimated through "
                 f"sizewise.estimate or `sizewise estimate`, which can load it",
        )
    try:
        loaded = load(ref)
    except SizewiseError as exc:  # keep the loader's reason, and point at the presets a typo may have meant
        guess = _suggest(ref)
        hint = f"{guess}{exc.hint + '; ' if exc.hint else ''}presets: {', '.join(preset_names())}"
        exc.hint = hint
        raise
    module = loaded.module
    total, embedding = count_module(module)
    if total == 0:
        raise ModelReferenceError(f"'{ref}' loaded, but it has no PyTorch parameters to count (an ONNX graph?)",
                                  hint="estimate its Hugging Face config.json instead, or use `sizewise measure`")
    config = getattr(module, "config", None)
    cfg = config.to_dict() if hasattr(config, "to_dict") else {}
    arch = architecture_from_config(cfg) if cfg else Architecture(family="unknown")
    notes = [] if arch.is_transformer else [
        "the loaded model states no transformer sizes: key/value cache, activations and attention FLOPs are n/a"]
    if arch.family == "unknown" and arch.is_transformer:
        arch = dataclasses.replace(arch, family="decoder")
    params = ParamCount(total=total, non_embedding=total - embedding, embedding=embedding, method="loaded",
                        detail=f"{type(module).__name__} loaded by sizewise and counted")
    return ResolvedModel(ref, f"model loaded from '{ref}'", params, arch, None, tuple(notes))


def resolve_model(ref: str, load: Callable[[str], Any] | None = None) -> ResolvedModel:
    """A preset name, a config.json (or a directory holding one), or any reference the sizewise loader accepts."""
    if not isinstance(ref, str) or not ref.strip():
        raise ModelReferenceError(f"model reference must be a non-empty string, got {ref!r}",
                                  hint=f"presets: {', '.join(preset_names())}")
    preset = get_preset(ref)
    if preset is not None:
        if preset.hf_config is None:
            return _resolve_published(preset)
        return resolve_config(preset.name, preset.hf_config, preset.description, preset)
    path = Path(ref).expanduser()
    if path.suffix == ".json" or (path.is_dir() and (path / "config.json").is_file()):
        if not path.exists():
            raise ModelReferenceError(f"config file '{ref}' does not exist", hint="check the path")
        cfg = read_config_file(path)
        return resolve_config(ref, cfg, f"Hugging Face config {path.name if path.is_file() else path / 'config.json'}")
    return _resolve_loaded(ref, load)
