"""Supervised training of a classifier on an in-memory dataset: AdamW, cosine learning rate, seeded, with progress.

Deliberately plain PyTorch: the models here are small and the data fits in memory, so a framework (Lightning,
Accelerate) would add start-up time and dependencies without adding anything users need.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from sizewise.core.errors import ConfigError, DataError
from sizewise.data.dataset import Dataset
from sizewise.models.loaded import LoadedModel


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    lr: float = 3e-3
    batch_size: int = 64
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"epochs must be a positive integer, got {self.epochs!r}")
        if not self.lr > 0:
            raise ConfigError(f"learning rate must be > 0, got {self.lr!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch size must be a positive integer, got {self.batch_size!r}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight decay must be >= 0, got {self.weight_decay!r}")


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float
    train_accuracy: float
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    epochs: list[EpochStats] = field(default_factory=list)
    seconds: float = 0.0


def train(loaded: LoadedModel, dataset: Dataset, config: TrainConfig | None = None,
          on_epoch: Callable[[EpochStats], None] | None = None) -> TrainResult:
    """Train ``loaded.module`` in place on ``dataset``'s train split."""
    config = config or TrainConfig()
    if dataset.task != "image-classification":
        raise DataError(f"train supports image classification for now; '{dataset.name}' is {dataset.task}")
    if "train" not in dataset.splits:
        raise DataError(f"dataset '{dataset.name}' has no train split")
    from sizewise.tasks import check_compatible

    check_compatible(loaded, dataset)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    split = dataset.split("train")
    x_all = torch.from_numpy(split.inputs)
    y_all = torch.from_numpy(split.labels)
    module = loaded.module
    optimizer = torch.optim.AdamW(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, -(-len(split) // config.batch_size))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps_per_epoch)
    threads_before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    history, start = [], time.perf_counter()
    try:
        module.train()
        for epoch in range(1, config.epochs + 1):
            t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
            order = torch.from_numpy(rng.permutation(len(split)))
            for i in range(steps_per_epoch):
                idx = order[i * config.batch_size:(i + 1) * config.batch_size]
                x, y = x_all[idx], y_all[idx]
                logits = module(**{loaded.inputs.name: x})
                loss = torch.nn.functional.cross_entropy(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                seen += len(y)
                loss_sum += loss.item() * len(y)
                correct += int((logits.argmax(-1) == y).sum())
            stats = EpochStats(epoch, loss_sum / seen, correct / seen, time.perf_counter() - t0)
            history.append(stats)
            if on_epoch:
                on_epoch(stats)
    finally:
        module.eval()
        torch.set_num_threads(threads_before)
    return TrainResult(epochs=history, seconds=time.perf_counter() - start)
