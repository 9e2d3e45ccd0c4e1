"""The one training loop (images, text classification, sentence similarity: see ``objectives``), reused by pruning
recovery and later QAT, distillation and transfer learning.

Deliberately plain PyTorch: the data fits in memory and the models are small enough for a CPU, so a framework
(Lightning, Accelerate) would add start-up time and dependencies without adding what users need here, which is:
a validation split, early stopping, a checkpoint after every epoch written atomically, and a resume that gives the
same weights as an uninterrupted run. Resume is exact because each epoch's data order comes from ``seed + epoch``
(not from a generator whose state would have to be saved) and torch's RNG state travels in the checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sizewise.core.errors import ConfigError, DataError
from sizewise.data.dataset import Dataset, Split
from sizewise.models.loaded import LoadedModel
from sizewise.data.dataset import VALIDATION
from sizewise.train.objectives import Objective, objective_for

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "step", "constant")
CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    lr: float = 3e-3
    batch_size: int = 64
    optimizer: str = "adamw"
    momentum: float = 0.9  # SGD only
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    # Early stopping reads the dataset's validation split; only a dataset without one (made by hand) has this
    # fraction of its train split held out instead. The test split is never seen.
    val_fraction: float = 0.1
    patience: int | None = None  # stop after this many epochs without validation improvement; None = never
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"epochs must be a positive integer, got {self.epochs!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError(f"learning rate must be > 0, got {self.lr!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch size must be a positive integer, got {self.batch_size!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer '{self.optimizer}'", hint=f"choose one of: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule '{self.schedule}'", hint=f"choose one of: {', '.join(SCHEDULES)}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight decay must be >= 0, got {self.weight_decay!r}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise ConfigError(f"patience must be a positive integer, got {self.patience!r}")


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float
    train_accuracy: float | None
    val_accuracy: float | None  # the objective's validation metric (accuracy, or Spearman for similarity)
    lr: float
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    epochs: list[EpochStats] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    resumed_from_epoch: int = 0
    seconds: float = 0.0


def split_validation(split: Split, fraction: float, seed: int) -> tuple[Split, Split | None]:
    if fraction == 0 or len(split) < 10:
        return split, None
    order = np.random.default_rng(seed).permutation(len(split))
    n_val = max(1, int(round(len(split) * fraction)))
    val, train = order[:n_val], order[n_val:]
    return split.subset(train), split.subset(val)


def train_and_validation(dataset: Dataset, config: TrainConfig) -> tuple[Split, Split | None]:
    """The dataset's own validation split when it has one (``load_dataset`` always gives one); otherwise a
    ``val_fraction`` of train, so a hand-made dataset still gets early stopping without touching its test split."""
    if VALIDATION in dataset.splits:
        return dataset.split("train"), (dataset.split(VALIDATION) if config.val_fraction > 0 else None)
    return split_validation(dataset.split("train"), config.val_fraction, config.seed)


def _make_optimizer(params: list[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    # Every parameter is handed over, frozen ones too: SGD and AdamW skip a parameter whose gradient is None, so a
    # frozen backbone costs nothing, and one unfrozen later (gradual unfreezing) trains without a new optimizer.
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                               nesterov=config.momentum > 0)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def _make_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    if config.schedule == "step":  # x0.1 at 50% and 75% of training, as in He et al. 2016
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, [int(total_steps * 0.5), int(total_steps * 0.75)], 0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill mid-write leaves the previous checkpoint intact


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _progress(enabled: bool, description: str, total: int):
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        TextColumn("{task.fields[status]}"), console=Console(stderr=True), transient=True)
    return _ProgressHandle(progress, description, total)


class _ProgressHandle:
    def __init__(self, progress, description: str, total: int):
        self.progress, self.description, self.total = progress, description, total

    def __enter__(self):
        self.progress.__enter__()
        self.task = self.progress.add_task(self.description, total=self.total, status="")
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def advance(self, status: str = "") -> None:
        self.progress.update(self.task, advance=1, status=status)


def train(loaded: LoadedModel, dataset: Dataset, config: TrainConfig | None = None, *, out: str | Path | None = None,
          resume: bool = False, on_epoch: Callable[[EpochStats], None] | None = None,
          after_step: Callable[[int], None] | None = None, bar: bool = False,
          objective: Objective | None = None) -> TrainResult:
    """Train ``loaded.module`` in place on ``dataset``'s train split.

    ``out``: a directory for ``checkpoint.pt`` (written after every epoch); with ``resume=True`` training continues
    from it. ``after_step(global_step)`` runs after each optimizer step (pruning uses it to keep pruned weights at
    zero and to follow its sparsity schedule). ``objective`` replaces the task's own (distillation passes one whose
    loss also looks at a teacher); its ``extra_parameters()`` (e.g. a learned projection) train along.
    """
    config = config or TrainConfig()
    if "train" not in dataset.splits:
        raise DataError(f"dataset '{dataset.name}' has no train split")
    from sizewise.tasks import check_compatible

    check_compatible(loaded, dataset)
    objective = objective or objective_for(loaded, dataset)
    train_split, val_split = train_and_validation(dataset, config)
    module = loaded.module
    steps_per_epoch = max(1, -(-len(train_split) // config.batch_size))
    optimizer = _make_optimizer([*module.parameters(), *objective.extra_parameters()], config)
    scheduler = _make_schedule(optimizer, config, config.epochs * steps_per_epoch)
    checkpoint = Path(out) / CHECKPOINT if out else None
    history: list[EpochStats] = []
    best = (-float("inf"), None, None)  # (validation metric, epoch, state dict); Spearman x 100 can be < -1
    start_epoch = 0
    torch.manual_seed(config.seed)
    if resume and checkpoint and checkpoint.exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)  # our own file, written above
        module.load_state_dict(state["model"])
        objective.load_state_dict(state.get("objective", {}))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        history = [EpochStats(**e) for e in state["history"]]
        start_epoch = state["epoch"]
        best = (state["best_val"], state["best_epoch"], state.get("best_state"))
    elif checkpoint:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)

    started, stopped_early, step = time.perf_counter(), False, start_epoch * steps_per_epoch
    with _threads(config.threads), _progress(bar, "training", (config.epochs - start_epoch) * steps_per_epoch) \
            as bar:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            module.train()
            t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
            order = np.random.default_rng(config.seed + epoch).permutation(len(train_split))
            for i in range(steps_per_epoch):
                idx = order[i * config.batch_size:(i + 1) * config.batch_size]
                loss, right = objective.loss(train_split, idx)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                step += 1
                if after_step:
                    after_step(step)
                seen += len(idx)
                loss_sum += loss.item() * len(idx)
                correct = None if right is None or correct is None else correct + right
                if bar:
                    bar.advance(f"epoch {epoch}/{config.epochs} · loss {loss_sum / seen:.3f}")
            module.eval()
            val_acc = objective.validate(val_split) if val_split is not None else None
            stats = EpochStats(epoch, loss_sum / seen, None if correct is None else correct / seen, val_acc, scheduler.get_last_lr()[0],
                               time.perf_counter() - t0)
            history.append(stats)
            if val_acc is not None and val_acc > best[0]:
                best = (val_acc, epoch, copy.deepcopy(module.state_dict()) if config.patience else None)
            if checkpoint:
                _save_checkpoint(checkpoint, {
                    "model": module.state_dict(), "objective": objective.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(), "epoch": epoch,
                    "history": [dataclasses.asdict(e) for e in history],
                    "best_val": best[0], "best_epoch": best[1], "best_state": best[2]})
            if on_epoch:
                on_epoch(stats)
            if config.patience and best[1] is not None and epoch - best[1] >= config.patience:
                stopped_early = True
                break
    if config.patience and best[2] is not None:
        module.load_state_dict(best[2])  # early stopping hands back the best validated weights
    module.eval()
    return TrainResult(epochs=history, best_epoch=best[1], stopped_early=stopped_early,
                       resumed_from_epoch=start_epoch, seconds=time.perf_counter() - started)
