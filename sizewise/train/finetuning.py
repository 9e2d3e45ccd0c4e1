"""``finetune``: adapt a pretrained model to a new task with a small labelled set (transfer learning).

Order: check everything that can be checked before any time is spent -> a new head (``--head new``) -> metrics before
(the untrained head) -> freeze layers or add LoRA adapters -> the one training loop -> merge the adapters -> metrics
after, and the compute the training spent. The executor runs it as the ``finetune`` method and measures and saves
around it (``sizewise finetune`` is a one-step plan).

Gradual unfreezing needs nothing from the loop but its ``on_epoch`` callback: its optimizer holds every parameter, and
SGD/AdamW skip a parameter while its gradient is None, so switching ``requires_grad`` back on is all it takes.
A resumed run rebuilds the same head and adapters (same seed), freezes only if the checkpoint is from before the
unfreezing epoch, and adds the compute of earlier epochs from ``OUT/finetune-compute.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sizewise.core.errors import ConfigError, DataError
from sizewise.core.progress import Progress, silent
from sizewise.core.serialize import from_dict, to_dict, write_json_atomic
from sizewise.data.dataset import Dataset, Split
from sizewise.measure.energy import EnergySettings
from sizewise.models.loaded import LoadedModel
from sizewise.train.cost import ComputeMeter, EpochCompute, TrainingCompute
from sizewise.train.loop import CHECKPOINT, TrainConfig, TrainResult, train, train_and_validation
from sizewise.train.transfer import (
    Frozen,
    add_lora,
    check_lora_targets,
    check_trainable,
    freeze,
    frozen_modules,
    head_names,
    is_lora,
    lora_targets,
    merge_lora,
    new_head,
    parse_freeze,
)

HEADS = ("keep", "new")
COMPUTE_RECORD = "finetune-compute.json"
_CLASSIFICATION = ("image-classification", "text-classification")
_TEXT_TASKS = ("text-classification", "sentence-similarity")


@dataclass(frozen=True)
class FinetuneConfig:
    head: str = "keep"  # "new": a freshly initialised classifier for the dataset's classes
    freeze: str | int = "none"  # "none" | "backbone" | N (or "N-layers"): the embeddings and the first N layers
    unfreeze_after: int | None = None  # after this epoch everything trains (gradual unfreezing)
    lora: int | None = None  # LoRA rank; the adapters are merged into the weights before saving
    lora_alpha: float | None = None  # None = the rank, so the adapter's scale alpha/r is 1
    labels: int | None = None  # train on the first N labelled training examples only
    task: str | None = None  # the task the result must serve; must be the dataset's (a guard for scripts)

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ConfigError(f"--head must be one of {', '.join(HEADS)}, got '{self.head}'")
        frozen = parse_freeze(self.freeze)
        if self.unfreeze_after is not None:
            if isinstance(self.unfreeze_after, bool) or not isinstance(self.unfreeze_after, int) \
                    or self.unfreeze_after < 1:
                raise ConfigError(f"--unfreeze-after must be an epoch >= 1, got {self.unfreeze_after!r}")
            if frozen == "none":
                raise ConfigError("--unfreeze-after needs something frozen first",
                                  hint="add --freeze backbone or --freeze N-layers")
        if self.lora is not None:
            if isinstance(self.lora, bool) or not isinstance(self.lora, int) or self.lora < 1:
                raise ConfigError(f"--lora must be a positive rank, got {self.lora!r}")
            if self.unfreeze_after is not None:
                raise ConfigError("--unfreeze-after does not combine with --lora: LoRA keeps the base weights frozen "
                                  "for the whole run", hint="drop one of them")
        if self.lora_alpha is not None and not (isinstance(self.lora_alpha, (int, float)) and self.lora_alpha > 0):
            raise ConfigError(f"--lora-alpha must be > 0, got {self.lora_alpha!r}")
        if self.labels is not None and (isinstance(self.labels, bool) or not isinstance(self.labels, int)
                                        or self.labels < 1):
            raise ConfigError(f"--labels must be a positive number of labelled examples, got {self.labels!r}")
        from sizewise.data.dataset import TASKS

        if self.task is not None and self.task not in TASKS:
            raise ConfigError(f"unknown task '{self.task}'", hint=f"choose one of: {', '.join(TASKS)}")


@dataclass(frozen=True)
class FinetuneResult:
    config: FinetuneConfig
    train_config: TrainConfig
    metric: str  # the held-out metric: accuracy, or spearman for sentence similarity
    metrics_before: dict[str, float]  # with --head new: the untrained head
    metrics_after: dict[str, float]
    training: TrainResult
    compute: TrainingCompute
    labelled_examples: int  # training examples used: train + validation
    train_examples: int
    validation_examples: int
    head: list[str]  # module names of the task head
    head_replaced: bool
    frozen_modules: list[str]
    trainable_parameters: int  # at the start of training
    total_parameters: int
    lora: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def suggested_lr(loaded: LoadedModel, config: FinetuneConfig) -> float:
    """A learning rate that suits what trains. Pretrained transformer weights want ~5e-5 (Devlin et al. 2019 use
    2e-5..5e-5) and a head or adapters on a transformer 1e-3. A small CNN's head on frozen features needs 1e-2 to
    converge in the few steps a small labelled set gives (digits-cnn, 300 labels, 3 epochs: 78% at 1e-2, 17% at 1e-3);
    training all of it, the training default 3e-3."""
    head_only = bool(config.lora) or parse_freeze(config.freeze) == "backbone"
    if loaded.inputs.kind == "tokens":
        return 1e-3 if head_only and config.unfreeze_after is None else 5e-5
    return 1e-2 if head_only else 3e-3


def _num_classes(dataset: Dataset, split: Split) -> int | None:
    if dataset.task not in _CLASSIFICATION:
        return None
    return dataset.num_classes or int(np.max(split.labels)) + 1


def labelled_train(dataset: Dataset, n: int | None) -> Split:
    """The first ``n`` labelled training examples (all with ``n=None``), after checking that they are labelled."""
    if "train" not in dataset.splits:
        raise DataError(f"dataset '{dataset.name}' has no train split, and fine-tuning needs labelled training "
                        f"examples", hint="give a dataset with a train split")
    split = dataset.split("train")
    labels = split.labels
    if labels is None or len(labels) == 0 or len(labels) != len(split.inputs):
        got = 0 if labels is None else len(labels)
        raise DataError(f"the train split of '{dataset.name}' has {got} labels for {len(split.inputs)} examples",
                        hint="every training example needs a label")
    labels = np.asarray(labels)
    if dataset.task in _CLASSIFICATION:  # GLUE-style files mark an unlabelled row with -1
        unlabelled = len(labels) if not np.issubdtype(labels.dtype, np.integer) else int((labels < 0).sum())
        kind = "an integer class label >= 0"
    else:
        unlabelled = int(np.isnan(labels.astype(np.float64)).sum())
        kind = "a score"
    if unlabelled:
        raise DataError(f"{unlabelled:,} of the {len(labels):,} training examples of '{dataset.name}' have no label "
                        f"(each needs {kind})", hint="label them, or drop the unlabelled rows")
    if n is not None and n > len(split):
        raise ConfigError(f"--labels {n}, but dataset '{dataset.name}' has only {len(split):,} labelled training "
                          f"examples", hint=f"use --labels 1 to {len(split)}")
    return split.head(n)


def _check_task(loaded: LoadedModel, dataset: Dataset, config: FinetuneConfig, num_classes: int | None) -> None:
    """The mistakes a new head cannot fix, said before any weights change (tasks.check_compatible's wording)."""
    if config.task is not None and config.task != dataset.task:
        raise ConfigError(f"--task {config.task}, but dataset '{dataset.name}' is for {dataset.task}",
                          hint="give a dataset for that task, or drop --task")
    reads_text = loaded.inputs.kind == "tokens"
    if reads_text != (dataset.task in _TEXT_TASKS):
        reads = "text" if reads_text else "tensors (images)"
        raise DataError(f"dataset '{dataset.name}' is for {dataset.task} but model '{loaded.reference}' is a "
                        f"{loaded.task} model that reads {reads}; a new head cannot change what a model reads",
                        hint="use a text model (minilm, a Hugging Face directory) for text data and an image model "
                             "(zoo:NAME) for images")
    if config.head == "new" and dataset.task not in _CLASSIFICATION:
        raise ConfigError(f"--head new makes a classifier, but dataset '{dataset.name}' is for {dataset.task}",
                          hint="drop --head new: sentence-similarity training tunes the embeddings themselves")
    if config.head == "keep" and dataset.task == "text-classification" and loaded.task != "text-classification":
        raise DataError(f"dataset '{dataset.name}' is for text-classification but model '{loaded.reference}' is a "
                        f"{loaded.task} model without a classification head",
                        hint=f"pass --head new to add one for its {num_classes} classes")
    if config.head == "keep" and num_classes and loaded.num_classes and loaded.num_classes < num_classes:
        raise DataError(f"model '{loaded.reference}' predicts {loaded.num_classes} classes but dataset "
                        f"'{dataset.name}' has {num_classes}", hint="pass --head new to replace its head")


def _checkpoint_epoch(out: Path | None) -> int:
    path = out / CHECKPOINT if out else None
    if path is None or not path.is_file():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # no pickle code runs; mmap: no full read
    return int(state.get("epoch", 0))


def _read_record(out: Path, config: FinetuneConfig, train_config: TrainConfig) -> list[EpochCompute]:
    """Compute records of the epochs before a resume; refuses a resume with other settings than the run began with."""
    import json

    path = out / COMPUTE_RECORD
    if not path.is_file():
        return []
    record = json.loads(path.read_text(encoding="utf-8"))
    loose = {"epochs", "threads", "patience"}  # may change on a resume without invalidating the checkpoint
    started = {"config": record.get("config"),
               "train": {k: v for k, v in (record.get("train_config") or {}).items() if k not in loose}}
    now = {"config": to_dict(config), "train": {k: v for k, v in to_dict(train_config).items() if k not in loose}}
    if started != now:
        diff = sorted(f"{part}.{k}" for part in now for k in now[part]
                      if (started[part] or {}).get(k) != now[part][k])
        raise ConfigError(f"{out} was started with other settings ({', '.join(diff)} differ), so --resume cannot "
                          f"continue it", hint="resume with the same options, or write to a new --out")
    return [from_dict(EpochCompute, r) for r in record.get("epochs", [])]


def name_labels(loaded: LoadedModel, label_names: list[str] | None) -> None:
    """A new head for string labels carries their names: ``id2label`` in a Hugging Face config, and the manifest of
    every saved artifact (``metadata["label_names"]``), so predictions can be read back as the user's labels."""
    if not label_names:
        return
    loaded.metadata["label_names"] = list(label_names)
    config = getattr(loaded.module, "config", None)
    if config is not None and hasattr(config, "id2label"):
        config.id2label = dict(enumerate(label_names))
        config.label2id = {name: i for i, name in enumerate(label_names)}


def _first_matrix(params: list[torch.nn.Parameter]) -> torch.nn.Parameter | None:
    return next((p for p in params if p.dim() >= 2), params[0] if params else None)


def finetune(loaded: LoadedModel, dataset: Dataset, config: FinetuneConfig | None = None,
             train_config: TrainConfig | None = None, *, out: str | Path | None = None, resume: bool = False,
             energy: EnergySettings | None = None, on_epoch=None, bar: bool = False,
             progress: Progress | None = None) -> FinetuneResult:
    """Adapt ``loaded`` (in place) to ``dataset``. With ``out``: cards before/after, ``out/model``, ``out/card.json``.

    ``train_config`` defaults to 3 epochs, batch 32 and :func:`suggested_lr`. ``progress(text)`` hears each step; ``bar`` shows the training bar.
    ``out``: the folder of the training checkpoint and the compute record (a killed run resumes with ``resume``).
    Metrics before and after are on the data's held-out split as given (a plan's step sees validation); measuring,
    saving and the run record are the executor's (``sizewise finetune`` is a one-step plan).
    """
    config = config or FinetuneConfig()
    step = progress or silent
    out = Path(out) if out is not None else None
    check_trainable(loaded)
    labelled = labelled_train(dataset, config.labels)
    num_classes = _num_classes(dataset, dataset.split("train"))
    _check_task(loaded, dataset, config, num_classes)
    train_config = train_config or TrainConfig(epochs=3, batch_size=32, lr=suggested_lr(loaded, config))
    if config.unfreeze_after is not None and config.unfreeze_after >= train_config.epochs:
        raise ConfigError(f"--unfreeze-after {config.unfreeze_after} with {train_config.epochs} epochs would never "
                          f"unfreeze", hint=f"use --unfreeze-after 1 to {train_config.epochs - 1}, or more --epochs")
    prior = _read_record(out, config, train_config) if resume and out else []
    done = _checkpoint_epoch(out) if resume else 0

    torch.manual_seed(train_config.seed)  # the new head and LoRA's A matrices start the same when a run resumes
    if config.head == "new":
        head = new_head(loaded, num_classes)
        name_labels(loaded, dataset.label_names)
    else:
        head = head_names(loaded)
    from sizewise.tasks import check_compatible, evaluate

    check_compatible(loaded, dataset)
    freeze_spec = parse_freeze(config.freeze)
    if config.lora and freeze_spec == "backbone" and not head:
        freeze_spec = "none"  # LoRA freezes the base anyway; with no head, "backbone" means the same as "none"
    frozen_names = frozen_modules(loaded, freeze_spec, head)
    targets: list[str] = []
    if config.lora:
        targets = lora_targets(loaded, head, [] if freeze_spec in ("none", "backbone") else frozen_names)
        check_lora_targets(loaded, targets)

    step("evaluating the model before")
    metrics_before = evaluate(loaded, dataset)

    data = dataclasses.replace(dataset, splits={**dataset.splits, "train": labelled}, notes=list(dataset.notes))
    if config.labels is not None:
        data.notes.append(f"fine-tuned on the first {len(labelled):,} labelled training examples")
    train_split, val_split = train_and_validation(data, train_config)

    lora_info = None
    frozen = Frozen()
    if config.lora:
        alpha = config.lora_alpha or float(config.lora)
        step(f"adding rank-{config.lora} LoRA adapters to {len(targets)} Linear layers")
        adapters = add_lora(loaded, config.lora, alpha, targets, head)
        lora_info = {"rank": config.lora, "alpha": alpha, "target_layers": len(targets),
                     "adapter_parameters": adapters, "merged": False}
    elif not (config.unfreeze_after is not None and done >= config.unfreeze_after):
        frozen = freeze(loaded.module, frozen_names)
    module = loaded.module
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    total = sum(p.numel() for n, p in module.named_parameters() if "lora_" not in n)  # the model, not its adapters
    warnings: list[str] = []
    watch: dict[str, Any] = {}

    meter = ComputeMeter(loaded, prior)

    def epoch_done(stats) -> None:
        meter.end_epoch(stats.epoch, len(train_split), stats.seconds)
        if out is not None:
            write_json_atomic(out / COMPUTE_RECORD, {"config": config, "train_config": train_config,
                                                     "epochs": meter.records})
        if config.unfreeze_after == stats.epoch and frozen.parameters:
            probe = _first_matrix(frozen.parameters)
            watch.update(param=probe, value=probe.detach().clone(), epoch=stats.epoch)
            frozen.release()
        if on_epoch:
            on_epoch(stats)

    meter.attach()
    step("training")
    try:
        result = train(loaded, data, train_config, out=out, resume=resume, on_epoch=epoch_done, bar=bar)
    finally:
        meter.detach()
        frozen.release()
    if watch and len(result.epochs) > watch["epoch"] and torch.equal(watch["param"].detach(), watch["value"]):
        warnings.append(f"layers unfrozen after epoch {watch['epoch']} did not change: the training loop's optimizer "
                        f"did not include them")
    if is_lora(loaded.module):
        step("merging the LoRA adapters into the weights")
        lora_info.update(merged=True, merge_max_abs_diff=merge_lora(loaded))
    for p in loaded.module.parameters():
        p.requires_grad_(True)
    loaded.module.eval()
    compute = meter.summary([e.epoch for e in result.epochs], energy or EnergySettings())
    metrics_after = evaluate(loaded, dataset)
    finished = FinetuneResult(
        config=config, train_config=train_config, metric="spearman" if dataset.task == "sentence-similarity"
        else "accuracy", metrics_before=metrics_before, metrics_after=metrics_after, training=result,
        compute=compute, labelled_examples=len(labelled), train_examples=len(train_split),
        validation_examples=0 if val_split is None else len(val_split), head=head,
        head_replaced=config.head == "new", frozen_modules=[] if config.lora else frozen_names,
        trainable_parameters=trainable, total_parameters=total, lora=lora_info, warnings=warnings)
    return finished


__all__ = ["FinetuneConfig", "FinetuneResult", "finetune", "labelled_train", "suggested_lr"]
