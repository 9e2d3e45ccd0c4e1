"""Metrics on held-out data: accuracy for classification, Spearman x 100 for sentence similarity.

Sentence embeddings are mean-pooled over non-padding tokens and compared by cosine, which is how all-MiniLM-L6-v2 was
trained and how its published STS-B figure (82.03 on this data) is obtained.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from sizewise.core.errors import DataError
from sizewise.core.metrics import METRIC_KEYS_NOT_SCORES, primary_metric  # noqa: F401  (re-exported)
from sizewise.data.dataset import Dataset, Split
from sizewise.models.images import prepare_images
from sizewise.models.loaded import LoadedModel

_MODEL_TASKS_FOR = {
    "image-classification": {"image-classification", "unknown"},
    "text-classification": {"text-classification"},
    "sentence-similarity": {"sentence-embedding", "feature-extraction"},
    "causal-lm": {"causal-lm"},
}


def check_compatible(loaded: LoadedModel, dataset: Dataset) -> None:
    """Raise a :class:`DataError` naming the mismatch before any time is spent."""
    allowed = _MODEL_TASKS_FOR.get(dataset.task, set())
    if loaded.task not in allowed:
        hint = "fine-tune a classification head first (sizewise finetune)" if dataset.task == "text-classification" \
            else f"use a dataset for a {loaded.task} model"
        raise DataError(f"dataset '{dataset.name}' is for {dataset.task} but model '{loaded.reference}' is a "
                        f"{loaded.task} model", hint=hint)
    processor = loaded.metadata.get("image_processor")
    if dataset.task == "image-classification" and processor and dataset.input_shape:
        channels = len(processor["mean"])  # the processor resizes any height and width; grey images become RGB
        if dataset.input_shape[0] not in {channels, 1}:
            raise DataError(f"dataset '{dataset.name}' has {dataset.input_shape[0]}-channel images but model "
                            f"'{loaded.reference}' takes {channels} channels")
    elif dataset.task == "image-classification" and loaded.inputs.kind == "tensor" and loaded.inputs.shape:
        if tuple(loaded.inputs.shape) != tuple(dataset.input_shape or ()):
            from sizewise.models.zoo import ZOO

            fitting = [f"zoo:{n}" for n in ZOO.names() if ZOO.get(n).dataset == dataset.name]
            raise DataError(f"dataset '{dataset.name}' has inputs of shape {tuple(dataset.input_shape or ())} but "
                            f"model '{loaded.reference}' takes {tuple(loaded.inputs.shape)}",
                            hint=f"models made for {dataset.name}: {', '.join(fitting)}" if fitting
                            else "use a model whose input matches the data")
    if loaded.num_classes and dataset.num_classes and loaded.num_classes < dataset.num_classes:
        raise DataError(f"model '{loaded.reference}' predicts {loaded.num_classes} classes but dataset "
                        f"'{dataset.name}' has {dataset.num_classes}",
                        hint="give it a head for the data's classes: sizewise finetune MODEL --data DATA --head new")


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def _tokenize(loaded: LoadedModel, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    tokenizer = loaded.inputs.tokenizer
    if tokenizer is None:
        raise DataError(f"model '{loaded.reference}' has no tokenizer, so it cannot read text",
                        hint="measure the Hugging Face directory or run directory instead of a bare .onnx file")
    return dict(tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"))


def mean_pool(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The sentence embedding of token states: their mean over real (non-padding) tokens."""
    mask = attention_mask.unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def first_output(output) -> torch.Tensor:
    """The tensor that matters in whatever a model returns: itself, logits, the token states, or the first item."""
    if isinstance(output, torch.Tensor):
        return output
    for name in ("logits", "last_hidden_state"):
        if getattr(output, name, None) is not None:
            return getattr(output, name)
    return output[0]


def model_outputs(loaded: LoadedModel, split: Split, batch_size: int = 64, max_length: int = 128) -> np.ndarray:
    """Logits (classification) or L2-normalised sentence embeddings, as one array."""
    chunks = []
    with torch.inference_mode():
        for s in _batches(len(split), batch_size):
            if isinstance(split.inputs, np.ndarray):
                images = split.inputs[s]
                if loaded.metadata.get("image_processor"):  # a Hugging Face image model: resized and normalised
                    images = prepare_images(loaded, images)  # as its processor would
                x = torch.from_numpy(images).to(getattr(torch, loaded.inputs.dtype))  # fp16/bf16 models
                out = first_output(loaded.module(**{loaded.inputs.name: x}))
            else:
                enc = _tokenize(loaded, list(split.inputs[s]), max_length)
                out = first_output(loaded.module(**enc))
                if out.dim() == 3:  # token states -> mean over real tokens
                    out = torch.nn.functional.normalize(mean_pool(out, enc["attention_mask"]), dim=-1)
            chunks.append(out.float().cpu().numpy())
    return np.concatenate(chunks) if chunks else np.empty((0,))


def output_error(loaded: LoadedModel, reference: LoadedModel, dataset: Dataset, split: str | None = None,
                 limit: int = 128) -> float:
    """How far ``loaded``'s outputs are from ``reference``'s on the first ``limit`` examples of ``split``:
    ||y - y_ref|| / ||y_ref|| over the whole batch (logits for a classifier, L2-normalised embeddings for a sentence
    encoder, both sentences of each pair). 0 means the same outputs. A cheap signal of how much a compression step
    destroyed before any recovery training is paid for; it compares candidates of one model and one method, it is no
    accuracy."""
    check_compatible(loaded, dataset)
    data = dataset.split(split).sample(limit)
    if dataset.task == "sentence-similarity":
        sentences = [s for pair in data.inputs for s in pair]
        data = Split(sentences, np.zeros(len(sentences), dtype=np.float32))
    elif dataset.task not in ("image-classification", "text-classification"):
        raise DataError(f"no output comparison for task '{dataset.task}'")
    got, want = model_outputs(loaded, data), model_outputs(reference, data)
    return float(np.linalg.norm(got - want) / max(float(np.linalg.norm(want)), 1e-12))


def evaluate(loaded: LoadedModel, dataset: Dataset, split: str | None = None, limit: int | None = None,
             batch_size: int = 64) -> dict[str, float]:
    """The task's metric on ``split`` (default: the dataset's reported split). Decisions pass
    ``split=dataset.decision_split``; the reported number is the test split's, scored once."""
    check_compatible(loaded, dataset)
    data = dataset.split(split).sample(limit)
    if dataset.task in ("image-classification", "text-classification"):
        logits = model_outputs(loaded, data, batch_size)
        accuracy = float((logits.argmax(-1) == data.labels).mean())
        return {"accuracy": accuracy, "examples": float(len(data))}
    if dataset.task == "sentence-similarity":
        from scipy.stats import spearmanr

        left = model_outputs(loaded, Split([a for a, _ in data.inputs], data.labels), batch_size)
        right = model_outputs(loaded, Split([b for _, b in data.inputs], data.labels), batch_size)
        cosine = (left * right).sum(-1)
        return {"spearman": float(spearmanr(cosine, data.labels).statistic * 100), "examples": float(len(data))}
    if dataset.task == "causal-lm":  # perplexity (lower is better), with its definition in tasks.perplexity
        from sizewise.tasks.perplexity import evaluate_perplexity

        return evaluate_perplexity(loaded, dataset, split=split, limit=limit).metrics()
    raise DataError(f"no evaluator for task '{dataset.task}'")
