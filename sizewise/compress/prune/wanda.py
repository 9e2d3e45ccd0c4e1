"""Wanda (Sun et al. 2023) for decoder LLMs: one-shot unstructured or 2:4 sparsity from calibration text, scored by
|weight| x the L2 norm of the weight's input channel, so a small weight on a loud channel survives.

The scoring and masking are torchao's ``WandaSparsifier`` (torchao 0.18, runs on CPU); sizewise picks the layers
(every linear layer of the decoder blocks: the embedding and the tied output stay dense, as in the paper), feeds it
calibration windows from the train split (validation when there is none, never test) and, when the run trains,
recovers by distillation from the original model with the zeros held (``MaskKeeper``). Note that torchao compares a
weight's score across its whole layer, where the paper's default compares within each output row; 2:4 is per group
of four consecutive input weights in both. And torchao 0.18's observer keeps the *squared* input norm, which its mask
multiplies in (|W| x ||X||^2, a different ranking); the square root is taken before the masks are drawn, so the score
is the paper's (a test checks the kept weights against |W| x ||X|| computed independently).

A mask is not speed: llama.cpp and PyTorch's CPU kernels run the zeros as dense weights, so the gain is what a
compressor makes of them (the run's artifact encodes sparse weights), and the details say so.
"""

from __future__ import annotations

import warnings

import torch

from sizewise.compress.prune.config import WandaPrune
from sizewise.compress.prune.decoder import (
    calibration_windows_for,
    decoder_blocks,
    recover_by_distillation,
    run_windows,
)
from sizewise.compress.prune.masks import MaskKeeper
from sizewise.compress.registry import StepContext
from sizewise.core.optional import package_version, require


def decoder_linear_weights(module: torch.nn.Module, blocks: torch.nn.ModuleList) -> dict[str, torch.nn.Parameter]:
    """Every linear weight inside the decoder blocks, by its name in ``module``."""
    inside = {id(m) for b in blocks for m in b.modules()}
    return {f"{name}.weight": m.weight for name, m in module.named_modules()
            if isinstance(m, torch.nn.Linear) and id(m) in inside}


def wanda(loaded, config: WandaPrune, ctx: StepContext) -> dict:
    wanda_module = require("torchao.sparsity.wanda", "llm", "Wanda pruning")
    blocks = decoder_blocks(loaded)
    model = loaded.module.eval()
    weights = decoder_linear_weights(model, blocks)
    ctx.progress(f"wanda: activation norms on {config.calibration_samples} x {config.calibration_tokens} "
                 "calibration tokens")
    windows, split = calibration_windows_for(loaded, ctx, config.calibration_samples, config.calibration_tokens,
                                             "wanda pruning")
    two_four = config.pattern == "2:4"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchao warns that 2:4 fixes the sparsity at 50%: the config says so
        sparsifier = wanda_module.WandaSparsifier(sparsity_level=config.sparsity,
                                                  semi_structured_block_size=4 if two_four else None)
        sparsifier.prepare(model, [{"tensor_fqn": name} for name in weights])
    run_windows(model, windows, [])
    for group in sparsifier.groups:  # torchao accumulates sum(x^2); the paper's score takes its square root
        observer = group["module"].activation_post_process
        observer.norm.sqrt_()
    sparsifier.step()
    sparsifier.squash_mask()
    weights = decoder_linear_weights(model, blocks)  # squash_mask hands back plain parameters
    keeper = MaskKeeper(weights, {name: (w != 0).to(w.dtype) for name, w in weights.items()})
    recover_by_distillation(loaded, ctx, after_step=keeper.apply)
    return {"pattern": config.pattern, "weight_sparsity": keeper.sparsity(),
            "layers": len(weights), "library": f"torchao {package_version('torchao')} WandaSparsifier",
            "comparison_group": "4 consecutive input weights" if two_four else "the whole layer",
            "calibration": {"split": split, "windows": len(windows), "tokens_per_window": config.calibration_tokens},
            "kernel": "none on CPU: llama.cpp and PyTorch run the zeros as dense weights"}
