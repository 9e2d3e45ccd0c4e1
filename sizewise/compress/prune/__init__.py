"""Pruning: unstructured (magnitude, gradual, lottery), semi-structured N:M, structured channels and heads, and for
decoder LLMs their blocks, MLP neurons, attention heads, and Wanda's one-shot unstructured / 2:4 sparsity."""

from sizewise.compress.prune import decoder, structured, transformer, unstructured, wanda
from sizewise.compress.prune.config import (
    AttentionHeadPrune,
    ChannelPrune,
    DepthPrune,
    FFNPrune,
    GradualPrune,
    HeadPrune,
    LotteryPrune,
    MagnitudePrune,
    NMPrune,
    WandaPrune,
)
from sizewise.compress.registry import SHARED, SPARSE, Method, register


def _magnitude_search(trial, space):
    return MagnitudePrune(trial.suggest_float("magnitude.sparsity", 0.3, 0.9, step=0.05), scope="layer")


def _channel_search(trial, space):
    # widths rounded to a runtime's channel block (8 with AVX2, 16 with AVX-512 in onnxruntime's NCHWc convolutions)
    # or not at all: which one is faster for the FLOPs removed is left to the measurement
    return ChannelPrune(trial.suggest_float("channel.sparsity", 0.1, 0.7, step=0.05), skip_unprunable=True,
                        round_to=trial.suggest_categorical("channel.round_to", (1, 8, 16)))


def _head_search(trial, space):
    return HeadPrune(trial.suggest_float("head.sparsity", 0.1, 0.7, step=0.05))


def _depth_search(trial, space):
    # at most a quarter of the blocks: ShortGPT's range; beyond it perplexity rises several-fold before recovery
    return DepthPrune(trial.suggest_int("depth.blocks", 1, max(1, space.decoder_blocks // 4)))


def _ffn_search(trial, space):
    return FFNPrune(trial.suggest_float("ffn.sparsity", 0.1, 0.5, step=0.05))


def _attention_heads_search(trial, space):
    # a quarter or half of each group's query heads, rounded to whole heads (SmolLM2's groups of 3 lose 1 either way
    # at 0.25 and 2 at 0.5): attention holds few of a small LLM's parameters, so more is rarely worth its damage
    return AttentionHeadPrune(trial.suggest_float("attn-heads.sparsity", 0.25, 0.5, step=0.25))


def _wanda_search(trial, space):
    pattern = trial.suggest_categorical("wanda.pattern", ("unstructured", "2:4"))
    sparsity = 0.5 if pattern == "2:4" else trial.suggest_float("wanda.sparsity", 0.2, 0.6, step=0.05)
    return WandaPrune(sparsity, pattern)


_UNSTRUCTURED = {"leaves": frozenset({SPARSE}), "runtimes": ("torch", "onnxruntime")}
register(Method("magnitude", "prune", MagnitudePrune, unstructured.magnitude,
                "one-shot magnitude pruning (Han et al. 2015)", options=("sparsity", "scope"),
                search=_magnitude_search, stronger={"magnitude.sparsity": 1},
                applies=lambda s: s.task == "image-classification", **_UNSTRUCTURED))
register(Method("gradual", "prune", GradualPrune, unstructured.gradual,
                "cubic sparsity schedule while fine-tuning (Zhu & Gupta)", needs_data=True, trains=True,
                options=("sparsity", "scope"), **_UNSTRUCTURED))
register(Method("lottery", "prune", LotteryPrune, unstructured.lottery,
                "iterative magnitude pruning with weight rewinding", needs_data=True, trains=True,
                options=("sparsity", "scope", "rounds"), **_UNSTRUCTURED))
register(Method("nm", "prune", NMPrune, unstructured.n_m, "semi-structured N:M (2:4) sparsity", options=("n", "m"),
                **_UNSTRUCTURED))
register(Method("channel", "prune", ChannelPrune, structured.channel,
                "remove channels/neurons (Torch-Pruning dependency graph)", structured=True, breaks=frozenset({SHARED}),
                options=("sparsity", "importance", "scope", "skip_unprunable", "round_to"), search=_channel_search,
                stronger={"channel.sparsity": 1},
                applies=lambda s: s.task == "image-classification"))
register(Method("head", "prune", HeadPrune, transformer.heads,
                "remove attention heads and FFN neurons of BERT-family encoders", structured=True,
                breaks=frozenset({SHARED}), options=("sparsity", "importance"), search=_head_search,
                stronger={"head.sparsity": 1},
                applies=lambda s: s.input_kind == "tokens"))

_DECODER = {"structured": True, "needs_data": True, "breaks": frozenset({SHARED}),
            "runtimes": ("torch", "llamacpp", "ortgenai"), "applies": lambda s: s.task == "causal-lm"}
register(Method("depth", "prune", DepthPrune, decoder.depth,
                "remove the least influential decoder blocks of an LLM (ShortGPT block influence), then distil",
                options=("blocks", "importance", "calibration_samples", "calibration_tokens"), search=_depth_search,
                stronger={"depth.blocks": 1},
                **_DECODER))
register(Method("ffn", "prune", FFNPrune, decoder.ffn,
                "remove the least active MLP neurons of every decoder block of an LLM (Minitron width), then distil",
                options=("sparsity", "multiple", "calibration_samples", "calibration_tokens"), search=_ffn_search,
                stronger={"ffn.sparsity": 1},
                **_DECODER))
register(Method("attn-heads", "prune", AttentionHeadPrune, decoder.attention_heads,
                "remove the least important query heads of every decoder block of an LLM (Minitron width; under "
                "grouped-query attention alike in every key/value group), then distil",
                options=("sparsity", "calibration_samples", "calibration_tokens"), search=_attention_heads_search,
                stronger={"attn-heads.sparsity": 1},
                **_DECODER))

register(Method("wanda", "prune", WandaPrune, wanda.wanda,
                "one-shot unstructured or 2:4 sparsity of an LLM's decoder layers by |weight| x input norm (Wanda, "
                "torchao)", needs_data=True, leaves=frozenset({SPARSE}), runtimes=("torch", "llamacpp"),
                options=("sparsity", "pattern", "calibration_samples", "calibration_tokens"), search=_wanda_search,
                stronger={"wanda.sparsity": 1},
                applies=lambda s: s.task == "causal-lm"))

__all__ = ["AttentionHeadPrune", "ChannelPrune", "DepthPrune", "FFNPrune", "GradualPrune", "HeadPrune", "LotteryPrune",
           "MagnitudePrune", "NMPrune", "WandaPrune"]
