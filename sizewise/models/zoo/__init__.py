"""Built-in architectures, referenced as ``zoo:NAME``. Each entry records the dataset its input shape belongs to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from sizewise.core.registry import Registry
from sizewise.models.zoo.digits_cnn import DigitsCNN
from sizewise.models.zoo.lenet import LeNet5, LeNet300100
from sizewise.models.zoo.resnet_cifar import CifarResNet


@dataclass(frozen=True)
class ZooEntry:
    build: Callable[..., nn.Module]
    input_shape: tuple[int, ...]
    dataset: str
    num_classes: int
    description: str


ZOO: Registry[ZooEntry] = Registry("zoo model")

ZOO.register("lenet-300-100")(ZooEntry(LeNet300100, (1, 28, 28), "mnist", 10, "784-300-100-10 MLP (Han et al. 2015)"))
ZOO.register("lenet5")(ZooEntry(LeNet5, (1, 28, 28), "mnist", 10, "Caffe LeNet-5, 20/50 filters (Han et al. 2015)"))
ZOO.register("resnet20")(
    ZooEntry(lambda **kw: CifarResNet(20, **kw), (3, 32, 32), "cifar10", 10, "He et al. 2016, option A shortcuts"))
ZOO.register("resnet56")(
    ZooEntry(lambda **kw: CifarResNet(56, **kw), (3, 32, 32), "cifar10", 10, "He et al. 2016, option A shortcuts"))
ZOO.register("digits-cnn")(ZooEntry(DigitsCNN, (1, 8, 8), "digits", 10, "small CNN for sklearn's 8x8 digits"))


def build(name: str, **kwargs) -> nn.Module:
    return ZOO.get(name).build(**kwargs)
