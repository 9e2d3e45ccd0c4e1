"""Models for the transfer-learning tests, referenced as ``transfer_models:NAME`` factories."""

from torch import nn


def conv_only():
    """A model with no nn.Linear at all: LoRA has nothing to adapt."""
    model = nn.Sequential(nn.Conv2d(1, 10, 8), nn.Flatten())
    model.input_shape = (1, 8, 8)
    return model


def pretrained_digits(directory):
    """A digits-cnn trained on digits (one thread: the machine is shared), saved as a run directory."""
    import sizewise

    loaded = sizewise.load("zoo:digits-cnn")
    sizewise.train(loaded, sizewise.load_dataset("digits"), sizewise.TrainConfig(epochs=4, seed=0, threads=1))
    sizewise.save_model(loaded, directory / "model")
    return directory


def conv_bn():
    """conv-BN-linear-linear: freezing must keep BatchNorm's running statistics too."""
    import torch

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(256, 16), nn.ReLU(), nn.Linear(16, 10))
    model.input_shape = (1, 8, 8)
    return model
