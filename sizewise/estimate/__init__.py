"""Analytic size and cost of models too large to run here: ``estimate("gpt3-175b", tokens=300e9, ...)``.

Needs only :mod:`sizewise.core`; torch and transformers are imported inside the functions that count parameters, so
``import sizewise.estimate`` stays light.
"""

from sizewise.estimate.api import SCHEMA, Estimate, estimate
from sizewise.estimate.config import Assumption, EstimateConfig
from sizewise.estimate.presets import PRESETS, preset_names

__all__ = ["SCHEMA", "PRESETS", "Assumption", "Estimate", "EstimateConfig", "estimate", "preset_names"]

