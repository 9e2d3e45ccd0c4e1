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


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ: {different}"


def test_resume_after_interruption_equals_uninterrupted_run(digits, tmp_path):
    torch.manual_seed(0)
    init = sizewise.load("zoo:digits-cnn").module.state_dict()
    config = TrainConfig(epochs=3, seed=5, optimizer="sgd", lr=0.05, threads=1)

    full = sizewise.load("zoo:digits-cnn")
    full.module.load_state_dict(init)
    train(full, digits, config, out=tmp_path / "full")

    class Interrupt(Exception):
        pass

    last_step, epoch_ends = [0], []

    def note_epoch(stats):
        epoch_ends.append(last_step[0])

    def kill_in_epoch_3(step):  # dies 3 steps into epoch 3, after epoch 2's checkpoint was written
        last_step[0] = step
        if len(epoch_ends) == 2 and step == epoch_ends[1] + 3:
            raise Interrupt

    killed = sizewise.load("zoo:digits-cnn")
    killed.module.load_state_dict(init)
    with pytest.raises(Interrupt):
        train(killed, digits, config, out=tmp_path / "run", after_step=kill_in_epoch_3, on_epoch=note_epoch)
    with pytest.raises(AssertionError):  # the kill really cut the run short: its weights are not the final ones
        assert_same_weights(weights(full), weights(killed))

    resumed = sizewise.load("zoo:digits-cnn")  # fresh random weights: everything must come from the checkpoint
    trained_epochs = []
    result = train(resumed, digits, config, out=tmp_path / "run", resume=True,
                   on_epoch=lambda stats: trained_epochs.append(stats.epoch))
    assert result.resumed_from_epoch == 2 and [e.epoch for e in result.epochs] == [1, 2, 3]
    assert trained_epochs == [3]  # only the unfinished epoch was trained again
    assert_same_weights(weights(full), weights(resumed))  # bit for bit, every tensor of the state dict


def test_early_stopping_restores_the_best_epoch(digits):
    torch.manual_seed(0)
    loaded = sizewise.load("zoo:digits-cnn")
    saved = {}  # each epoch's weights, copied as the epoch ends
    result = train(loaded, digits, TrainConfig(epochs=30, lr=0.05, patience=1, seed=0, threads=1),
                   on_epoch=lambda stats: saved.__setitem__(stats.epoch, weights(loaded)))
    assert result.stopped_early and len(result.epochs) < 30
    scores = [e.val_accuracy for e in result.epochs]
    best = result.best_epoch
    assert scores[best - 1] == max(scores) and scores.index(max(scores)) == best - 1  # the first best epoch
    assert result.epochs[-1].epoch == best + 1  # patience 1: stopped one epoch after the last improvement
    assert_same_weights(saved[best], weights(loaded))  # handed back: the best epoch's weights...
    with pytest.raises(AssertionError):  # ...not the last epoch's
        assert_same_weights(saved[result.epochs[-1].epoch], weights(loaded))


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"optimizer": "lion"}, "unknown optimizer 'lion'"),
    ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\)"),
    ({"lr": -1}, "learning rate must be > 0"),
])
def test_bad_training_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)
