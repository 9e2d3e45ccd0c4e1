"""Structured (channel/neuron) pruning: the result is an ordinary, physically smaller ``nn.Module``.

Dependencies across residual adds, concatenations and norms come from Torch-Pruning's dependency graph. A
parameter-free module that changes the channel count can say how to narrow itself (``prune_in_channels``,
``prune_out_channels``, ``in_channels``, ``out_channels``; the option-A shortcut of the CIFAR ResNets does): it joins the
graph as a layer of its own, so the residual channels on both sides of it are pruned too. Ops that do neither still
exist in users' models, so before pruning, every dependency group is tried on a copy: a group whose removal breaks the
forward pass is named, and left unpruned only if the user asked for that (``skip_unprunable``).
"""

from __future__ import annotations

import copy

import torch

from sizewise.tasks.evaluate import first_output
from torch import nn

from sizewise.compress.prune.config import ChannelPrune
from sizewise.core.errors import ConfigError, SizewiseError
from sizewise.core.optional import require
from sizewise.compress.registry import StepContext


class UnprunableLayerError(SizewiseError):
    pass


def _output_layers(model: nn.Module) -> list[nn.Module]:
    """The classifier: its outputs are the classes, so it must keep them all."""
    last = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    return last[-1:]


def _self_pruning_layers(tp, model: nn.Module) -> dict:
    """Torch-Pruning pruners for the model's modules that narrow themselves (see the module docstring)."""

    class SelfPruning(tp.pruner.function.BasePruningFunc):
        TARGET_MODULES = None

        def prune_out_channels(self, layer, idxs):
            layer.prune_out_channels(idxs)
            return layer

        def prune_in_channels(self, layer, idxs):
            layer.prune_in_channels(idxs)
            return layer

        def get_out_channels(self, layer):
            return layer.out_channels

        def get_in_channels(self, layer):
            return layer.in_channels

    return {type(m): SelfPruning() for m in model.modules()
            if not isinstance(m, (nn.Conv2d, nn.Linear)) and callable(getattr(m, "prune_in_channels", None))
            and callable(getattr(m, "prune_out_channels", None))}


def find_unprunable(model: nn.Module, example: torch.Tensor, ignored: list[nn.Module]) -> list[str]:
    """Names of root layers whose dependency group, when one channel is removed, breaks the model."""
    tp = require("torch_pruning", "prune", "structured pruning")
    names = {m: n for n, m in model.named_modules()}
    with torch.no_grad():
        expected = first_output(model(example)).shape
    custom = _self_pruning_layers(tp, model)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example, customized_pruners=custom)
    roots = [names[g[0].dep.target.module] for g in graph.get_all_groups(ignored_layers=ignored,
                                                                         root_module_types=[nn.Conv2d, nn.Linear])]
    broken = []
    for root in roots:
        trial = copy.deepcopy(model)
        trial_graph = tp.DependencyGraph().build_dependency(trial, example_inputs=example, customized_pruners=custom)
        module = dict(trial.named_modules())[root]
        fn = tp.prune_conv_out_channels if isinstance(module, nn.Conv2d) else tp.prune_linear_out_channels
        try:
            trial_graph.get_pruning_group(module, fn, idxs=[0]).prune()
            with torch.no_grad():
                ok = first_output(trial(example)).shape == expected
        except Exception:  # any failure of the pruned copy means this group is not safe to prune
            ok = False
        if not ok:
            broken.append(root)
    return broken


def _importance(tp, name: str):
    return {"l1": lambda: tp.importance.MagnitudeImportance(p=1),
            "l2": lambda: tp.importance.MagnitudeImportance(p=2),
            "bn": lambda: tp.importance.BNScaleImportance(),
            "taylor": lambda: tp.importance.TaylorImportance()}[name]()


def channel(loaded, config: ChannelPrune, ctx: StepContext) -> dict:
    dataset, finetune = ctx.data, ctx.train
    tp = require("torch_pruning", "prune", "structured pruning")
    model = loaded.module.eval()
    example = loaded.example_inputs(1)[loaded.inputs.name]
    ignored = _output_layers(model)
    broken = find_unprunable(model, example, ignored)
    if broken and not config.skip_unprunable:
        raise UnprunableLayerError(
            f"the dependency graph cannot prune {len(broken)} layer group(s) of '{loaded.reference}' without breaking "
            f"it: {', '.join(broken)} (a parameter-free op changes their channel count)",
            hint="pass --skip-unprunable to leave them unpruned and prune the rest")
    modules = dict(model.named_modules())
    if config.importance == "bn" and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise ConfigError(f"--importance bn ranks channels by BatchNorm scale, but '{loaded.reference}' has no "
                          f"BatchNorm layers", hint="use --importance l1, l2 or taylor")
    if config.importance == "taylor":
        if dataset is None or "train" not in dataset.splits:
            raise UnprunableLayerError("Taylor importance needs gradients from training data", hint="pass --data")
        split = dataset.split("train").sample(256)
        model.zero_grad()
        logits = model(**{loaded.inputs.name: torch.from_numpy(split.inputs)})
        torch.nn.functional.cross_entropy(logits, torch.from_numpy(split.labels)).backward()
    pruner = tp.pruner.MetaPruner(model, example, importance=_importance(tp, config.importance),
                                  pruning_ratio=config.sparsity, global_pruning=config.scope == "global",
                                  ignored_layers=ignored + [modules[n] for n in broken],
                                  customized_pruners=_self_pruning_layers(tp, model),
                                  round_to=config.round_to if config.round_to > 1 else None)
    # Torch-Pruning rounds the kept channels down, to zero for a layer narrower than two multiples; keep the nearest
    # multiple instead, at least one, and leave a layer narrower than one multiple as it is
    pruner._round_to = lambda n_pruned, current, step: current - min(current, max(step, step * round(
        (current - n_pruned) / step)))
    before = sum(p.numel() for p in model.parameters())
    pruner.step()
    model.zero_grad(set_to_none=True)
    after = sum(p.numel() for p in model.parameters())
    if finetune:
        ctx.fit(loaded, finetune)
    widths = {name: m.out_channels for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    return {"params_kept": after / before, "left_unpruned": broken, "importance": config.importance,
            "round_to": config.round_to, "conv_widths": widths}
