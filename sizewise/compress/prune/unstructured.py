"""Unstructured pruning: one-shot magnitude, gradual (Zhu & Gupta), lottery ticket with rewinding, and N:M."""

from __future__ import annotations

import copy

import torch

from sizewise.compress.prune.config import GradualPrune, LotteryPrune, MagnitudePrune, NMPrune
from sizewise.compress.prune.masks import MaskKeeper, magnitude_masks, prunable_weights
from sizewise.core.errors import ConfigError
from sizewise.compress.registry import StepContext


def magnitude(loaded, config: MagnitudePrune, ctx: StepContext) -> dict:
    finetune = ctx.train
    weights = prunable_weights(loaded.module)
    keeper = MaskKeeper(weights, magnitude_masks(weights, config.sparsity, config.scope))
    if finetune:
        ctx.fit(loaded, finetune, after_step=keeper.apply)
    return {"weight_sparsity": keeper.sparsity(), "layers": len(weights)}


def schedule_progress(step: int, config: GradualPrune, total_steps: int) -> float:
    """How far along Zhu & Gupta's cubic ramp ``step`` is, from 0 to 1 (t0 = 0, n dt = ramp_fraction x total)."""
    ramp = max(1, int(total_steps * config.ramp_fraction))
    dt = max(1, ramp // config.pruning_steps)
    t = min(ramp, (step // dt) * dt)  # masks change only every dt steps
    return 1 - (1 - t / ramp) ** 3


def cubic_schedule(step: int, config: GradualPrune, total_steps: int, final: float | None = None) -> float:
    """Zhu & Gupta's s_t = s_f + (s_i - s_f)(1 - t / (n dt))^3, held at s_f afterwards (``final`` overrides s_f)."""
    final = config.sparsity if final is None else final
    return config.initial_sparsity + (final - config.initial_sparsity) * schedule_progress(step, config, total_steps)


def _layer_names(weights: dict) -> dict[str, str]:
    return {name.removesuffix(".weight"): name for name in weights}


def scheduled_masks(weights: dict, config: GradualPrune, step: int, total: int) -> dict:
    """Masks at ``step``: named layers on their own ramp to their own sparsity, the rest on ``sparsity``/``scope``."""
    per_layer = config.layer_sparsity or {}
    names = _layer_names(weights)
    own = {names[layer]: cubic_schedule(step, config, total, value) for layer, value in per_layer.items()}
    rest = {n: w for n, w in weights.items() if n not in own}
    masks = magnitude_masks(rest, cubic_schedule(step, config, total), config.scope) if rest else {}
    for name, target in own.items():
        masks.update(magnitude_masks({name: weights[name]}, target, "layer"))
    return masks


def gradual(loaded, config: GradualPrune, ctx: StepContext) -> dict:
    dataset, finetune = ctx.data, ctx.train
    if not finetune:
        raise ConfigError("gradual pruning prunes while fine-tuning", hint="pass --finetune-epochs 1 or more")
    from sizewise.train.loop import train_and_validation

    weights = prunable_weights(loaded.module)
    unknown = sorted(set(config.layer_sparsity or {}) - set(_layer_names(weights)))
    if unknown:
        raise ConfigError(f"layer_sparsity names {unknown}, which are not prunable layers of '{loaded.reference}'",
                          hint=f"prunable layers: {', '.join(_layer_names(weights))}")
    n_train = len(train_and_validation(dataset, finetune)[0])
    total = finetune.epochs * -(-n_train // finetune.batch_size)
    keeper = MaskKeeper(weights, scheduled_masks(weights, config, 0, total))
    schedule = []

    def step(global_step: int) -> None:
        progress = schedule_progress(global_step, config, total)
        if not schedule or progress != schedule[-1][2]:
            keeper.masks = scheduled_masks(weights, config, global_step, total)
            schedule.append((global_step, cubic_schedule(global_step, config, total), progress))
        keeper.apply()

    ctx.fit(loaded, finetune, after_step=step)
    return {"weight_sparsity": keeper.sparsity(), "schedule": [row[:2] for row in schedule], "total_steps": total,
            "layer_sparsity": {name: 1 - float(m.float().mean()) for name, m in keeper.masks.items()}}


def lottery(loaded, config: LotteryPrune, ctx: StepContext) -> dict:
    finetune = ctx.train
    if not finetune:
        raise ConfigError("lottery-ticket pruning retrains after every round", hint="pass --finetune-epochs 1 or more")
    weights = prunable_weights(loaded.module)
    rewind_state = copy.deepcopy(loaded.module.state_dict())
    keeper = MaskKeeper(weights, magnitude_masks(weights, 0.0, config.scope))
    rounds = []
    for r in range(1, config.rounds + 1):
        def capture(stats, r=r) -> None:
            if r == 1 and stats.epoch == config.rewind_epoch:
                rewind_state.update(copy.deepcopy(loaded.module.state_dict()))

        ctx.fit(loaded, finetune, tag=f"round-{r}", after_step=keeper.apply, on_epoch=capture)
        target = 1 - (1 - config.sparsity) ** (r / config.rounds)  # prune the same fraction of survivors each round
        keeper.masks = magnitude_masks(weights, target, config.scope)
        loaded.module.load_state_dict(rewind_state)  # rewind the survivors...
        keeper.apply()  # ...and keep the pruned ones at zero
        rounds.append({"round": r, "sparsity": keeper.sparsity()})
    ctx.fit(loaded, finetune, tag="final", after_step=keeper.apply)
    return {"weight_sparsity": keeper.sparsity(), "rounds": rounds}


def nm_masks(weights: dict[str, torch.nn.Parameter], n: int, m: int) -> dict[str, torch.Tensor]:
    masks = {}
    with torch.no_grad():
        for name, w in weights.items():
            flat = w.reshape(w.shape[0], -1)
            if flat.shape[1] % m:
                continue  # a row that does not split into groups of M stays dense (and is reported)
            groups = flat.abs().reshape(flat.shape[0], -1, m)
            keep = torch.zeros_like(groups, dtype=torch.bool)
            keep.scatter_(-1, groups.topk(n, dim=-1).indices, True)
            masks[name] = keep.reshape(w.shape)
    return masks


def n_m(loaded, config: NMPrune, ctx: StepContext) -> dict:
    finetune = ctx.train
    weights = prunable_weights(loaded.module)
    masks = nm_masks(weights, config.n, config.m)
    keeper = MaskKeeper({k: weights[k] for k in masks}, masks)
    if finetune:
        ctx.fit(loaded, finetune, after_step=keeper.apply)
    skipped = sorted(set(weights) - set(masks))
    return {"pattern": f"{config.n}:{config.m}", "weight_sparsity": keeper.sparsity(), "dense_layers": skipped,
            "kernel": "none on CPU: PyTorch's semi-structured (2:4) kernels need CUDA (cuSPARSELt/CUTLASS), so the "
                      "speed below is that of a dense model holding zeros"}
