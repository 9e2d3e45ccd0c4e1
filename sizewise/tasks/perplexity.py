"""Perplexity of a causal language model, with its definition, so the number can be compared with others.

Token level, the Hugging Face recipe "perplexity of fixed-length models": the split's texts (its lines, in file
order) are joined into one string, tokenized once, and a window of ``context`` tokens slides over it by ``stride``;
each window scores only the tokens no earlier window scored (its non-overlapping tail), so every scored token after
the first window sees at least ``context - stride`` tokens of context. Token perplexity = exp(total NLL / tokens
scored).

A BOS token (the tokenizer's, else its EOS: GPT-2's ``<|endoftext|>``) is put in front of the text, as
lm-evaluation-harness does for rolling log-likelihoods, so the text's first token is scored too; a tokenizer with
neither leaves it unscored, and ``prefix_token`` says which happened.

Word level, as lm-evaluation-harness's wikitext task reports it: exp(total NLL / whitespace-separated words of the
scored text); bits per byte = total NLL / (ln 2 x UTF-8 bytes of that text). Both are independent of the tokenizer,
so models with different vocabularies can be compared (token perplexities cannot).

Written here rather than taken from ``evaluate``'s perplexity metric because that one scores each text on its own,
truncated, without a stride, and loads models by hub name.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

from sizewise.core.errors import ConfigError, DataError
from sizewise.data.chat import Chat, render_texts

# The causal-lm datasets hold a file's non-empty lines verbatim, without their line breaks: a newline puts the file
# back together (less its blank lines). The HF recipe's "\n\n" is for wikitext rows that keep their own "\n".
JOINER = "\n"
DEFAULT_CONTEXT = 1024  # GPT-2's window; longer windows cost quadratically more on a CPU
# Tokens scored when nothing says otherwise (`sizewise measure --max-tokens`'s default): a whole WikiText-2 split is
# ~300k tokens, over an hour per model on two CPU cores, and every step's check and card would pay it.
DEFAULT_MAX_TOKENS = 16_384


@dataclass(frozen=True)
class PerplexityConfig:
    context: int | None = None  # tokens per window; None = the model's maximum, at most DEFAULT_CONTEXT
    stride: int | None = None  # tokens the window advances; None = context // 2
    max_tokens: int | None = None  # score at most this many tokens of the text (it is cut, and the result says so)
    joiner: str = JOINER

    def __post_init__(self) -> None:
        for name in ("context", "stride", "max_tokens"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"perplexity {name} must be a positive integer, got {value!r}")
        if self.context is not None and self.context < 2:
            raise ConfigError(f"perplexity context must be at least 2 tokens, got {self.context}")
        if self.context is not None and self.stride is not None and self.stride > self.context:
            raise ConfigError(f"perplexity stride ({self.stride}) is longer than the context ({self.context}): "
                              f"tokens between windows would never be scored", hint="use a stride <= context")


@dataclass(frozen=True)
class PerplexityResult:
    """What the sliding window measured; the derived perplexities are properties so they cannot disagree."""

    nll_sum_nats: float  # summed negative log-likelihood of the scored tokens (natural log)
    tokens_scored: int
    text_tokens: int  # tokens of the (possibly cut) text, without the prefix token
    words: int  # whitespace-separated words of the scored text
    utf8_bytes: int
    context_tokens: int
    stride_tokens: int
    windows: int
    prefix_token: str | None  # the token put before the text, or None when the first token went unscored
    truncated: bool  # the text was cut at max_tokens
    texts: int  # how many texts (lines or paragraphs of the split) were joined
    joiner: str = JOINER

    @property
    def token_perplexity(self) -> float:
        return math.exp(self.nll_sum_nats / self.tokens_scored) if self.tokens_scored else float("nan")

    @property
    def word_perplexity(self) -> float:
        return math.exp(self.nll_sum_nats / self.words) if self.words else float("nan")

    @property
    def bits_per_byte(self) -> float:
        return self.nll_sum_nats / (math.log(2) * self.utf8_bytes) if self.utf8_bytes else float("nan")

    def metrics(self) -> dict[str, float]:
        """The metrics-dict form (``perplexity`` first: it is the primary score; lower is better)."""
        return {"perplexity": self.token_perplexity, "word_perplexity": self.word_perplexity,
                "bits_per_byte": self.bits_per_byte, "tokens_scored": float(self.tokens_scored),
                "examples": float(self.texts)}


def split_texts(dataset: Any, split: str | None = None, limit: int | None = None) -> list[str | Chat]:
    """The texts of a causal-lm dataset split, in file order (the first ``limit`` of them); conversations stay
    :class:`Chat` items until a tokenizer writes them out (:func:`perplexity`)."""
    if getattr(dataset, "task", None) != "causal-lm":
        raise DataError(f"dataset '{getattr(dataset, 'name', dataset)}' is for {getattr(dataset, 'task', '?')}, "
                        f"but perplexity needs plain text (a causal-lm dataset)",
                        hint="give a text file (.txt) or a dataset of text for a causal language model")
    texts = list(dataset.split(split).inputs)
    if not all(isinstance(t, (str, Chat)) for t in texts):
        raise DataError(f"dataset '{dataset.name}' split '{split}' holds {type(texts[0]).__name__} items, not text")
    return texts[:limit] if limit is not None else texts


def resolve_context(model: Any, config: PerplexityConfig) -> tuple[int, int]:
    limit = model_max_positions(model)
    context = config.context or min(limit or DEFAULT_CONTEXT, DEFAULT_CONTEXT)
    if limit and context > limit:
        raise ConfigError(f"perplexity context {context} is longer than the model accepts ({limit} positions)",
                          hint=f"use --context {limit} or less")
    stride = config.stride or max(1, context // 2)
    if stride > context:
        raise ConfigError(f"perplexity stride ({stride}) is longer than the context ({context})",
                          hint="use a stride <= context")
    return context, stride


def model_max_positions(model: Any) -> int | None:
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def start_token(tokenizer: Any) -> tuple[int | None, str | None]:
    """The token a text starts from: the tokenizer's beginning-of-text token, else its end-of-text one (GPT-2)."""
    for attr in ("bos_token", "eos_token"):
        token = getattr(tokenizer, attr, None)
        token_id = getattr(tokenizer, f"{attr}_id", None)
        if token is not None and token_id is not None:
            return int(token_id), str(token)
    return None, None


def tokenize_text(tokenizer: Any, text: str, max_tokens: int | None) -> tuple[list[int], str, bool]:
    """Token ids of ``text`` (no special tokens), cut to ``max_tokens``; returns the ids, the text they cover, and
    whether it was cut. The covered text is found from the tokenizer's offsets, so words and bytes count exactly what
    was scored."""
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=max_tokens is not None)
    except (NotImplementedError, ValueError):  # slow tokenizers have no offsets
        enc = tokenizer(text, add_special_tokens=False)
    ids = list(enc["input_ids"])
    if max_tokens is None or len(ids) <= max_tokens:
        return ids, text, False
    ids = ids[:max_tokens]
    offsets = enc.get("offset_mapping") if hasattr(enc, "get") else None
    covered = text[:offsets[max_tokens - 1][1]] if offsets else tokenizer.decode(ids)
    return ids, covered, True


def _forward_kwargs(model: Any) -> dict[str, Any]:
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return {}
    return {"use_cache": False} if "use_cache" in params else {}


def sliding_window_nll(model: Any, ids: list[int], context: int, stride: int,
                       progress=None) -> tuple[float, int, int]:
    """Sum of NLL (nats) over the tokens the window scores, the number scored, and the number of windows.

    Window ``[begin, end)`` scores the tokens in ``[max(previous end, begin + 1), end)``: those no earlier window
    scored and that have at least one token of context inside this window (position ``begin`` has none, so with
    ``stride == context`` each window's first token goes unscored, as in the HF recipe)."""
    import torch

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    all_ids = torch.tensor(ids, dtype=torch.long, device=device)
    n = len(ids)
    nll, scored, windows, prev_end = 0.0, 0, 0, 0
    extra = _forward_kwargs(model)
    with torch.inference_mode():
        for begin in range(0, n, stride):
            end = min(begin + context, n)
            first = max(prev_end, begin + 1)
            if end > first:
                window = all_ids[begin:end].unsqueeze(0)
                out = model(input_ids=window, **extra)
                logits = (out.logits if hasattr(out, "logits") else out[0])[0]
                # logits at position i predict token i + 1
                pred = logits[first - begin - 1:end - begin - 1].float()
                nll += float(torch.nn.functional.cross_entropy(pred, all_ids[first:end], reduction="sum"))
                scored += end - first
                windows += 1
                if progress is not None:
                    progress(end, n)
            prev_end = end
            if end == n:
                break
    return nll, scored, windows


def perplexity(model: Any, tokenizer: Any, texts: list[str], config: PerplexityConfig | None = None,
               progress=None) -> PerplexityResult:
    """Token- and word-level perplexity and bits per byte of ``model`` on ``texts`` joined (see the module doc)."""
    config = config or PerplexityConfig()
    if tokenizer is None:
        raise DataError("this model has no tokenizer, so sizewise cannot compute its perplexity on text",
                        hint="load the Hugging Face directory with its tokenizer files")
    text = config.joiner.join(render_texts(tokenizer, texts))
    if not text.strip():
        raise DataError("the text to score is empty", hint="check the split holds text")
    context, stride = resolve_context(model, config)
    prefix_id, prefix = start_token(tokenizer)
    ids, covered, truncated = tokenize_text(tokenizer, text, config.max_tokens)
    stream = ([prefix_id] if prefix_id is not None else []) + ids
    if len(stream) < 2:
        raise DataError(f"the text is {len(ids)} token(s) long: too short to score", hint="give more text")
    nll, scored, windows = sliding_window_nll(model, stream, context, stride, progress)
    return PerplexityResult(nll_sum_nats=nll, tokens_scored=scored, text_tokens=len(ids),
                            words=len(covered.split()), utf8_bytes=len(covered.encode("utf-8")),
                            context_tokens=context, stride_tokens=stride, windows=windows, prefix_token=prefix,
                            truncated=truncated, texts=len(texts), joiner=config.joiner)


def evaluate_perplexity(loaded: Any, dataset: Any, split: str | None = None, limit: int | None = None,
                        config: PerplexityConfig | None = None, progress=None) -> PerplexityResult:
    """Perplexity of a loaded causal LM on ``split`` of a causal-lm dataset (default: its reported split), on the
    first :data:`DEFAULT_MAX_TOKENS` tokens unless ``config`` says otherwise (the result says when it was cut)."""
    texts = split_texts(dataset, split, limit)
    config = config or PerplexityConfig(max_tokens=DEFAULT_MAX_TOKENS)
    return perplexity(loaded.module, loaded.inputs.tokenizer, texts, config, progress)
