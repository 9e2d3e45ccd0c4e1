"""What the training loop optimises, per task: a batch -> loss, and a validation metric (higher is better).

Sentence similarity uses sentence-transformers' CosineSimilarityLoss (MSE between the cosine of mean-pooled
embeddings and the gold score scaled to [0, 1]), the loss all-MiniLM-L6-v2 users fine-tune STS-B with.
"""

from __future__ import annotations

import abc

import numpy as np
import torch

from sizewise.core.errors import DataError
from sizewise.data.dataset import Dataset, Split, take
from sizewise.models.loaded import LoadedModel
from sizewise.models.images import prepare_images
from sizewise.tasks.evaluate import first_output, mean_pool


class Objective(abc.ABC):
    metric = "accuracy"
    higher_is_better = True  # of ``metric``: the loop keeps the best epoch by it
    # Whether ``label_smoothing`` reaches the loss: only a cross-entropy against class labels has labels to smooth.
    # The loop refuses label smoothing for an objective without it rather than silently ignoring the setting.
    smooths_labels = False

    def __init__(self, loaded: LoadedModel, dataset: Dataset, max_length: int = 128, label_smoothing: float = 0.0):
        self.loaded, self.dataset, self.max_length = loaded, dataset, max_length
        self.label_smoothing = label_smoothing

    @abc.abstractmethod
    def loss(self, split: Split, idx: np.ndarray) -> tuple[torch.Tensor, int | None]:
        """Loss of the batch ``idx`` and how many examples it got right (None where that means nothing)."""

    def extra_parameters(self) -> list[torch.nn.Parameter]:
        """Parameters the objective itself trains (none for a plain task)."""
        return []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def validate(self, split: Split) -> float:
        from sizewise.tasks import evaluate

        holder = Dataset(self.dataset.name, self.dataset.task, {"val": split}, "val", self.dataset.num_classes,
                         self.dataset.input_shape)
        return evaluate(self.loaded, holder)[self.metric]

    def _cross_entropy(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(logits, y, label_smoothing=self.label_smoothing)

    def _tokens(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return dict(self.loaded.inputs.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                                 return_tensors="pt"))


class ImageClassification(Objective):
    smooths_labels = True

    def loss(self, split, idx):
        images = split.inputs[idx]
        if self.loaded.metadata.get("image_processor"):  # a Hugging Face image model: as evaluate() prepares them
            images = prepare_images(self.loaded, images)
        logits = first_output(self.loaded.module(**{self.loaded.inputs.name: torch.from_numpy(images)}))
        y = torch.from_numpy(split.labels[idx])
        return self._cross_entropy(logits, y), int((logits.argmax(-1) == y).sum())


class TextClassification(Objective):
    smooths_labels = True

    def loss(self, split, idx):
        out = self.loaded.module(**self._tokens(take(split.inputs, idx)))
        logits = out.logits if hasattr(out, "logits") else out
        y = torch.from_numpy(split.labels[idx])
        return self._cross_entropy(logits, y), int((logits.argmax(-1) == y).sum())


class SentenceSimilarity(Objective):
    metric = "spearman"

    def _embed(self, texts: list[str]) -> torch.Tensor:
        enc = self._tokens(texts)
        states = self.loaded.module(**enc)
        states = getattr(states, "last_hidden_state", states)
        return mean_pool(states, enc["attention_mask"])

    def loss(self, split, idx):
        pairs = take(split.inputs, idx)
        a = self._embed([p[0] for p in pairs])
        b = self._embed([p[1] for p in pairs])
        cosine = torch.nn.functional.cosine_similarity(a, b)
        target = torch.from_numpy(split.labels[idx]).float() / 5.0  # STS-B scores are 0..5
        return torch.nn.functional.mse_loss(cosine, target), None


def lm_batch(loaded: LoadedModel, texts: list, max_length: int) -> dict[str, torch.Tensor]:
    """Paragraphs (or conversations, written out by the model's chat template) as a right-padded batch of at most
    ``max_length`` token ids, with the mask; padded by hand, since many decoder tokenizers have no pad token."""
    from sizewise.data.chat import render_texts

    tokenizer = loaded.inputs.tokenizer
    rows = [ids[:max_length] for ids in tokenizer(render_texts(tokenizer, texts, f"'{loaded.reference}'"),
                                                  add_special_tokens=False)["input_ids"]]
    rows = [r for r in rows if len(r) >= 2] or [rows[0] * 2 if rows and rows[0] else [0, 0]]
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), 1
    return {"input_ids": ids, "attention_mask": mask}


def next_token_targets(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each position's next token, -100 where there is none (the last real token, padding)."""
    targets = batch["input_ids"][:, 1:].clone()
    targets[batch["attention_mask"][:, 1:] == 0] = -100
    return targets


class CausalLM(Objective):
    """Next-token cross-entropy on the train split's paragraphs (each truncated to ``max_length`` tokens); validation
    is the perplexity of the validation split (on its first tasks.perplexity.DEFAULT_MAX_TOKENS tokens)."""

    metric = "perplexity"
    higher_is_better = False

    def __init__(self, loaded: LoadedModel, dataset: Dataset, max_length: int = 256, label_smoothing: float = 0.0):
        super().__init__(loaded, dataset, max_length, label_smoothing)

    def loss(self, split, idx):
        batch = lm_batch(self.loaded, take(split.inputs, idx), self.max_length)
        logits = self.loaded.module(**batch).logits[:, :-1]
        targets = next_token_targets(batch)
        with torch.autocast(logits.device.type, enabled=False):
            loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100)
        return loss, None


OBJECTIVES = {"image-classification": ImageClassification, "text-classification": TextClassification,
              "sentence-similarity": SentenceSimilarity, "causal-lm": CausalLM}


def objective_for(loaded: LoadedModel, dataset: Dataset, label_smoothing: float = 0.0) -> Objective:
    if dataset.task not in OBJECTIVES:
        raise DataError(f"no training objective for task '{dataset.task}'", hint=f"known: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[dataset.task](loaded, dataset, label_smoothing=label_smoothing)
