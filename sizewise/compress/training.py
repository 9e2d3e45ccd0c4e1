"""Steps that only train: ``train`` (the one training loop on the task's labels) and ``finetune`` (transfer learning:
a new head, frozen layers, LoRA; or plain recovery fine-tuning inside a recipe).

A fine-tune keeps what earlier steps established (the plan's invariants): pruned weights stay zero, and shared
weights stay shared, their centroids training instead (Deep Compression's order: prune, fine-tune, share, fine-tune).
"""

from __future__ import annotations

from sizewise.compress.cluster import finetune_centroids
from sizewise.compress.prune.masks import MaskKeeper, prunable_weights
from sizewise.compress.registry import SHARED, SPARSE, Method, StepContext, StepOutput, register
from sizewise.core.errors import ConfigError
from sizewise.train.finetuning import FinetuneConfig, finetune
from sizewise.train.loop import TrainConfig


def train_step(loaded, config: TrainConfig, ctx: StepContext) -> StepOutput:
    ctx.need_data("training")
    result = ctx.fit(loaded, config)
    return StepOutput(loaded, {"training": result})


def finetune_step(loaded, config: FinetuneConfig, ctx: StepContext) -> StepOutput:
    data = ctx.need_data("fine-tuning")
    plain = config == FinetuneConfig()
    if not plain and ctx.invariants:
        raise ConfigError(f"a fine-tune that changes the head, freezes layers or adds LoRA cannot keep the "
                          f"{' and '.join(sorted(ctx.invariants))} weights of earlier steps",
                          hint="fine-tune before pruning or weight sharing, or use a plain finetune step")
    train_config = ctx.train or TrainConfig(epochs=1)
    if SHARED in ctx.invariants:
        return StepOutput(loaded, {"shared_layers": finetune_centroids(loaded, ctx, train_config)})
    if SPARSE in ctx.invariants:
        weights = prunable_weights(loaded.module)
        keeper = MaskKeeper(weights, {n: w.detach() != 0 for n, w in weights.items()})
        result = ctx.fit(loaded, train_config, after_step=keeper.apply)
        return StepOutput(loaded, {"training": result, "weight_sparsity": keeper.sparsity()})
    result = finetune(loaded, data, config, ctx.train, out=ctx.workdir, resume=ctx.resume and ctx.workdir is not None,
                      bar=True, progress=ctx.progress)
    return StepOutput(loaded, {"finetune": result.to_dict()})


register(Method("train", "train", TrainConfig, train_step, "train on the task's labels (the one training loop)",
                needs_data=True, trains=True, runtimes=("torch",),
                options=("epochs", "lr", "batch_size", "optimizer", "weight_decay", "schedule", "patience", "seed",
                         "augment", "label_smoothing", "warmup_epochs", "precision")))
register(Method("finetune", "finetune", FinetuneConfig, finetune_step,
                "transfer learning (new head, freezing, LoRA) or recovery fine-tuning that keeps zeros and sharing",
                needs_data=True, trains=True, runtimes=("torch",),
                options=("head", "freeze", "unfreeze_after", "lora", "lora_alpha", "labels")))
