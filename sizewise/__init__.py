"""sizewise: how big and costly is a model, and how to make it smaller, faster and greener.

``import sizewise`` stays light: the API (:mod:`sizewise.api`) is imported on first use of one of its names, so
torch and friends load only when needed.
"""

from __future__ import annotations

import sys
import types
from typing import Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # verbs
    "wrap", "apply", "measure", "compare", "run", "shrink", "list_methods", "load", "load_dataset", "evaluate", "estimate", "train",
    "save_model", "load_plan",
    # objects
    "Plan", "Step", "LoadedModel", "ModelCard", "RunResult", "MeasureConfig", "EnergySettings", "Budget",
    "TrainConfig", "CompareConfig", "Comparison", "ShrinkConfig",
    # method configs
    "MagnitudePrune", "GradualPrune", "LotteryPrune", "NMPrune", "ChannelPrune", "HeadPrune", "DepthPrune",
    "FFNPrune", "AttentionHeadPrune", "WandaPrune", "Int8Dynamic",
    "Int8Static", "WeightOnly", "HalfPrecision", "QuantizationAwareTraining", "Factorize", "ClusterWeights",
    "Distill", "Finetune", "HuffmanEncode", "OnnxExport", "OrtOptimize", "LLMWeightInt4",
    "OrtGenAIInt4", "SmoothQuantW8A8",
]


def __getattr__(name: str) -> Any:
    if name in __all__ and name != "__version__":
        from sizewise.api import PUBLIC

        globals().update(PUBLIC)  # bind them all: later lookups do not come here again
        return PUBLIC[name]
    raise AttributeError(f"module 'sizewise' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


class _Package(types.ModuleType):
    """``sizewise.measure``, ``sizewise.train`` and ``sizewise.estimate`` are both verbs of the API and subpackages.
    Importing a subpackage makes Python set the parent's attribute of that name to the module; this keeps the verb:
    the subpackage stays importable by its dotted name (``from sizewise.measure import MeasureConfig``)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _VERBS_NAMED_LIKE_PACKAGES and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


_VERBS_NAMED_LIKE_PACKAGES = frozenset({"measure", "train", "estimate"})
sys.modules[__name__].__class__ = _Package
