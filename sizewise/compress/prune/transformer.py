"""Attention-head and FFN-neuron pruning for BERT-family encoders (MiniLM, BERT, ...), via Torch-Pruning.

Only layers *inside* each block lose width: whole heads leave Q/K/V (and the matching inputs of the attention output
projection), neurons leave the FFN's first projection (and the inputs of its second). Layers that write the residual
stream are excluded, so hidden size, LayerNorms and embeddings stay as the config says. The same fraction is removed
from every layer, so ``config.intermediate_size`` can say the new FFN width; heads are recorded per layer.
"""

from __future__ import annotations

from torch import nn

from sizewise.compress.prune.config import HeadPrune
from sizewise.core.errors import ConfigError
from sizewise.core.optional import require
from sizewise.tasks.evaluate import first_output
from sizewise.compress.registry import StepContext


def _attention_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules()
            if all(hasattr(m, a) for a in ("query", "key", "value")) and hasattr(m, "num_attention_heads")]


def heads(loaded, config: HeadPrune, ctx: StepContext) -> dict:
    finetune = ctx.train
    tp = require("torch_pruning", "prune", "head pruning")
    model = loaded.module.eval()
    blocks = _attention_blocks(model)
    if loaded.inputs.kind != "tokens" or not blocks:
        raise ConfigError(f"'{loaded.reference}' has no BERT-style attention blocks (query/key/value)",
                          hint="use --method channel for CNNs and MLPs")
    heads_before = {n: m.num_attention_heads for n, m in blocks}
    num_heads = {lin: m.num_attention_heads for _, m in blocks for lin in (m.query, m.key, m.value)}
    # Everything that writes the residual stream keeps its width: attention output and FFN output projections,
    # embeddings, and a pooler or classifier head.
    ignored = [m for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Embedding))
               and not any(n.endswith(s) for s in (".query", ".key", ".value", "intermediate.dense"))]
    if not config.ffn:
        ignored += [m for n, m in model.named_modules() if n.endswith("intermediate.dense")]
    importance = {"l1": lambda: tp.importance.MagnitudeImportance(p=1),
                  "l2": lambda: tp.importance.MagnitudeImportance(p=2),
                  "taylor": lambda: tp.importance.TaylorImportance()}[config.importance]()
    example = loaded.example_inputs(1)
    if config.importance == "taylor":
        model.zero_grad()
        first_output(model(**example)).pow(2).mean().backward()  # gradients of the output energy: no labels needed
    pruner = tp.pruner.MetaPruner(
        model, example, importance=importance, pruning_ratio=config.sparsity if config.ffn else 0.0,
        ignored_layers=ignored, num_heads=num_heads, prune_num_heads=config.heads, prune_head_dims=False,
        head_pruning_ratio=config.sparsity if config.heads else 0.0,
        output_transform=lambda out: first_output(out).sum())
    before = sum(p.numel() for p in model.parameters())
    pruner.step()
    model.zero_grad(set_to_none=True)
    for _, m in blocks:  # keep the attributes truthful (the forward itself infers heads from the shapes)
        m.num_attention_heads = m.query.out_features // m.attention_head_size
        m.all_head_size = m.query.out_features
    ffn_sizes = {m.out_features for n, m in model.named_modules() if n.endswith("intermediate.dense")}
    if len(ffn_sizes) == 1 and hasattr(model, "config"):
        model.config.intermediate_size = ffn_sizes.pop()
    encoder = [p for n, p in model.named_parameters() if ".layer." in n]
    after = sum(p.numel() for p in model.parameters())
    if finetune:
        ctx.fit(loaded, finetune)
    return {"heads_before": heads_before, "heads_after": {n: m.num_attention_heads for n, m in blocks},
            "intermediate_size": getattr(getattr(model, "config", None), "intermediate_size", None),
            "params_kept": after / before, "encoder_params_after": sum(p.numel() for p in encoder)}
