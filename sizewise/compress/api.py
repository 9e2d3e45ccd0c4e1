"""Run one compression method with the evidence: a card before, the method, a check that the result still runs and
gives the right output shape, the artifact saved, and a card after measured on the *reloaded* artifact the same way.

Measuring the reloaded artifact (not the in-memory module) is deliberate: it proves the saved file is the model that
was evaluated, and its disk bytes are what a user would ship.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sizewise.tasks.evaluate import first_output

from sizewise.compress.registry import METHODS, Method
from sizewise.core.errors import ConfigError, SizewiseError
from sizewise.core.serialize import to_dict, write_json_atomic
from sizewise.measure import MeasureConfig, ModelCard, measure
from sizewise.models.artifact import save_model
from sizewise.models.loaded import LoadedModel
from sizewise.train import TrainConfig

SCHEMA = "sizewise.compression/1"


@dataclass(frozen=True)
class CompressionResult:
    method: str
    config: Any
    before: ModelCard
    after: ModelCard
    details: dict[str, Any]
    model_dir: Path

    @property
    def speedup(self) -> float:
        return self.before.latency.p50_ms / self.after.latency.p50_ms

    @property
    def flop_reduction(self) -> float:
        return self.before.flops.total / max(1, self.after.flops.total)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "method": self.method, "config": to_dict(self.config),
                "details": to_dict(self.details), "before": self.before.to_dict(), "after": self.after.to_dict(),
                "speedup_p50": self.speedup, "flop_reduction": self.flop_reduction, "model_dir": str(self.model_dir)}


def method_for(config: Any) -> Method:
    for name in METHODS.names():
        if isinstance(config, METHODS.get(name).config):
            return METHODS.get(name)
    raise ConfigError(f"{type(config).__name__} is not a compression method config",
                      hint=f"known methods: {', '.join(METHODS.names())}")


class BrokenResultError(SizewiseError):
    pass


def _outputs(loaded: LoadedModel) -> torch.Tensor:
    with torch.inference_mode():
        out = loaded.module(**loaded.example_inputs(2))
    return first_output(out)


def compress(loaded: LoadedModel, config: Any, out: str | Path, dataset=None, finetune: TrainConfig | None = None,
             measure_config: MeasureConfig | None = None, progress=None) -> CompressionResult:
    """Apply the method ``config`` names to ``loaded`` (in place), save to ``out/model``, and write ``out/card.json``."""
    method = method_for(config)
    step = progress or (lambda _msg: None)
    out = Path(out)
    if dataset is not None:
        from sizewise.tasks import check_compatible

        check_compatible(loaded, dataset)
    mc = measure_config or MeasureConfig()
    step("measuring the model before")
    before = measure(loaded, mc, dataset=dataset)
    expected = _outputs(loaded).shape
    step(f"applying {method.name}")
    details = method.apply(loaded, config, dataset, finetune)
    loaded.module.eval()
    try:
        got = _outputs(loaded)
    except Exception as exc:  # a method must never hand back a model that does not run
        raise BrokenResultError(f"the {method.name}-pruned model no longer runs: {exc}",
                                hint="this is a sizewise bug; please report it with the model reference") from exc
    if got.shape != expected or not torch.isfinite(got).all():
        raise BrokenResultError(f"the {method.name} result gives outputs of shape {tuple(got.shape)} "
                                f"(expected {tuple(expected)}) or non-finite values; nothing was saved")
    model_dir = save_model(loaded, out / "model", encoding=method.encoding)
    step("measuring the saved model after")
    from sizewise.models.loader import load

    after = measure(load(str(out)), mc, dataset=dataset)
    result = CompressionResult(method.name, config, before, after, details, model_dir)
    write_json_atomic(out / "card.json", result.to_dict() | {"finetune": finetune and dataclasses.asdict(finetune)})
    return result
