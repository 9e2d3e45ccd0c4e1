"""Every way sizewise transforms a model, each a frozen config dataclass registered once with its handler
(:mod:`sizewise.compress.registry`). Importing this package registers them all."""

from sizewise.compress import cluster  # noqa: F401  (registers weight sharing)
from sizewise.compress import distill  # noqa: F401  (registers distillation)
from sizewise.compress import encode  # noqa: F401  (registers Huffman encoding)
from sizewise.compress import export  # noqa: F401  (registers the onnxruntime steps)
from sizewise.compress import factorize  # noqa: F401  (registers low-rank factorization)
from sizewise.compress import prune  # noqa: F401  (registers the pruning methods)
from sizewise.compress import quantize  # noqa: F401  (registers the quantization methods)
from sizewise.compress import training  # noqa: F401  (registers train and finetune)
from sizewise.compress.registry import METHODS, get_method, list_methods, make_config, method_for

__all__ = ["METHODS", "get_method", "list_methods", "make_config", "method_for"]
