"""Chat data: a column of conversations is causal-LM text once the model's chat template writes it out."""

import json
import sys
from pathlib import Path

import pytest

import sizewise
from sizewise.core.errors import DataError
from sizewise.data.chat import Chat, render_texts
from sizewise.data.options import DataOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))

from kill_harness import tiny_causal_lm  # noqa: E402

TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"


def _chat_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 12), ("validation", 4), ("test", 4)):
        rows = [{"id": i, "messages": [{"role": "user", "content": f"question {i} about the {split} split"},
                                       {"role": "assistant", "content": f"answer {i}, in several plain words"}]}
                for i in range(n)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_a_messages_column_is_read_as_conversations(tmp_path):
    data = sizewise.load_dataset(_chat_folder(tmp_path / "chat"))
    assert data.task == "causal-lm"
    first = data.split("validation").inputs[0]
    assert isinstance(first, Chat) and first.turns[0] == ("user", "question 0 about the validation split")
    with pytest.raises(DataError, match="chat conversations"):
        sizewise.load_dataset(tmp_path / "chat", options=DataOptions(task="text-classification"))


def test_a_tokenizer_without_a_chat_template_is_refused_in_one_line(tmp_path):
    model_dir, _ = tiny_causal_lm(tmp_path / "lm")
    model = sizewise.load(str(model_dir))
    assert not model.inputs.tokenizer.chat_template
    data = sizewise.load_dataset(_chat_folder(tmp_path / "chat"))
    from sizewise.tasks.perplexity import evaluate_perplexity

    with pytest.raises(DataError) as info:
        evaluate_perplexity(model, data, "validation")
    assert "no chat template" in info.value.message and "\n" not in info.value.message
    assert "chat_template" in info.value.hint


def test_the_chat_template_writes_the_turns_out_before_scoring(tmp_path):
    model_dir, _ = tiny_causal_lm(tmp_path / "lm")
    model = sizewise.load(str(model_dir))
    model.inputs.tokenizer.chat_template = TEMPLATE
    data = sizewise.load_dataset(_chat_folder(tmp_path / "chat"))
    texts = data.split("validation").inputs
    rendered = render_texts(model.inputs.tokenizer, texts)
    assert rendered[0] == "<|user|>question 0 about the validation split</s><|assistant|>answer 0, in several plain " \
                          "words</s>"
    assert render_texts(None, ["plain text"]) == ["plain text"]  # plain text needs no template
    from sizewise.tasks.perplexity import PerplexityConfig, evaluate_perplexity, perplexity

    scored = evaluate_perplexity(model, data, "validation")
    assert scored.texts == 4 and scored.token_perplexity > 1
    same = perplexity(model.module, model.inputs.tokenizer, rendered, PerplexityConfig(max_tokens=scored.text_tokens))
    assert same.token_perplexity == pytest.approx(scored.token_perplexity, rel=1e-6)


def test_calibration_text_is_the_written_out_conversations_too(tmp_path):
    from sizewise.compress.quantize.llm import calibration_windows

    model_dir, _ = tiny_causal_lm(tmp_path / "lm")
    model = sizewise.load(str(model_dir))
    data = sizewise.load_dataset(_chat_folder(tmp_path / "chat"))
    with pytest.raises(DataError, match="no chat template"):
        calibration_windows(model, data, 2, 16)
    model.inputs.tokenizer.chat_template = TEMPLATE
    windows, split = calibration_windows(model, data, 2, 16)
    assert split == "train" and [tuple(w.shape) for w in windows] == [(1, 16), (1, 16)]
