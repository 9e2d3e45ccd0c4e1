"""Text a causal LM writes itself: recovery text for a pruned or quantized copy of it when the user's text is short.

A pruned decoder recovers by learning the original's next-token distributions (knowledge distillation, Minitron's
recipe). Those distributions exist on any text, and a user often has little of their own: this project's WikiText-2
copy holds ~217,000 tokens of validation text and no train split. The original model can write more: sampled from
its own distribution (LLM-QAT, Liu et al. 2023, distils on such data-free generations), the text covers what the
model knows more broadly than one small corpus.

transformers' ``generate`` does the sampling; this module only starts every sequence at the tokenizer's
beginning-of-text token, batches and seeds it (batch ``b`` with ``seed + b``, so a resumed run writes the same
lines as an uninterrupted one), and writes each finished batch to a text file at once, one sequence per line (the
line layout ``load_dataset`` reads a ``.txt`` file with, and ``distill --unlabeled`` takes). A side file records the
batches written and the file's length then; a killed run resumes after the last whole batch.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sizewise.core.errors import ConfigError, ModelReferenceError
from sizewise.tasks.perplexity import start_token


@dataclass(frozen=True)
class GenerateConfig:
    sequences: int = 512
    tokens: int = 256  # new tokens per sequence at most (a sequence that samples its end-of-text token stops early)
    batch_size: int = 16
    temperature: float = 1.0
    top_p: float = 0.95  # nucleus sampling: the model's own distribution without its least likely tail
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("sequences", "tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', ' ')} must be a positive integer, got {getattr(self, name)}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top-p must be in (0, 1], got {self.top_p} — it is the probability mass kept: 1 "
                              "samples the model's full distribution")


@dataclass(frozen=True)
class GenerateResult:
    path: str
    sequences: int  # lines in the file (sequences that sampled nothing printable are left out)
    new_tokens: int  # tokens sampled by this call (not those of batches a resumed run found written)
    seconds: float
    resumed_batches: int


def _side_file(path: Path) -> Path:
    return path.with_name(path.name + ".progress.json")


def _resume_point(path: Path, config: GenerateConfig, reference: str) -> int:
    """Whole batches already in ``path`` from an earlier run of the same settings; the file cut back to them."""
    side = _side_file(path)
    if not side.is_file() or not path.is_file():
        return 0
    state = json.loads(side.read_text())
    if state.get("config") != asdict(config) or state.get("model") != reference:
        raise ConfigError(f"{path} was begun with other settings ({state.get('model')}, {state.get('config')})",
                          hint="give another --out, or delete the file and its .progress.json to start again")
    with open(path, "r+b") as handle:
        handle.truncate(state["bytes"])
    return int(state["batches"])


def generate_text(loaded: Any, out: str | Path, config: GenerateConfig | None = None,
                  on_batch: Callable[[int, int], None] | None = None) -> GenerateResult:
    """Sample ``config.sequences`` texts from the causal LM ``loaded`` into ``out`` (one per line), resuming a run
    that was cut off. ``on_batch(done, total)`` hears each written batch."""
    import torch

    config = config or GenerateConfig()
    model, tokenizer = loaded.module, getattr(loaded.inputs, "tokenizer", None)
    if loaded.task != "causal-lm" or not hasattr(model, "generate"):
        raise ModelReferenceError(f"{loaded.reference} is not a causal LM (its task: {loaded.task}), so it writes no "
                                  "text",
                                  hint="give a Hugging Face causal LM (a folder with config.json and a tokenizer)")
    if tokenizer is None:
        raise ModelReferenceError(f"{loaded.reference} has no tokenizer to turn its samples into text",
                                  hint="load the model's folder with its tokenizer files")
    start_id, _ = start_token(tokenizer)
    if start_id is None:
        raise ModelReferenceError(f"the tokenizer of {loaded.reference} has neither a beginning- nor an end-of-text "
                                  "token to start a sample from")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    total = -(-config.sequences // config.batch_size)
    done = _resume_point(path, config, loaded.reference)
    resumed = done
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    new_tokens, t0 = 0, time.perf_counter()
    model.eval()
    with open(path, "ab") as handle:
        while done < total:
            size = min(config.batch_size, config.sequences - done * config.batch_size)
            torch.manual_seed(config.seed + done)
            start = torch.full((size, 1), start_id, dtype=torch.long)
            with torch.inference_mode():
                ids = model.generate(start, attention_mask=torch.ones_like(start), do_sample=True,
                                     temperature=config.temperature, top_p=config.top_p, top_k=0,
                                     max_new_tokens=config.tokens, pad_token_id=pad)
            sampled = ids[:, 1:]
            new_tokens += int((sampled != pad).sum()) if pad is not None else sampled.numel()
            texts = tokenizer.batch_decode(sampled, skip_special_tokens=True)
            # one line per sequence: a sample's own line breaks become spaces
            lines = [" ".join(part.strip() for part in text.splitlines() if part.strip()) for text in texts]
            handle.write("".join(f"{line}\n" for line in lines if line).encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
            done += 1
            side = _side_file(path)
            tmp = side.with_name(side.name + ".tmp")
            tmp.write_text(json.dumps({"model": loaded.reference, "config": asdict(config), "batches": done,
                                       "bytes": handle.tell()}))
            os.replace(tmp, side)
            if on_batch is not None:
                on_batch(done, total)
    with open(path, encoding="utf-8") as handle:
        lines = sum(1 for _ in handle)
    return GenerateResult(str(path), lines, new_tokens, time.perf_counter() - t0, resumed)
