"""Knowledge distillation: students (layers:K, width:F, references), losses, resume, bad input, the command."""

import copy

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import sizewise
from sizewise.cli.app import app
from sizewise.compress.distill import (
    Distillation,
    DistillConfig,
    build_student,
    distill,
    kept_layers,
    params,
    read_unlabeled,
)
from sizewise.core.errors import ConfigError, DataError
from sizewise.data.dataset import Dataset, Split


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def digits_teacher():
    torch.manual_seed(0)
    teacher = sizewise.load("zoo:digits-cnn")
    sizewise.train(teacher, sizewise.load_dataset("digits"), sizewise.TrainConfig(epochs=3, seed=0))
    return teacher


SENTENCES = ["large models cost money", "pruning make the model smaller", "the model is faster",
             "most teams cannot deploy them", "quantization and distillation", "measuring honestly tells how much"]


def sts_dataset() -> Dataset:
    pairs = [(a, b) for a in SENTENCES for b in SENTENCES[:3]]
    scores = np.linspace(0, 5, len(pairs)).astype(np.float32)
    return Dataset("sts-tiny", "sentence-similarity", {"train": Split(pairs, scores), "test": Split(pairs, scores)},
                   "test")


def test_kept_layers_are_evenly_spaced_and_end_with_the_last():
    assert kept_layers(6, 3) == [1, 3, 5]
    assert kept_layers(12, 6) == [1, 3, 5, 7, 9, 11]
    assert kept_layers(2, 1) == [1]


def test_kd_loss_is_the_temperature_scaled_kl_and_its_gradient_reaches_only_the_student(digits_teacher):
    ds = sizewise.load_dataset("digits")
    student, _ = build_student(digits_teacher, "width:0.5")
    digits_teacher.module.zero_grad(set_to_none=True)  # training left its last gradients there
    objective = Distillation(student, digits_teacher, ds, DistillConfig(temperature=3.0, alpha=1.0))
    split, idx = ds.split("train"), np.arange(16)
    loss, right = objective.loss(split, idx)
    x = torch.from_numpy(split.inputs[idx])
    with torch.no_grad():
        t = digits_teacher.module(x)
    s = student.module(x)
    expected = torch.nn.functional.kl_div(torch.log_softmax(s / 3, -1), torch.softmax(t / 3, -1),
                                          reduction="batchmean") * 9
    assert torch.allclose(loss, expected, atol=1e-6) and right is not None
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.module.parameters())
    assert all(p.grad is None for p in digits_teacher.module.parameters())


def test_under_bf16_autocast_the_kd_loss_is_computed_in_float32_from_the_logits(digits_teacher):
    ds = sizewise.load_dataset("digits")
    student, _ = build_student(digits_teacher, "width:0.5")
    objective = Distillation(student, digits_teacher, ds, DistillConfig(temperature=2.0, alpha=1.0))
    split, idx = ds.split("train"), np.arange(32)
    x = torch.from_numpy(split.inputs[idx])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = objective.loss(split, idx)
        with torch.no_grad():
            s, t = student.module(x).float(), digits_teacher.module(x).float()  # the bf16 forward's logits
    assert loss.dtype == torch.float32
    expected = torch.nn.functional.kl_div(torch.log_softmax(s / 2, -1), torch.softmax(t / 2, -1),
                                          reduction="batchmean") * 4
    assert torch.allclose(loss, expected, rtol=1e-5, atol=1e-7)


def test_a_student_equal_to_its_teacher_has_zero_kd_loss(digits_teacher):
    ds = sizewise.load_dataset("digits")
    twin = copy.deepcopy(digits_teacher)
    loss, _ = Distillation(twin, digits_teacher, ds, DistillConfig(alpha=1.0)).loss(ds.split("train"), np.arange(8))
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_width_student_of_a_cnn_is_narrower_and_initialised_from_the_teacher(digits_teacher):
    student, info = build_student(digits_teacher, "width:0.25")
    assert info["width"] == 0.25
    t_convs = [m for m in digits_teacher.module.modules() if isinstance(m, torch.nn.Conv2d)]
    s_convs = [m for m in student.module.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [m.out_channels for m in s_convs] == [round(m.out_channels * 0.25) for m in t_convs]
    # each kept filter of the first conv is one of the teacher's filters
    for w in s_convs[0].weight:
        assert any(torch.equal(w, tw) for tw in t_convs[0].weight)
    assert params(student.module) < 0.3 * params(digits_teacher.module)


def test_layers_student_keeps_the_chosen_layers_weights(tiny_bert_dir, tmp_path):
    teacher = sizewise.load(str(tiny_bert_dir))
    student, info = build_student(teacher, "layers:1")
    assert info["kept_layers"] == [1] and student.module.config.num_hidden_layers == 1
    t_state, s_state = teacher.module.state_dict(), student.module.state_dict()
    for key, value in s_state.items():
        source = key.replace("encoder.layer.0.", "encoder.layer.1.")
        assert torch.equal(value, t_state[source]), key
    sizewise.save_model(student, tmp_path / "model")
    back = sizewise.load(str(tmp_path))
    inputs = student.example_inputs(2)
    with torch.inference_mode():
        assert torch.allclose(student.module(**inputs).last_hidden_state, back.module(**inputs).last_hidden_state)


def test_embedding_kd_trains_a_narrow_transformer_through_a_projection(tiny_bert_dir, tmp_path):
    teacher = sizewise.load(str(tiny_bert_dir))
    student, _ = build_student(teacher, "width:0.5")
    assert student.module.config.hidden_size == 16
    ds = sts_dataset()
    result = distill(teacher, student, ds, DistillConfig(hidden_loss=True), sizewise.TrainConfig(epochs=2, lr=1e-3),
                     bar=False)
    assert len(result.epochs) == 2 and result.epochs[-1].train_loss < result.epochs[0].train_loss
    assert "spearman" in sizewise.evaluate(student, ds)


def test_unlabeled_sentences_drive_embedding_kd(tiny_bert_dir, tmp_path):
    path = tmp_path / "sentences.txt"
    path.write_text("\n".join(SENTENCES) + "\n\n")
    assert read_unlabeled(path) == SENTENCES
    teacher = sizewise.load(str(tiny_bert_dir))
    student, _ = build_student(teacher, "layers:1")
    result = distill(teacher, student, sts_dataset(), DistillConfig(), sizewise.TrainConfig(epochs=1, batch_size=4),
                     unlabeled=read_unlabeled(path), bar=False)
    assert result.epochs[0].train_loss > 0


def test_hidden_feature_loss_trains_its_projections_and_resumes_exactly(digits_teacher, tmp_path):
    ds = sizewise.load_dataset("digits")
    config = DistillConfig(hidden_loss=True)

    class Killed(Exception):
        pass

    def kill_after_first(stats):
        if stats.epoch == 1:
            raise Killed

    def run(out, resume=False, on_epoch=None):
        student, _ = build_student(digits_teacher, "width:0.5", seed=0)
        distill(digits_teacher, student, ds, config, sizewise.TrainConfig(epochs=2, seed=0), out=out,
                resume=resume, bar=False, on_epoch=on_epoch)
        return student

    straight = run(tmp_path / "a")
    with pytest.raises(Killed):
        run(tmp_path / "b", on_epoch=kill_after_first)
    resumed = run(tmp_path / "b", resume=True)
    checkpoint = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    assert checkpoint["objective"]  # the learned projections travel with the checkpoint
    for (name, a), (_, b) in zip(straight.module.state_dict().items(), resumed.module.state_dict().items()):
        assert torch.equal(a, b), name


def test_bad_input_gives_one_clear_error(digits_teacher, tiny_bert_dir, tmp_path):
    with pytest.raises(ConfigError, match="leaves no units in layer 'conv1'"):
        build_student(digits_teacher, "width:0.01")
    with pytest.raises(ConfigError, match="cannot see the same examples"):
        build_student(digits_teacher, "zoo:lenet5")
    with pytest.raises(ConfigError, match="must keep between 1 and 1"):
        build_student(sizewise.load(str(tiny_bert_dir)), "layers:2")
    with pytest.raises(ConfigError, match="alpha"):
        DistillConfig(alpha=1.5)
    ds = sizewise.load_dataset("digits")
    unlabelled = Dataset("d", "image-classification", {"train": Split(ds.split("train").inputs, np.array([])),
                                                        "test": ds.split("test")}, "test", 10, ds.input_shape)
    student, _ = build_student(digits_teacher, "width:0.5")
    with pytest.raises(DataError, match="has no labels"):
        distill(digits_teacher, student, unlabelled, DistillConfig(alpha=0.5), sizewise.TrainConfig(epochs=1))
    with pytest.raises(DataError, match="--unlabeled takes a text file"):
        distill(digits_teacher, student, ds, DistillConfig(), sizewise.TrainConfig(epochs=1), unlabeled=["x"])


def test_cli_distils_and_reports_retention(trained_digits_dir, tmp_path, monkeypatch, fast_measure):
    import dataclasses
    import importlib
    import json

    api = importlib.import_module("sizewise.measure.api")  # `sizewise.measure` is the verb; its module is here
    monkeypatch.setattr(api, "MeasureConfig", lambda **kw: dataclasses.replace(fast_measure, **kw))
    result = CliRunner().invoke(app, ["distill", str(trained_digits_dir), "--student", "width:0.5", "--data",
                                      "digits", "--epochs", "2", "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert "keeps" in result.output and (tmp_path / "s" / "model").is_dir()
    record = json.loads((tmp_path / "s" / "card.json").read_text())
    assert record["kind"] == "distill" and record["roles"] == {"before": "teacher", "after": "student"}
    step = record["steps"][0]
    assert step["config"]["student"] == "width:0.5" and step["train"]["epochs"] == 2
    assert step["details"]["student"]["student_params"] == record["after"]["params"]["total"] == 9_802
    assert record["before"]["params"]["total"] == 38_282  # the teacher, measured the same way
    bad = CliRunner().invoke(app, ["distill", str(trained_digits_dir), "--student", "layers:2", "--data", "digits",
                                   "--out", str(tmp_path / "t")])
    assert bad.exit_code == 1 and "transformer encoder" in bad.output and "Traceback" not in bad.output
