"""Structured pruning of decoder LLMs (Llama-family blocks: ``self_attn`` and a gated ``mlp``), after Minitron
(Muralidharan et al. 2024): remove whole blocks (depth), MLP neurons or query heads (width), ranked by what
calibration text measures, then recover by distillation from the original model (``StepContext.fit`` distils a
causal LM token by token when the step has a teacher). The result is a smaller ordinary transformers model whose
config says so (``num_hidden_layers``, ``intermediate_size``, ``num_attention_heads``), so it saves, reloads, exports
to GGUF and runs on llama.cpp as any model of its architecture.

Written here rather than taken from a library: Torch-Pruning's LLM examples prune heads/channels of an HF model but
neither drop blocks nor keep the config consistent for GGUF export, and no maintained CPU library ships Minitron's
depth/width ranking. The rankings are small: block influence (ShortGPT, Men et al. 2024) is one minus the mean
cosine similarity between a block's input and output hidden states; a neuron's importance is the mean absolute value
of its activation (the down projection's input), Minitron's activation-based score; a head's is the mean L2 norm of
its output (the attention output projection's input slice), Minitron's head score.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sizewise.compress.distill import encoder_layers
from sizewise.compress.prune.config import AttentionHeadPrune, DepthPrune, FFNPrune
from sizewise.compress.registry import StepContext
from sizewise.core.errors import ConfigError
from sizewise.models.hf import attention_shape


def decoder_blocks(loaded) -> nn.ModuleList:
    """The model's stack of decoder blocks, or a one-line refusal for a model that is not a Llama-style decoder."""
    found = None if loaded.is_onnx or loaded.task != "causal-lm" else encoder_layers(loaded.module)
    if found is None or not all(hasattr(b, "self_attn") and hasattr(b, "mlp") for b in found[2]):
        raise ConfigError(f"'{loaded.reference}' is not a decoder LLM with Llama-style blocks (self_attn + mlp)",
                          hint="depth and ffn pruning are for causal LMs (Llama, Qwen2, SmolLM, Mistral, ...)")
    return found[2]


def calibration_windows_for(loaded, ctx: StepContext, samples: int, tokens: int, what: str):
    from sizewise.compress.quantize.llm import calibration_windows

    return calibration_windows(loaded, ctx.need_data(what), samples, tokens)


def recover_by_distillation(loaded, ctx: StepContext, **fit_options) -> None:
    """Minitron's recovery: the pruned model learns from the original (the step's teacher) token by token, whatever
    the run's default for recovery training; labels alone recover a pruned LLM far more slowly."""
    if ctx.train:
        ctx.recovery_teacher = True
        ctx.fit(loaded, ctx.train, **fit_options)


def _hidden(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def run_windows(module: nn.Module, windows: list[torch.Tensor], handles: list) -> None:
    """Run the calibration windows through ``module``, then remove the hooks that recorded what they saw."""
    try:
        with torch.no_grad():
            for w in windows:
                module(input_ids=w)
    finally:
        for h in handles:
            h.remove()


def block_influence(module: nn.Module, blocks: nn.ModuleList, windows: list[torch.Tensor]) -> list[float]:
    """Per block: 1 - the mean cosine similarity of its input and output hidden states over every calibration token."""
    sums = [0.0] * len(blocks)
    count = [0] * len(blocks)
    inputs: dict[int, torch.Tensor] = {}

    def before(i):
        def hook(_module, args, kwargs):
            inputs[i] = _hidden(args, kwargs).detach()
        return hook

    def after(i):
        def hook(_module, _args, _kwargs, output):
            out = output[0] if isinstance(output, tuple) else output
            cos = nn.functional.cosine_similarity(inputs.pop(i).float(), out.detach().float(), dim=-1)
            sums[i] += float(cos.sum())
            count[i] += cos.numel()
        return hook

    handles = [h for i, b in enumerate(blocks) for h in (b.register_forward_pre_hook(before(i), with_kwargs=True),
                                                         b.register_forward_hook(after(i), with_kwargs=True))]
    run_windows(module, windows, handles)
    return [1.0 - s / max(1, c) for s, c in zip(sums, count)]


def keep_blocks(module: nn.Module, blocks: nn.ModuleList, keep: list[int]) -> None:
    """Keep only ``keep`` (in order), renumbering what indexes the KV cache and the config that rebuilds the model."""
    parent, attr, _ = encoder_layers(module)
    kept = nn.ModuleList([blocks[i] for i in keep])
    for new, block in enumerate(kept):
        for holder in (block, block.self_attn):
            if hasattr(holder, "layer_idx"):
                holder.layer_idx = new
    setattr(parent, attr, kept)
    config = module.config
    if getattr(config, "layer_types", None):  # per-block attention kinds (sliding/full) follow their blocks
        config.layer_types = [config.layer_types[i] for i in keep]
    config.num_hidden_layers = len(keep)


def depth(loaded, config: DepthPrune, ctx: StepContext) -> dict:
    blocks = decoder_blocks(loaded)
    n = len(blocks)
    if config.blocks >= n:
        raise ConfigError(f"'{loaded.reference}' has {n} decoder blocks: removing {config.blocks} leaves none",
                          hint=f"remove at most {n - 1}")
    model = loaded.module.eval()
    ctx.progress(f"depth pruning: block influence on {config.calibration_samples} x {config.calibration_tokens} "
                 "calibration tokens")
    windows, split = calibration_windows_for(loaded, ctx, config.calibration_samples, config.calibration_tokens,
                                             "depth pruning")
    scores = block_influence(model, blocks, windows)
    removed = sorted(sorted(range(n), key=lambda i: scores[i])[:config.blocks])
    before = sum(p.numel() for p in model.parameters())
    keep_blocks(model, blocks, [i for i in range(n) if i not in removed])
    after = sum(p.numel() for p in model.parameters())
    recover_by_distillation(loaded, ctx)
    return {"blocks_before": n, "blocks_removed": removed, "block_influence": [round(s, 6) for s in scores],
            "importance": config.importance, "params_kept": after / before,
            "calibration": {"split": split, "windows": len(windows), "tokens_per_window": config.calibration_tokens}}


def neuron_importance(module: nn.Module, blocks: nn.ModuleList, windows: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per block: the mean absolute activation of each MLP neuron (the down projection's input) over the tokens."""
    sums = [torch.zeros(b.mlp.down_proj.in_features) for b in blocks]
    count = [0]

    def tap(i):
        def hook(_module, args):
            x = args[0].detach().float()
            sums[i] += x.abs().reshape(-1, x.shape[-1]).sum(0)
            if i == 0:
                count[0] += x.numel() // x.shape[-1]
        return hook

    handles = [b.mlp.down_proj.register_forward_pre_hook(tap(i)) for i, b in enumerate(blocks)]
    run_windows(module, windows, handles)
    return [s / max(1, count[0]) for s in sums]


def _rows(layer: nn.Linear, keep: torch.Tensor, dim: int) -> None:
    """Keep ``keep`` along the output (dim 0) or input (dim 1) features of ``layer``."""
    layer.weight = nn.Parameter(layer.weight.data.index_select(dim, keep).clone())
    if dim == 0:
        if layer.bias is not None:
            layer.bias = nn.Parameter(layer.bias.data.index_select(0, keep).clone())
        layer.out_features = len(keep)
    else:
        layer.in_features = len(keep)


def ffn(loaded, config: FFNPrune, ctx: StepContext) -> dict:
    blocks = decoder_blocks(loaded)
    if not all(all(hasattr(b.mlp, p) for p in ("gate_proj", "up_proj", "down_proj")) for b in blocks):
        raise ConfigError(f"'{loaded.reference}' has no gated MLP (gate_proj, up_proj, down_proj) to narrow")
    model = loaded.module.eval()
    width = blocks[0].mlp.down_proj.in_features
    kept = max(config.multiple, round(width * (1 - config.sparsity) / config.multiple) * config.multiple)
    if kept >= width:
        raise ConfigError(f"removing {config.sparsity:.0%} of {width} neurons, kept as a multiple of {config.multiple}, "
                          f"removes none", hint="a larger sparsity or a smaller multiple")
    ctx.progress(f"ffn pruning: neuron activations on {config.calibration_samples} x {config.calibration_tokens} "
                 "calibration tokens")
    windows, split = calibration_windows_for(loaded, ctx, config.calibration_samples, config.calibration_tokens,
                                             "ffn pruning")
    scores = neuron_importance(model, blocks, windows)
    before = sum(p.numel() for p in model.parameters())
    for b, s in zip(blocks, scores):
        keep = torch.sort(torch.topk(s, kept).indices).values
        _rows(b.mlp.gate_proj, keep, 0)
        _rows(b.mlp.up_proj, keep, 0)
        _rows(b.mlp.down_proj, keep, 1)
    model.config.intermediate_size = kept
    after = sum(p.numel() for p in model.parameters())
    recover_by_distillation(loaded, ctx)
    return {"intermediate_before": width, "intermediate_after": kept, "params_kept": after / before,
            "calibration": {"split": split, "windows": len(windows), "tokens_per_window": config.calibration_tokens}}


def head_importance(module: nn.Module, blocks: nn.ModuleList, windows: list[torch.Tensor],
                    head_dim: int) -> list[torch.Tensor]:
    """Per block: the mean L2 norm of each query head's output over the tokens (the slice of the attention output
    projection's input that the head writes)."""
    sums = [torch.zeros(b.self_attn.o_proj.in_features // head_dim) for b in blocks]

    def tap(i):
        def hook(_module, args):
            x = args[0].detach().float()
            sums[i] += x.reshape(-1, x.shape[-1] // head_dim, head_dim).norm(dim=-1).sum(0)
        return hook

    handles = [b.self_attn.o_proj.register_forward_pre_hook(tap(i)) for i, b in enumerate(blocks)]
    run_windows(module, windows, handles)
    return sums  # a sum over the same tokens for every head: the ranking needs no division


def _head_rows(heads: torch.Tensor, head_dim: int) -> torch.Tensor:
    return (heads[:, None] * head_dim + torch.arange(head_dim)).reshape(-1)


def attention_heads(loaded, config: AttentionHeadPrune, ctx: StepContext) -> dict:
    blocks = decoder_blocks(loaded)
    model = loaded.module.eval()
    mc = model.config
    shape = attention_shape(mc)
    heads, kv_heads, head_dim = shape["heads"], shape["kv_heads"], shape["head_dim"]
    group = heads // kv_heads  # query heads that share one key/value head; 1 is plain multi-head attention
    # whole heads, half rounded up; a group keeps at least one head (its key/value head would otherwise be unused)
    unit = group if group > 1 else heads
    removed = min(math.floor(unit * config.sparsity + 0.5), unit - 1)
    if removed < 1:
        raise ConfigError(f"removing {config.sparsity:.0%} of {unit} query heads "
                          f"{'per key/value group' if group > 1 else 'per block'} removes none",
                          hint=f"at least {1 / unit:.0%} removes one head")
    ctx.progress(f"attention head pruning: head outputs on {config.calibration_samples} x "
                 f"{config.calibration_tokens} calibration tokens")
    windows, split = calibration_windows_for(loaded, ctx, config.calibration_samples, config.calibration_tokens,
                                             "attention head pruning")
    scores = head_importance(model, blocks, windows, head_dim)
    before = sum(p.numel() for p in model.parameters())
    kept_heads = []
    for b, s in zip(blocks, scores):
        attn = b.self_attn
        # rank within each group of `unit` consecutive heads (query head i reads key/value head i // group)
        keep = torch.cat([torch.sort(torch.topk(part, unit - removed).indices).values + g * unit
                          for g, part in enumerate(s.split(unit))])
        kept_heads.append(keep.tolist())
        rows = _head_rows(keep, head_dim)
        _rows(attn.q_proj, rows, 0)
        _rows(attn.o_proj, rows, 1)
        if group == 1:  # multi-head attention: the head's key and value leave with it
            _rows(attn.k_proj, rows, 0)
            _rows(attn.v_proj, rows, 0)
        else:
            attn.num_key_value_groups = group - removed
    mc.head_dim = head_dim  # explicit: hidden_size // num_attention_heads no longer gives it
    mc.num_attention_heads = heads - removed * (heads // unit)
    if group == 1:
        mc.num_key_value_heads = mc.num_attention_heads
    after = sum(p.numel() for p in model.parameters())
    recover_by_distillation(loaded, ctx)
    return {"heads_before": heads, "heads_after": mc.num_attention_heads, "key_value_heads": mc.num_key_value_heads,
            "heads_kept": kept_heads, "params_kept": after / before,
            "calibration": {"split": split, "windows": len(windows), "tokens_per_window": config.calibration_tokens}}
