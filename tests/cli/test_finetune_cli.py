"""``sizewise finetune`` through the CLI: the before/after table, the compute card, resume, one-line errors."""

import functools
import importlib
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import sizewise
from sizewise.cli.app import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def short_timing(monkeypatch):
    api = importlib.import_module("sizewise.measure.api")  # this checks the command, not the machine
    monkeypatch.setattr(api, "MeasureConfig", functools.partial(
        api.MeasureConfig, latency_seconds=0.05, throughput_sweep=(1,), measure_memory=False))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory):
    from transfer_models import pretrained_digits

    return pretrained_digits(tmp_path_factory.mktemp("pretrained"))


def invoke(*args):
    return runner.invoke(app, ["finetune", *(str(a) for a in args), "--no-memory"])


@pytest.fixture(scope="module")
def sst_folder(tmp_path_factory):
    """An SST-2-style folder in the tiny BERT's vocabulary; one file has an unlabelled (-1) row."""
    path = tmp_path_factory.mktemp("sst")
    rng = np.random.default_rng(0)
    words = [["cost", "money", "carbon", "cannot"], ["smaller", "faster", "honestly", "pruning"]]
    for split, n in (("train", 60), ("dev", 20)):
        rows = [f"{' '.join(rng.choice(words[y], 4))}\t{y}" for y in rng.integers(0, 2, n)]
        (path / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    unlabelled = tmp_path_factory.mktemp("sst-unlabelled")
    (unlabelled / "train.tsv").write_text("sentence\tlabel\nthe model is smaller\t1\nmost teams cannot\t-1\n")
    (unlabelled / "dev.tsv").write_text("sentence\tlabel\nthe model is faster\t1\n")
    return path, unlabelled


def test_finetune_a_new_head_then_resume(pretrained_dir, tmp_path):
    out = tmp_path / "ft"
    args = [pretrained_dir, "--data", "digits", "--head", "new", "--freeze", "backbone", "--unfreeze-after", "1",
            "--epochs", "2", "--labels", "300", "--threads", "1", "--out", out]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    for shown in ("before (new head, untrained)", "accuracy", "300 train + 135 validation",
                  "all after epoch 1", "3 × forward", "assumes backward ≈ 2 × forward", "estimated"):
        assert shown in result.output
    record = json.loads((out / "card.json").read_text())
    assert record["schema"] == "sizewise.run/1" and record["kind"] == "finetune"
    step = record["steps"][0]
    assert step["method"] == "finetune" and step["config"]["head"] == "new" and step["train"]["epochs"] == 2
    details = step["details"]["finetune"]
    assert details["labelled_examples"] == 300 and details["validation_examples"] == 135  # the data's validation
    assert details["compute"]["examples_seen"] == 600 and details["compute"]["training_flops_3x_forward"] > 0
    assert details["compute"]["energy_joules"] > 0
    # the untrained new head (validation) against the trained one; the before card is the input model's own head
    assert details["metrics_after"]["accuracy"] > details["metrics_before"]["accuracy"] + 0.2
    assert record["before"]["metrics"]["split"] == record["after"]["metrics"]["split"] == "test"
    assert sizewise.load(str(out)).num_classes == 10
    refused = invoke(*args)  # without --resume an OUT that holds a run is not touched
    assert refused.exit_code == 1 and "already holds a run" in refused.output
    again = invoke(*args, "--resume")  # the run is complete: nothing left to train, the same model comes back
    assert again.exit_code == 0, again.output
    assert "resumed: step 1 of 1 was already done" in again.output
    after = json.loads((out / "card.json").read_text())
    assert after["resumed_from"] == 1 and after["after"]["metrics"] == record["after"]["metrics"]


def test_finetune_an_encoder_with_lora(tiny_bert_dir, sst_folder, tmp_path):
    result = invoke(tiny_bert_dir, "--data", sst_folder[0], "--head", "new", "--lora", "2", "--epochs", "1",
                    "--threads", "1", "--out", tmp_path / "lora")
    assert result.exit_code == 0, result.output
    assert "LoRA rank 2 on 13 Linear layers" in result.output and "merged into the weights" in result.output
    assert sizewise.load(str(tmp_path / "lora")).task == "text-classification"


@pytest.mark.parametrize("model, data, extra, message", [
    ("bert", "sst", ["--head", "new", "--freeze", "12-layers"], "has 2 encoder layers"),
    ("bert", "digits", ["--head", "new"], "a new head cannot change what a model reads"),
    ("bert", "sst", [], "pass --head new"),
    ("bert", "unlabelled", ["--head", "new"], "1 of the 2 training examples of 'sst2' have no label"),
    ("cnn", "digits", ["--labels", "0"], "--labels must be a positive number of labelled examples, got 0"),
    ("cnn", "digits", ["--freeze", "backbone", "--unfreeze-after", "3"], "would never unfreeze"),
    ("transfer_models:conv_only", "digits", ["--lora", "4"], "--lora needs nn.Linear layers"),
])
def test_bad_input_is_one_clear_line(model, data, extra, message, tiny_bert_dir, pretrained_dir, sst_folder,
                                     tmp_path):
    model = {"bert": tiny_bert_dir, "cnn": pretrained_dir}.get(model, model)
    data = {"sst": sst_folder[0], "unlabelled": sst_folder[1]}.get(data, data)
    result = invoke(model, "--data", data, *extra, "--epochs", "2", "--out", tmp_path / "x")
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert result.output.strip().startswith("error:") and len(result.output.strip().splitlines()) <= 3
    assert not (tmp_path / "x" / "model").exists()
