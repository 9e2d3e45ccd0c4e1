import pytest
import torch

import sizewise
from sizewise.core.errors import ConfigError
from sizewise.train import TrainConfig, train


@pytest.fixture(scope="module")
def digits():
    return sizewise.load_dataset("digits")


def weights(loaded):
    return {k: v.clone() for k, v in loaded.module.state_dict().items()}


def test_training_learns_digits(digits):
    loaded = sizewise.load("zoo:digits-cnn")
    result = train(loaded, digits, TrainConfig(epochs=4, seed=1))
    assert len(result.epochs) == 4 and result.epochs[-1].val_accuracy > 0.8
    assert sizewise.evaluate(loaded, digits)["accuracy"] > 0.8


def test_same_seed_same_weights(digits):
    a, b = sizewise.load("zoo:digits-cnn"), sizewise.load("zoo:digits-cnn")
    b.module.load_state_dict(a.module.state_dict())
    train(a, digits, TrainConfig(epochs=1, seed=3))
    train(b, digits, TrainConfig(epochs=1, seed=3))
    assert all(torch.equal(x, y) for x, y in zip(weights(a).values(), weights(b).values(), strict=True))


def test_resume_after_interruption_equals_uninterrupted_run(digits, tmp_path):
    torch.manual_seed(0)
    init = sizewise.load("zoo:digits-cnn").module.state_dict()
    config = TrainConfig(epochs=3, seed=5, optimizer="sgd", lr=0.05)

    full = sizewise.load("zoo:digits-cnn")
    full.module.load_state_dict(init)
    train(full, digits, config, out=tmp_path / "full")

    class Interrupt(Exception):
        pass

    def kill_in_epoch_2(step):
        if step == 2 * 19 + 3:  # 19 steps per epoch (1,212 examples / 64): dies mid-way through epoch 3
            raise Interrupt

    killed = sizewise.load("zoo:digits-cnn")
    killed.module.load_state_dict(init)
    with pytest.raises(Interrupt):
        train(killed, digits, config, out=tmp_path / "run", after_step=kill_in_epoch_2)
    resumed = sizewise.load("zoo:digits-cnn")
    result = train(resumed, digits, config, out=tmp_path / "run", resume=True)
    assert result.resumed_from_epoch == 2 and [e.epoch for e in result.epochs] == [1, 2, 3]
    assert all(torch.equal(x, y) for x, y in zip(weights(full).values(), weights(resumed).values(), strict=True))


def test_early_stopping_restores_the_best_epoch(digits):
    loaded = sizewise.load("zoo:digits-cnn")
    result = train(loaded, digits, TrainConfig(epochs=30, lr=0.05, patience=1, seed=0))
    assert result.stopped_early and len(result.epochs) < 30
    assert result.best_epoch == max(result.epochs, key=lambda e: e.val_accuracy).epoch


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"optimizer": "lion"}, "unknown optimizer 'lion'"),
    ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\)"),
    ({"lr": -1}, "learning rate must be > 0"),
])
def test_bad_training_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)
