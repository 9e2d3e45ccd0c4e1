"""Measure what a model costs: params, bytes, FLOPs, latency, memory, energy, CO2e -> :class:`ModelCard`."""

from sizewise.measure.api import MeasureConfig, measure
from sizewise.measure.card import ModelCard
from sizewise.measure.energy import EnergySettings

__all__ = ["EnergySettings", "MeasureConfig", "ModelCard", "measure"]

