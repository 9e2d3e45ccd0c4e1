"""Structured (channel/neuron) pruning: the result is an ordinary, physically smaller ``nn.Module``.

Dependencies across residual adds, concatenations and norms come from Torch-Pruning's dependency graph. Some
parameter-free ops change channel counts in ways the graph cannot see (the option-A zero-padding shortcut of the CIFAR
ResNets is one), so before pruning, every dependency group is tried on a copy: a group whose removal breaks the forward
pass is named, and left unpruned only if the user asked for that (``skip_unprunable``).
"""

from __future__ import annotations

import copy

import torch

from sizewise.tasks.evaluate import first_output
from torch import nn

from sizewise.compress.prune.config import ChannelPrune
from sizewise.core.errors import ConfigError, SizewiseError
from sizewise.core.optional import require
from sizewise.train import TrainConfig, train
from sizewise.compress.registry import StepContext


class UnprunableLayerError(SizewiseError):
    pass


def _output_layers(model: nn.Module) -> list[nn.Module]:
    """The classifier: its outputs are the classes, so it must keep them all."""
    last = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    return last[-1:]


def find_unprunable(model: nn.Module, example: torch.Tensor, ignored: list[nn.Module]) -> list[str]:
    """Names of root layers whose dependency group, when one channel is removed, breaks the model."""
    tp = require("torch_pruning", "prune", "structured pruning")
    names = {m: n for n, m in model.named_modules()}
    with torch.no_grad():
        expected = first_output(model(example)).shape
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    roots = [names[g[0].dep.target.module] for g in graph.get_all_groups(ignored_layers=ignored,
                                                                         root_module_types=[nn.Conv2d, nn.Linear])]
    broken = []
    for root in roots:
        trial = copy.deepcopy(model)
        trial_graph = tp.DependencyGraph().build_dependency(trial, example_inputs=example)
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
        split = dataset.split("train").head(256)
        model.zero_grad()
        logits = model(**{loaded.inputs.name: torch.from_numpy(split.inputs)})
        torch.nn.functional.cross_entropy(logits, torch.from_numpy(split.labels)).backward()
    pruner = tp.pruner.MetaPruner(model, example, importance=_importance(tp, config.importance),
                                  pruning_ratio=config.sparsity, global_pruning=config.scope == "global",
                                  ignored_layers=ignored + [modules[n] for n in broken])
    before = sum(p.numel() for p in model.parameters())
    pruner.step()
    model.zero_grad(set_to_none=True)
    after = sum(p.numel() for p in model.parameters())
    if finetune:
        ctx.fit(loaded, finetune)
    return {"params_kept": after / before, "left_unpruned": broken, "importance": config.importance}
