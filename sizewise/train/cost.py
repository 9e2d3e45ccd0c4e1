"""What a training run cost: the FLOPs of the forward passes that actually ran, wall and CPU time, and an energy
estimate.

Training FLOPs are taken as 3 x forward FLOPs, assuming the backward pass costs about 2 x the forward (per matmul, one
product for the input gradient and one for the weight gradient; the same assumption as Kaplan et al. 2020's
"6N FLOPs per token"). Frozen layers compute no weight gradient, so with freezing the figure is an upper bound.
The forwards themselves are not modelled: a hook records the shape of every batch the model saw (text batches are
padded to their longest sentence, so the cost depends on the data), and ``sizewise.measure``'s FLOP counter runs once
per distinct shape. Energy uses the CPU power model of ``sizewise.measure.energy`` (CPU-seconds of this process x watts
per busy core x PUE): an estimate, and labelled as one.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch

from sizewise.core.constants import load_constants
from sizewise.measure.energy import JOULES_PER_KWH, EnergySettings
from sizewise.measure.flops import count_flops
from sizewise.models.loaded import LoadedModel

FLOPS_METHOD = ("3 x forward FLOPs (assumes backward = 2 x forward); forwards counted by sizewise's FLOP counter at "
                "each batch's real shape; frozen layers skip their weight gradients, so with freezing this is an upper "
                "bound")


@dataclass(frozen=True)
class EpochCompute:
    epoch: int
    train_examples: int
    train_forward_flops: int
    validation_forward_flops: int
    wall_seconds: float
    cpu_seconds: float


@dataclass(frozen=True)
class TrainingCompute:
    epochs: int
    examples_seen: int  # training examples through forward + backward, over all epochs (a pair counts once)
    forward_flops: int  # of those training forwards
    forward_flops_per_example: float
    training_flops_3x_forward: int
    validation_flops: int  # forward only: the validation split after every epoch
    wall_seconds: float  # training epochs, validation included
    cpu_seconds: float
    energy_joules: float
    gco2e: float
    flops_method: str = FLOPS_METHOD
    energy_method: str = "estimated:cpu-power-model"
    energy_assumptions: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class ComputeMeter:
    """Attach to a model before training; call :meth:`end_epoch` from the loop's ``on_epoch`` (model in eval mode)."""

    def __init__(self, loaded: LoadedModel, prior: list[EpochCompute] | None = None):
        self.loaded = loaded
        self.records: list[EpochCompute] = list(prior or [])
        self.rows: dict[tuple[bool, tuple], int] = defaultdict(int)  # (training?, per-example shape) -> examples
        self.flops_at: dict[tuple, int] = {}  # per-example shape -> forward FLOPs of one example
        self.handle = None
        self.paused = False
        self.cpu_mark = time.process_time()

    def attach(self) -> None:
        self.detach()
        self.handle = self.loaded.module.register_forward_pre_hook(self._record, with_kwargs=True)
        self.cpu_mark = time.process_time()

    def detach(self) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None

    def _record(self, module, args, kwargs) -> None:
        if self.paused:
            return
        tensors = [t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)]
        if self.loaded.inputs.kind == "tokens":
            first = kwargs.get("input_ids", tensors[0] if tensors else None)
        else:
            first = kwargs.get(self.loaded.inputs.name, tensors[0] if tensors else None)
        if first is None or first.dim() == 0:
            return
        self.rows[(module.training, tuple(first.shape[1:]))] += int(first.shape[0])

    def _flops(self, shape: tuple) -> int:
        if shape not in self.flops_at:
            if self.loaded.inputs.kind == "tokens":
                inputs = self.loaded.example_inputs(1, shape[0])
            else:
                inputs = {self.loaded.inputs.name: torch.zeros((1, *shape),
                                                               dtype=getattr(torch, self.loaded.inputs.dtype))}
            self.paused = True
            try:
                self.flops_at[shape] = count_flops(self.loaded.module, inputs)[0].total
            finally:
                self.paused = False
        return self.flops_at[shape]

    def end_epoch(self, epoch: int, train_examples: int, wall_seconds: float) -> EpochCompute:
        cpu = time.process_time()
        train = sum(n * self._flops(s) for (training, s), n in self.rows.items() if training)
        val = sum(n * self._flops(s) for (training, s), n in self.rows.items() if not training)
        record = EpochCompute(epoch, train_examples, train, val, wall_seconds, cpu - self.cpu_mark)
        self.records = [r for r in self.records if r.epoch != epoch] + [record]
        self.rows.clear()
        self.cpu_mark = time.process_time()  # the FLOP counting above is bookkeeping, not training
        return record

    def summary(self, epochs: list[int], energy: EnergySettings | None = None) -> TrainingCompute:
        """Totals over ``epochs`` (the run's history, resumed epochs included)."""
        energy = energy or EnergySettings()
        by_epoch = {r.epoch: r for r in self.records}
        have = [by_epoch[e] for e in epochs if e in by_epoch]
        missing = [e for e in epochs if e not in by_epoch]
        notes = []
        scale = 1.0
        if missing and have:  # killed between a checkpoint and its record: count those epochs as average ones
            scale = len(epochs) / len(have)
            notes.append(f"epochs {missing} ran before a resume without a compute record; counted as average epochs")
        elif missing:
            notes.append(f"epochs {missing} ran before a resume without a compute record and are not counted")
        seen = int(round(sum(r.train_examples for r in have) * scale))
        forward = int(round(sum(r.train_forward_flops for r in have) * scale))
        cpu = sum(r.cpu_seconds for r in have) * scale
        power = load_constants("power")
        watts, source = energy.watts_per_core, "--watts-per-core"
        if watts is None:
            watts, source = power["cpu_watts_per_core"]["value"], power["cpu_watts_per_core"]["source"]
        pue = energy.pue if energy.pue is not None else power["pue"]["value"]
        joules = cpu * watts * pue
        grid = load_constants("grid_intensity")
        intensity = energy.grid_gco2_per_kwh if energy.grid_gco2_per_kwh is not None \
            else grid["regions"][energy.region]
        return TrainingCompute(
            epochs=len(epochs), examples_seen=seen, forward_flops=forward,
            forward_flops_per_example=forward / seen if seen else 0.0, training_flops_3x_forward=3 * forward,
            validation_flops=int(round(sum(r.validation_forward_flops for r in have) * scale)),
            wall_seconds=sum(r.wall_seconds for r in have) * scale, cpu_seconds=cpu, energy_joules=joules,
            gco2e=joules / JOULES_PER_KWH * intensity,
            energy_assumptions={"model": "CPU-seconds of this process (training and validation) x watts per busy "
                                         "core x PUE", "watts_per_core": watts, "watts_per_core_source": source,
                                "pue": pue, "grid_gco2_per_kwh": intensity,
                                "region": "user" if energy.grid_gco2_per_kwh is not None else energy.region},
            notes=notes)
