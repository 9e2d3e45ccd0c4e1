"""A user's own model and data through the CLI: every bad input the issue lists is one line and exit code 1, never a
traceback; a GPT-2-like directory without a pad token works and says it pads with eos. Tiny models made here."""

import csv
import functools
import importlib
import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sizewise.cli.app import app

pytest.importorskip("transformers")
runner = CliRunner()


@pytest.fixture(autouse=True)
def short_timing(monkeypatch):
    """These tests check what the command says, not this machine's speed."""
    api = importlib.import_module("sizewise.measure")
    monkeypatch.setattr(api, "MeasureConfig", functools.partial(
        api.MeasureConfig, latency_seconds=0.05, throughput_sweep=(1,), measure_memory=False))
    llm = importlib.import_module("sizewise.measure.llm")
    monkeypatch.setattr(llm, "LLMConfig", functools.partial(llm.LLMConfig, runs=1, warmup=0, bandwidth=False))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Tiny Hugging Face directories and data files, one per bad input."""
    import hf_dirs
    from PIL import Image

    root = tmp_path_factory.mktemp("user-data")
    hf_dirs.bert_classifier_dir(root / "bert-2-classes")
    shutil.copytree(root / "bert-2-classes", root / "no-tokenizer")
    for f in (root / "no-tokenizer").iterdir():
        if f.name not in ("config.json", "model.safetensors"):
            f.unlink()
    shutil.copytree(root / "bert-2-classes", root / "unknown-arch")
    config = json.loads((root / "unknown-arch" / "config.json").read_text())
    config.update(architectures=["FooBarForSequenceClassification"], model_type="foobar")
    (root / "unknown-arch" / "config.json").write_text(json.dumps(config))
    hf_dirs.gpt2_dir(root / "gpt2-no-pad")
    hf_dirs.vit_dir(root / "vit")
    (root / "four-classes").mkdir()
    words = hf_dirs.SENTENCES[0].split()
    with open(root / "four-classes" / "train.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([" ".join(words[i % 5:i % 5 + 4]), "abcd"[i % 4]] for i in range(40))
    (root / "one-class" / "cat").mkdir(parents=True)
    for i in range(6):
        Image.fromarray(np.full((16, 16, 3), 30 * i, np.uint8)).save(root / "one-class" / "cat" / f"{i}.png")
    (root / "empty.csv").write_text("")
    (root / "text.txt").write_text("\n".join(hf_dirs.SENTENCES * 20) + "\n")
    return root


def invoke(*args):
    return runner.invoke(app, [*(str(a) for a in args), "--no-memory"])


def assert_one_line(result, line: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)  # typer.Exit(1), no error
    assert result.output.strip() == line  # the whole output: exactly one line


def test_a_text_model_without_a_tokenizer(made):
    where = made / "no-tokenizer"
    assert_one_line(invoke("measure", where),
                    f"error: {where} has no tokenizer, and a text-classification model needs one to read text — "
                    "save it beside the model: tokenizer.save_pretrained(DIR) writes tokenizer.json (or the "
                    "vocabulary files)")


def test_an_unknown_architecture(made):
    import transformers

    assert_one_line(invoke("measure", made / "unknown-arch"),
                    "error: transformers does not know architecture FooBarForSequenceClassification (model_type "
                    f"foobar) — transformers {transformers.__version__} is installed; a newer one may know it: pip "
                    "install -U transformers")


def test_labels_that_do_not_match_the_head_say_both_counts_and_the_fix(made):
    model, data = made / "bert-2-classes", made / "four-classes"
    assert_one_line(invoke("measure", model, "--data", data),
                    f"error: model '{model}' predicts 2 classes but dataset 'four-classes' has 4 — give it a head "
                    "for the data's classes: sizewise finetune MODEL --data DATA --head new")


def test_finetune_keeping_a_head_that_does_not_fit(made, tmp_path):
    model = made / "bert-2-classes"
    assert_one_line(invoke("finetune", model, "--data", made / "four-classes", "--out", tmp_path / "ft"),
                    f"error: model '{model}' predicts 2 classes but dataset 'four-classes' has 4 — pass --head new "
                    "to replace its head")
    assert not (tmp_path / "ft" / "card.json").exists()


def test_an_image_folder_with_one_class(made):
    data = made / "one-class"
    assert_one_line(invoke("measure", made / "vit", "--data", data),
                    f"error: image folder {data} has one class (cat); classification needs a subfolder for each of "
                    "two or more classes")


def test_an_empty_data_file(made):
    data = made / "empty.csv"
    assert_one_line(invoke("measure", made / "bert-2-classes", "--data", data), f"error: {data} is empty")


def test_a_causal_lm_without_a_pad_token_pads_with_eos_and_says_so(made, tmp_path):
    result = invoke("measure", made / "gpt2-no-pad", "--data", made / "text.txt", "--prompt-len", "8",
                    "--new-tokens", "2", "--llm-batch", "2", "--json", tmp_path / "card.json")
    assert result.exit_code == 0, result.output
    assert "note: pad token: using eos '<|endoftext|>'" in result.output
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["metrics"]["split"] == "test" and card["metrics"]["perplexity"] > 1


def test_train_a_hugging_face_image_classifier_on_an_image_folder(made, tmp_path):
    """The ViT's output is an ImageClassifierOutput and its images go through its processor (16x16, normalised):
    training must read the logits and prepare the images as evaluation does."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 4)):
        for c, name in enumerate(("red", "green", "blue")):
            (tmp_path / "images" / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 60, (20, 20, 3), dtype=np.uint8)
                pixels[..., c] += 190
                Image.fromarray(pixels).save(tmp_path / "images" / split / name / f"{i}.png")
    out = tmp_path / "vit-trained"
    result = invoke("train", made / "vit", "--data", tmp_path / "images", "--epochs", "3", "--batch-size", "8",
                    "--out", out)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "card.json").read_text())
    assert record["after"]["metrics"]["split"] == "test" and record["after"]["metrics"]["examples"] == 12
    assert record["after"]["metrics"]["accuracy"] >= 11 / 12  # one colour per class: a 2-layer ViT learns it
    epochs = record["steps"][0]["details"]["training"]["epochs"]
    assert len(epochs) == 3 and epochs[-1]["train_loss"] < epochs[0]["train_loss"]
