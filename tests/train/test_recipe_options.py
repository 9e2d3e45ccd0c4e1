"""The training loop's recipe options: augmentation, label smoothing, one-cycle and warm-up schedules, weight decay
that skips biases and norms, and bf16 autocast (with the choice recorded in the result)."""

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import sizewise
from sizewise.core.errors import ConfigError
from sizewise.data.dataset import Dataset, Split
from sizewise.train import TrainConfig, train
from sizewise.train import loop
from sizewise.train.augment import augment_batch, batch_generator, padding_for, resolve_augment
from sizewise.train.objectives import Objective


@pytest.fixture(scope="module")
def digits():
    return sizewise.load_dataset("digits")


def weights(loaded):
    return {k: v.clone() for k, v in loaded.module.state_dict().items()}


def images_dataset(name: str, channels: int, n: int = 40, size: int = 32, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, channels, size, size)).astype(np.float32)
    y = rng.integers(0, 10, n).astype(np.int64)
    return Dataset(name, "image-classification", {"train": Split(x, y), "test": Split(x[:8], y[:8])},
                   num_classes=10, input_shape=(channels, size, size))


# augmentation: what "auto" chooses, and what a batch looks like

@pytest.mark.parametrize("name, channels, expected", [
    ("cifar10", 3, "crop+flip"),  # natural photos: a mirrored cat is a cat
    ("my-photos", 3, "crop+flip"),  # a user's image folder
    ("digits", 1, "crop"),  # a mirrored digit is not the same digit
    ("mnist", 1, "crop"),
    ("mnist_png", 3, "crop"),  # digits read from an image folder come as RGB: the name still says digits
    ("svhn", 3, "crop"),
    ("greyscale-xrays", 1, "crop"),  # 1 channel: no flip, whatever the name
])
def test_auto_augmentation_per_dataset(name, channels, expected):
    data = images_dataset(name, channels, n=4)
    used, reason = resolve_augment("auto", data, data.split("train").inputs)
    assert used == expected and reason.startswith("auto:")
    assert ("flip" in reason) and ("no flip" in reason) == (expected == "crop")


def test_no_augmentation_for_text_and_explicit_image_augmentation_on_text_is_refused():
    text = Dataset("sst2", "text-classification", {"train": Split(["good", "bad"], np.array([1, 0]))})
    assert resolve_augment("auto", text, text.split("train").inputs)[0] == "none"
    with pytest.raises(ConfigError, match="augment 'crop' crops and flips images; dataset 'sst2' is text"):
        resolve_augment("crop", text, text.split("train").inputs)


def test_padding_scales_with_image_size():
    assert (padding_for(32, 32), padding_for(28, 28), padding_for(8, 8), padding_for(224, 224)) == (4, 3, 1, 28)


def test_crop_shifts_each_image_within_its_padding_and_flip_mirrors_about_half():
    images = np.arange(64 * 3 * 32 * 32, dtype=np.float32).reshape(64, 3, 32, 32)
    out = augment_batch(images, "crop+flip", batch_generator(0, 1, 0))
    assert out.shape == images.shape and out.dtype == np.float32
    padded = np.pad(images, ((0, 0), (0, 0), (4, 4), (4, 4)))
    flipped = 0
    for i in range(len(images)):  # every output is one 32x32 window of the padded image, maybe mirrored
        windows = [padded[i, :, y:y + 32, x:x + 32] for y in range(9) for x in range(9)]
        plain = any(np.array_equal(out[i], w) for w in windows)
        mirrored = any(np.array_equal(out[i], w[..., ::-1]) for w in windows)
        assert plain or mirrored
        flipped += mirrored and not plain
    assert 16 < flipped < 48
    cropped = augment_batch(images, "crop", batch_generator(0, 1, 0))
    assert all(any(np.array_equal(cropped[i], padded[i, :, y:y + 32, x:x + 32]) for y in range(9) for x in range(9))
               for i in range(len(images)))


def test_augmentation_is_a_function_of_seed_epoch_and_step():
    images = np.random.default_rng(0).standard_normal((32, 1, 8, 8)).astype(np.float32)
    a = augment_batch(images, "crop", batch_generator(3, 2, 5))
    assert np.array_equal(a, augment_batch(images, "crop", batch_generator(3, 2, 5)))
    for other in ((4, 2, 5), (3, 3, 5), (3, 2, 6)):
        assert not np.array_equal(a, augment_batch(images, "crop", batch_generator(*other)))


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_with_augmentation_equals_uninterrupted_run(digits, tmp_path, precision):
    torch.manual_seed(0)
    init = sizewise.load("zoo:digits-cnn").module.state_dict()
    config = TrainConfig(epochs=3, seed=5, optimizer="sgd", lr=0.05, threads=1, augment="crop", precision=precision,
                         schedule="onecycle", label_smoothing=0.1)
    full = sizewise.load("zoo:digits-cnn")
    full.module.load_state_dict(init)
    result = train(full, digits, config, out=tmp_path / "full")
    assert (result.augment_used, result.precision_used) == ("crop", precision)

    epoch_ends, last_step = [], [0]

    def kill_in_epoch_3(step):
        last_step[0] = step
        if len(epoch_ends) == 2 and step == epoch_ends[1] + 3:
            raise Interrupt

    killed = sizewise.load("zoo:digits-cnn")
    killed.module.load_state_dict(init)
    with pytest.raises(Interrupt):
        train(killed, digits, config, out=tmp_path / "run", after_step=kill_in_epoch_3,
              on_epoch=lambda stats: epoch_ends.append(last_step[0]))
    resumed = sizewise.load("zoo:digits-cnn")
    result = train(resumed, digits, config, out=tmp_path / "run", resume=True)
    assert result.resumed_from_epoch == 2
    a, b = weights(full), weights(resumed)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []  # bit for bit


def test_augmentation_is_off_by_default_in_python_and_the_result_says_so(digits):
    # short recoveries and fine-tunes share this default, and lose accuracy to augmentation (see loop's docstring)
    result = train(sizewise.load("zoo:digits-cnn"), digits, TrainConfig(epochs=1, threads=1))
    assert result.augment_used == "none" and result.augment_reason.startswith("no augmentation")
    assert result.precision_used in ("fp32", "bf16") and result.precision_reason.startswith("auto: ")


def test_augmentation_changes_what_is_trained_on(digits):
    runs = {}
    for augment in ("none", "crop"):
        torch.manual_seed(0)
        loaded = sizewise.load("zoo:digits-cnn")
        runs[augment] = train(loaded, digits, TrainConfig(epochs=1, seed=0, augment=augment, threads=1,
                                                          precision="fp32")).epochs[0].train_loss
    assert runs["none"] != runs["crop"]


# label smoothing

def test_label_smoothing_reaches_the_cross_entropy(digits):
    loaded = sizewise.load("zoo:digits-cnn")
    split, idx = digits.split("train"), np.arange(16)
    objective = loop._objective(None, loaded, digits, TrainConfig(label_smoothing=0.2))
    loss, _ = objective.loss(split, idx)
    logits = loaded.module(torch.from_numpy(split.inputs[idx]))
    expected = torch.nn.functional.cross_entropy(logits, torch.from_numpy(split.labels[idx]), label_smoothing=0.2)
    assert torch.allclose(loss, expected)
    assert not torch.allclose(loss, torch.nn.functional.cross_entropy(logits, torch.from_numpy(split.labels[idx])))


class Regression(Objective):  # an objective without class labels, as sentence similarity and distillation are
    def loss(self, split, idx):
        raise AssertionError("never reached")


def test_label_smoothing_is_refused_where_there_are_no_labels_to_smooth(digits):
    loaded = sizewise.load("zoo:digits-cnn")
    with pytest.raises(ConfigError, match="label_smoothing 0.1 does not apply to Regression"):
        train(loaded, digits, TrainConfig(epochs=1, label_smoothing=0.1), objective=Regression(loaded, digits))


# schedules and weight decay

def lr_trace(config: TrainConfig, steps_per_epoch: int = 10) -> list[float]:
    optimizer = loop._make_optimizer([torch.nn.Parameter(torch.zeros(2, 2))], config)
    total = config.epochs * steps_per_epoch
    scheduler = loop._make_schedule(optimizer, config, total, steps_per_epoch)
    trace = []
    for _ in range(total):
        trace.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return trace


def test_onecycle_rises_to_lr_then_anneals_to_almost_nothing():
    trace = lr_trace(TrainConfig(epochs=10, lr=0.1, schedule="onecycle", optimizer="sgd"))
    peak = int(np.argmax(trace))
    assert math.isclose(max(trace), 0.1, rel_tol=1e-6) and 25 <= peak <= 35  # 30% of 100 steps
    assert math.isclose(trace[0], 0.1 / 25) and trace[-1] < 1e-4


def test_cosine_with_warmup_ramps_linearly_then_decays():
    trace = lr_trace(TrainConfig(epochs=10, lr=0.1, warmup_epochs=1.5))  # 15 warm-up steps of 100
    assert np.allclose(trace[:15], 0.1 * np.arange(1, 16) / 15)
    assert math.isclose(trace[15], 0.1) and all(a >= b for a, b in zip(trace[15:], trace[16:]))
    assert trace[-1] < 0.1 * 0.01
    assert lr_trace(TrainConfig(epochs=10, lr=0.1))[0] == 0.1  # no warm-up: unchanged cosine


def test_weight_decay_skips_biases_and_norms_but_keeps_every_parameter():
    model = sizewise.load("zoo:resnet20").module
    for p in model.layer1.parameters():  # frozen ones are handed over too (gradual unfreezing needs them)
        p.requires_grad_(False)
    optimizer = loop._make_optimizer(list(model.parameters()), TrainConfig(optimizer="sgd", weight_decay=5e-4))
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 5e-4 and plain["weight_decay"] == 0.0
    assert {id(p) for p in decayed["params"]} == {id(p) for p in model.parameters() if p.ndim >= 2}
    assert {id(p) for p in plain["params"]} == {id(m.weight) for m in model.modules()
                                                if isinstance(m, torch.nn.BatchNorm2d)} | {
        id(p) for n, p in model.named_parameters() if n.endswith("bias")}
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))


def test_embeddings_are_decayed():
    embedding, norm = torch.nn.Embedding(10, 4), torch.nn.LayerNorm(4)
    decayed, plain = loop.param_groups([*embedding.parameters(), *norm.parameters()], 0.01)
    assert decayed["params"] == [embedding.weight] and plain["params"] == [norm.weight, norm.bias]


@pytest.mark.parametrize("kwargs, message", [
    ({"augment": "flip"}, "unknown augment 'flip'"),
    ({"label_smoothing": 1.0}, r"label_smoothing must be in \[0, 1\), got 1.0"),
    ({"label_smoothing": -0.1}, r"label_smoothing must be in \[0, 1\)"),
    ({"schedule": "linear"}, "unknown schedule 'linear'"),
    ({"warmup_epochs": 2, "schedule": "onecycle"}, "warmup_epochs applies to the cosine schedule, not 'onecycle'"),
    ({"warmup_epochs": 10, "epochs": 10}, r"warmup_epochs must be in \[0, epochs=10\), got 10"),
    ({"precision": "fp16"}, "unknown precision 'fp16'"),
    ({"seed": -1}, "seed must be a non-negative integer, got -1"),
])
def test_bad_recipe_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)


# precision

def test_auto_precision_needs_native_bf16_and_a_plain_float_model(monkeypatch):
    loaded = sizewise.load("zoo:digits-cnn")
    monkeypatch.setattr(loop, "_cpu_flags", lambda: {"avx2", "avx512f"})
    used, why = loop.choose_precision("auto", loaded)
    assert used == "fp32" and "no native bf16" in why
    used, why = loop.choose_precision("bf16", loaded)
    assert used == "bf16" and "emulated" in why
    monkeypatch.setattr(loop, "_cpu_flags", lambda: {"avx2", "amx_bf16"})
    assert loop.choose_precision("auto", loaded) == (
        "bf16", "auto: bf16 autocast, the CPU has amx_bf16 and the model is a float32 conv/linear image model")
    assert loop.choose_precision("fp32", loaded)[0] == "fp32"
    from torch.nn.utils import parametrize

    class Identity(torch.nn.Module):
        def forward(self, w):
            return w

    parametrize.register_parametrization(loaded.module.fc2, "weight", Identity())  # as QAT's fake quantizer does
    used, why = loop.choose_precision("auto", loaded)
    assert used == "fp32" and "parametrized" in why


def test_bf16_trains_resnet20_to_a_finite_loss_with_float32_weights():
    data = images_dataset("cifar-like", 3, n=64)
    loaded = sizewise.load("zoo:resnet20")
    result = train(loaded, data, TrainConfig(epochs=1, batch_size=32, val_fraction=0, precision="bf16", lr=0.05,
                                             optimizer="sgd", threads=1, augment="auto"))
    assert result.precision_used == "bf16" and math.isfinite(result.epochs[0].train_loss)
    assert {p.dtype for p in loaded.module.parameters()} == {torch.float32}
    assert result.augment_used == "crop+flip"


def test_bf16_reaches_the_accuracy_of_fp32_on_digits(digits):
    scores = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        loaded = sizewise.load("zoo:digits-cnn")
        result = train(loaded, digits, TrainConfig(epochs=6, seed=0, precision=precision, augment="none", threads=1))
        assert result.precision_used == precision
        scores[precision] = sizewise.evaluate(loaded, digits)["accuracy"]
    assert scores["fp32"] > 0.9 and abs(scores["bf16"] - scores["fp32"]) < 0.03, scores


# the command line

def test_train_command_takes_the_recipe_options(tmp_path):
    from sizewise.cli.app import app

    out = tmp_path / "t"
    result = CliRunner().invoke(app, ["train", "zoo:digits-cnn", "--data", "digits", "--epochs", "2", "--threads",
                                      "1", "--augment", "crop", "--label-smoothing", "0.1", "--schedule", "cosine",
                                      "--warmup-epochs", "0.5", "--precision", "fp32", "--no-memory", "--out",
                                      str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "card.json").read_text())
    step = record["steps"][0]
    assert step["config"]["augment"] == "crop" and step["config"]["label_smoothing"] == 0.1
    assert step["config"]["warmup_epochs"] == 0.5 and step["config"]["precision"] == "fp32"
    training = step["details"]["training"]
    assert training["augment_used"] == "crop" and training["precision_used"] == "fp32"
    assert "training: random crop, padding 1 (as requested)" in result.output
    assert "training: fp32 (as requested)" in result.output


def test_train_command_refuses_an_unknown_augmentation(tmp_path):
    from sizewise.cli.app import app

    result = CliRunner().invoke(app, ["train", "zoo:digits-cnn", "--data", "digits", "--augment", "mirror", "--out",
                                      str(tmp_path / "t")])
    assert result.exit_code == 1 and "unknown augment 'mirror'" in result.output


class _RunsCode:
    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(_RunsCode.marker),))


def test_a_checkpoint_holding_a_pickled_object_is_refused_not_run(tmp_path, digits):
    import sizewise
    from sizewise.core.errors import ConfigError
    from sizewise.train.loop import CHECKPOINT

    marker = tmp_path / "ran"
    _RunsCode.marker = str(marker)
    torch.save({"model": _RunsCode()}, tmp_path / CHECKPOINT)
    with pytest.raises(ConfigError, match="not a checkpoint sizewise wrote"):
        sizewise.train(sizewise.load("zoo:digits-cnn"), digits, sizewise.TrainConfig(epochs=1), out=tmp_path,
                       resume=True)
    assert not marker.exists()
