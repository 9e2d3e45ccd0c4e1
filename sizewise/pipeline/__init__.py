"""The search that closes the loop: ``shrink(model, data, out, ShrinkConfig(...))``."""

from sizewise.pipeline.config import ShrinkConfig, parse_duration
from sizewise.pipeline.search import shrink

__all__ = ["ShrinkConfig", "parse_duration", "shrink"]
