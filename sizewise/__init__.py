"""sizewise: how big and costly is a model, and how to make it smaller, faster and greener.

``import sizewise`` stays light: the API below is imported on first use, so torch and friends load only when needed.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "load": "sizewise.models.loader",
    "LoadedModel": "sizewise.models.loaded",
    "save_model": "sizewise.models.artifact",
    "load_dataset": "sizewise.data",
    "evaluate": "sizewise.tasks",
    "measure": "sizewise.measure",
    "MeasureConfig": "sizewise.measure",
    "EnergySettings": "sizewise.measure",
    "ModelCard": "sizewise.measure",
    "train": "sizewise.train",
    "estimate": "sizewise.estimate",
    "shrink": "sizewise.report.shrink_report",
    "ShrinkConfig": "sizewise.pipeline",
    "quantize": "sizewise.compress.quantize",
    "compress": "sizewise.compress",
    "TrainConfig": "sizewise.train",
    "finetune": "sizewise.train.finetuning",
    "FinetuneConfig": "sizewise.train.finetuning",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        module = importlib.import_module(_API[name])
        # sizewise.measure / sizewise.train are callable packages (see core/callable_module.py): return the package
        # itself, since importing it already bound that name here.
        value = module if module.__name__ == f"sizewise.{name}" else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sizewise' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
