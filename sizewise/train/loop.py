"""The one training loop (images, text classification, sentence similarity: see ``objectives``), reused by pruning
recovery and later QAT, distillation and transfer learning.

Deliberately plain PyTorch: the data fits in memory and the models are small enough for a CPU, so a framework
(Lightning, Accelerate) would add start-up time and dependencies without adding what users need here, which is:
a validation split, early stopping, a checkpoint after every epoch written atomically, and a resume that gives the
same weights as an uninterrupted run. Resume is exact because each epoch's data order comes from ``seed + epoch``
and each batch's augmentation from ``(seed, epoch, step)`` (not from generators whose state would have to be saved),
and torch's RNG state travels in the checkpoint.

What makes a strong baseline rather than a merely trained model: weight decay on weight matrices only (decaying a
BatchNorm scale or a bias pulls it towards zero for no regularising gain) and bf16 autocast where the CPU computes
bf16 natively (``precision="auto"``) are on by default. bf16 is faster and close to free: a CIFAR ResNet-20 trains
1.5-1.9x faster on AVX512-BF16 without AMX (no committed run measured it on AMX), and at 15 epochs fp32 ended 0.24 pp
higher on validation than bf16 (means of two seeds each), no more than two fp32 seeds differ from each other
(``benchmarks/results/resnet20_recipe_ablation.md``); ``precision="fp32"`` is there for whoever wants it. Augmentation
chosen per dataset (``augment="auto"``, see ``augment.py``) is what ``sizewise train`` uses, but not the library
default, because the loop's other users run short recoveries and fine-tunes (1-5 epochs), where augmentation's
regularisation costs accuracy before it pays (digits-cnn, two seeds: 4 epochs, test accuracy 0.92-0.94 without
crops, 0.82-0.84 with; 20 epochs, 0.98 without, 0.98-0.99 with). Label smoothing, warm-up and the one-cycle schedule
are there to ask for. Each result says which augmentation and precision ran, and why.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sizewise.core import progress
from sizewise.core.errors import ConfigError, DataError
from sizewise.data.dataset import Dataset, Split
from sizewise.models.loaded import LoadedModel
from sizewise.data.dataset import VALIDATION
from sizewise.train.augment import AUGMENTS, augment_batch, batch_generator, resolve_augment
from sizewise.train.objectives import Objective, objective_for

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "onecycle", "step", "constant")
PRECISIONS = ("auto", "fp32", "bf16")
CHECKPOINT = "checkpoint.pt"
# CPU flags of native bf16 arithmetic (Intel Cooper Lake+ / Sapphire Rapids AMX, AMD Zen 4+). Without them bf16 is
# emulated by converting to and from fp32, which is slower than fp32 itself.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


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
    # auto: crop+flip for 3-channel natural images, crop alone for 1-channel or digit-like data, none for text.
    # Off by default for the short recoveries and fine-tunes that share this loop (see the module docstring).
    augment: str = "none"
    label_smoothing: float = 0.0  # classification only; an objective without class labels refuses a value > 0
    warmup_epochs: float = 0.0  # linear warm-up before the cosine decay (onecycle warms up by itself)
    # auto: bf16 autocast where the CPU has native bf16 and the model is a plain float32 conv/linear model
    precision: str = "auto"

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
        if not isinstance(self.seed, int) or self.seed < 0:  # it seeds numpy's generators, which refuse < 0
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.augment not in AUGMENTS:
            raise ConfigError(f"unknown augment '{self.augment}'", hint=f"choose one of: {', '.join(AUGMENTS)}")
        if not (isinstance(self.label_smoothing, (int, float)) and 0 <= self.label_smoothing < 1):
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}",
                              hint="0.1 is the usual value; 0 turns it off")
        if not (isinstance(self.warmup_epochs, (int, float)) and 0 <= self.warmup_epochs < self.epochs):
            raise ConfigError(f"warmup_epochs must be in [0, epochs={self.epochs}), got {self.warmup_epochs!r}")
        if self.warmup_epochs and self.schedule != "cosine":
            raise ConfigError(f"warmup_epochs applies to the cosine schedule, not '{self.schedule}'",
                              hint="onecycle warms up by itself; use schedule 'cosine' or warmup_epochs 0")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision '{self.precision}'", hint=f"choose one of: {', '.join(PRECISIONS)}")


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
    # what actually ran, resolved from the config's "auto"s, and why: a result states them
    precision_used: str = "fp32"
    precision_reason: str = ""
    augment_used: str = "none"
    augment_reason: str = ""


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


def param_groups(params: list[torch.nn.Parameter], weight_decay: float) -> list[dict]:
    """Weight decay for weight matrices and conv kernels (ndim >= 2, embeddings included, as nanoGPT does), none for
    biases and norm scales/shifts (ndim <= 1): decaying those only pulls a BatchNorm scale or a bias towards zero,
    which constrains the layer's range without regularising what it computes."""
    unique = list(dict.fromkeys(params))  # a tied weight is handed over once
    return [{"params": [p for p in unique if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in unique if p.ndim <= 1], "weight_decay": 0.0}]


def _make_optimizer(params: list[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    # Every parameter is handed over, frozen ones too: SGD and AdamW skip a parameter whose gradient is None, so a
    # frozen backbone costs nothing, and one unfrozen later (gradual unfreezing) trains without a new optimizer.
    groups = param_groups(params, config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)
    return torch.optim.AdamW(groups, lr=config.lr)


def _make_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int, steps_per_epoch: int):
    if config.schedule == "cosine" and config.warmup_epochs:
        warmup = max(1, round(config.warmup_epochs * steps_per_epoch))
        decay = max(1, total_steps - warmup)

        def factor(step: int) -> float:  # linear from lr/warmup up to lr, then cosine down to 0
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(step - warmup, decay) / decay))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    if config.schedule == "onecycle":  # Smith & Topin 2017: up to lr over 30% of the steps, then down to ~0
        # momentum cycles against the lr (0.95 -> 0.85 -> 0.95), unless SGD runs without momentum: cycling would
        # switch on a momentum the config turned off
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=max(1, total_steps),
                                                   cycle_momentum=config.optimizer == "adamw" or config.momentum > 0)
    if config.schedule == "step":  # x0.1 at 50% and 75% of training, as in He et al. 2016
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, [int(total_steps * 0.5), int(total_steps * 0.75)], 0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def choose_precision(requested: str, loaded: LoadedModel) -> tuple[str, str]:
    """(fp32 | bf16, why). ``auto`` picks bf16 only where it is both fast and safe: the CPU has native bf16, and the
    model is an ordinary float32 conv/linear model (not ONNX, not already low-precision, and without weight
    parametrizations such as QAT's fake quantizer, whose int8 grid a bf16 cast would blur)."""
    if requested == "fp32":
        return "fp32", "fp32 (as requested)"
    flags = _cpu_flags()
    native = [f for f in NATIVE_BF16_FLAGS if f in flags]
    if requested == "bf16":
        return "bf16", "bf16 autocast (as requested)" + (
            f"; the CPU has {'/'.join(native)}" if native else "; this CPU has no native bf16, so it is emulated "
            "and likely slower than fp32")
    if not native:
        return "fp32", f"auto: fp32, this CPU has no native bf16 (none of {', '.join(NATIVE_BF16_FLAGS)})"
    plain, what = _plain_float_model(loaded)
    if not plain:
        return "fp32", f"auto: fp32, {what}"
    return "bf16", f"auto: bf16 autocast, the CPU has {'/'.join(native)} and {what}"


def _cpu_flags() -> set[str]:
    from sizewise.measure.environment import _cpuinfo  # the one reader of /proc/cpuinfo (cached)

    return _cpuinfo()[1]


def _plain_float_model(loaded: LoadedModel) -> tuple[bool, str]:
    from torch.nn.utils import parametrize

    kind = loaded.inputs.kind
    if kind not in ("tensor", "tokens"):
        return False, f"the model takes '{kind}' inputs (bf16 autocast is for PyTorch image and text models)"
    modules = list(loaded.module.modules())
    if not any(isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)) for m in modules):
        return False, "the model has no Linear or Conv layer for bf16 to speed up"
    if any(parametrize.is_parametrized(m) for m in modules):
        return False, "the model's weights are parametrized (fake-quantized or shared), which bf16 would blur"
    dtypes = {p.dtype for p in loaded.module.parameters() if p.is_floating_point()}
    if dtypes - {torch.float32}:
        return False, f"the model holds {', '.join(sorted(map(str, dtypes)))} weights, not float32 alone"
    what = "image" if kind == "tensor" else "text"
    return True, f"the model is a float32 conv/linear {what} model"


def read_checkpoint(path: Path) -> dict:
    """A checkpoint this loop wrote: tensors, numbers, strings and containers only. A run folder can come from someone
    else, so anything else in it (a pickled object, whose loading would run its code) is refused, not executed."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(f"cannot resume from {path}: not a checkpoint sizewise wrote ({first})",
                          hint="delete it to start the training over, or use a new --out") from None


def _save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill mid-write leaves the previous checkpoint intact


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch at ``n`` threads inside the block (unchanged for None), its earlier count restored after."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
    objective = _objective(objective, loaded, dataset, config)
    train_split, val_split = train_and_validation(dataset, config)
    augment, augment_reason = resolve_augment(config.augment, dataset, train_split.inputs)
    precision, precision_reason = choose_precision(config.precision, loaded)
    module = loaded.module
    steps_per_epoch = max(1, -(-len(train_split) // config.batch_size))
    optimizer = _make_optimizer([*module.parameters(), *objective.extra_parameters()], config)
    scheduler = _make_schedule(optimizer, config, config.epochs * steps_per_epoch, steps_per_epoch)
    checkpoint = Path(out) / CHECKPOINT if out else None
    history: list[EpochStats] = []
    # (validation metric, epoch, state dict), the metric signed so that higher is better (Spearman x 100 can be
    # < -1; perplexity is better lower)
    sign = 1.0 if objective.higher_is_better else -1.0
    best = (-float("inf"), None, None)
    start_epoch = 0
    torch.manual_seed(config.seed)
    if resume and checkpoint and checkpoint.exists():
        state = read_checkpoint(checkpoint)
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
    with torch_threads(config.threads), progress.bar(bar, "training", (config.epochs - start_epoch) * steps_per_epoch) \
            as bar:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            module.train()
            t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
            order = np.random.default_rng(config.seed + epoch).permutation(len(train_split))
            for i in range(steps_per_epoch):
                idx = order[i * config.batch_size:(i + 1) * config.batch_size]
                batch, batch_idx = train_split, idx
                if augment != "none":  # the objective gets the augmented rows as a split of their own
                    images = augment_batch(train_split.inputs[idx], augment, batch_generator(config.seed, epoch, i))
                    batch, batch_idx = Split(images, train_split.labels[idx]), np.arange(len(idx))
                # autocast covers the forward and the loss only; backward runs in the dtypes autocast chose, and
                # the weights, their gradients and the optimizer state stay float32
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                    loss, right = objective.loss(batch, batch_idx)
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
            if val_acc is not None and sign * val_acc > best[0]:
                best = (sign * val_acc, epoch, copy.deepcopy(module.state_dict()) if config.patience else None)
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
                       resumed_from_epoch=start_epoch, seconds=time.perf_counter() - started,
                       precision_used=precision, precision_reason=precision_reason, augment_used=augment,
                       augment_reason=augment_reason)


def _objective(given: Objective | None, loaded: LoadedModel, dataset: Dataset, config: TrainConfig) -> Objective:
    objective = given or objective_for(loaded, dataset, label_smoothing=config.label_smoothing)
    if config.label_smoothing and not objective.smooths_labels:
        # refused, not ignored: a run that says "label smoothing 0.1" must have trained with it
        raise ConfigError(f"label_smoothing {config.label_smoothing} does not apply to {type(objective).__name__} "
                          f"({dataset.task}): it smooths the class labels of a cross-entropy loss",
                          hint="set label_smoothing to 0 for this training")
    objective.label_smoothing = config.label_smoothing
    return objective
