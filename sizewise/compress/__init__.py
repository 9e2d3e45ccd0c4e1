"""Compression methods. Each method is a frozen config dataclass registered with the function that applies it;
``compress(loaded, config, out, ...)`` runs any of them with before/after cards."""

from sizewise.compress import cluster  # noqa: F401  (registers weight sharing)
from sizewise.compress import factorize  # noqa: F401  (registers low-rank factorization)
from sizewise.compress import prune  # noqa: F401  (registers the pruning methods)
from sizewise.compress.api import CompressionResult, compress
from sizewise.compress.registry import METHODS, list_methods

__all__ = ["METHODS", "CompressionResult", "compress", "list_methods"]
