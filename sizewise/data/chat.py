"""Chat conversations as causal-LM text.

Chat data (a ``messages`` column of ``{"role": ..., "content": ...}`` turns, the layout of most instruction sets on the
Hub and of JSONL exports) means nothing to a language model until the model's own chat template has written it out
with its turn markers, and that template belongs to the model's tokenizer, not to the data. So a chat dataset keeps
its conversations as :class:`Chat` items, and whatever turns causal-LM text into token ids (perplexity, calibration)
passes its texts through :func:`render_texts` with the tokenizer at hand. transformers' ``apply_chat_template`` does
the rendering; a tokenizer without a template is refused in one line instead of scoring the raw JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sizewise.core.errors import DataError

CHAT_NAMES = ("messages", "conversations", "conversation", "chat")


@dataclass(frozen=True)
class Chat:
    """One conversation: its turns as (role, content) pairs, in order."""

    turns: tuple[tuple[str, str], ...]

    def messages(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.turns]

    def __str__(self) -> str:  # how a report or an error shows an item (never what a model is scored on)
        return " | ".join(f"{role}: {content}" for role, content in self.turns)


def is_conversation(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(
        isinstance(t, dict) and "role" in t and "content" in t for t in value)


def to_chat(value: Any, row: int, split: str) -> Chat:
    if not is_conversation(value):
        raise DataError(f"row {row} of the {split} split is not a conversation (a list of turns with 'role' and "
                        f"'content'): {str(value)[:80]!r}")
    return Chat(tuple((str(t["role"]), str(t["content"])) for t in value))


def render_texts(tokenizer: Any, texts: Sequence[Any], reference: str = "this model") -> list[str]:
    """``texts`` with every :class:`Chat` written out by the tokenizer's chat template (plain strings unchanged)."""
    if not any(isinstance(t, Chat) for t in texts):
        return list(texts)
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(f"the data holds chat conversations, but the tokenizer of {reference} has no chat template "
                        "to write them out with",
                        hint="use a chat/instruct model (its tokenizer_config.json has a chat_template), or give plain "
                             "text (a .txt file or a text column)")
    return [tokenizer.apply_chat_template(t.messages(), tokenize=False) if isinstance(t, Chat) else t for t in texts]
