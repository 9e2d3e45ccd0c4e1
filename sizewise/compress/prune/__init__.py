"""Pruning: unstructured (magnitude, gradual, lottery), semi-structured N:M, and structured channels."""

from sizewise.compress.prune import structured, transformer, unstructured
from sizewise.compress.prune.config import (
    ChannelPrune,
    GradualPrune,
    HeadPrune,
    LotteryPrune,
    MagnitudePrune,
    NMPrune,
)
from sizewise.compress.registry import register

register("magnitude", MagnitudePrune, unstructured.magnitude, False, "one-shot magnitude pruning (Han et al. 2015)")
register("gradual", GradualPrune, unstructured.gradual, False, "cubic sparsity schedule while fine-tuning (Zhu & Gupta)")
register("lottery", LotteryPrune, unstructured.lottery, False, "iterative magnitude pruning with weight rewinding")
register("nm", NMPrune, unstructured.n_m, False, "semi-structured N:M (2:4) sparsity")
register("channel", ChannelPrune, structured.channel, True, "remove channels/neurons (Torch-Pruning dependency graph)")
register("head", HeadPrune, transformer.heads, True, "remove attention heads and FFN neurons of BERT-family encoders")

__all__ = ["ChannelPrune", "GradualPrune", "HeadPrune", "LotteryPrune", "MagnitudePrune", "NMPrune"]
