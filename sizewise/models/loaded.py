"""What every loader returns: the module, how to make inputs for it, what task it is for, and where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

TASKS = ("image-classification", "text-classification", "sentence-embedding", "feature-extraction", "causal-lm",
         "unknown")

# Real text rather than random ids, so tokenizer-based example inputs have a realistic token mix; repeated to fill
# any --seq-len so the attention mask is all ones and the FLOPs are those of a full sequence.
_SAMPLE_TEXT = (
    "Large models cost money, energy and carbon, and most teams cannot deploy them. Pruning, quantization, "
    "distillation and low-rank factorization make them smaller and faster; measuring them honestly tells by how much. "
)


@dataclass
class InputSpec:
    """How to build example inputs of a given batch size (and sequence length for text models)."""

    kind: str  # "tensor" | "tokens" | "onnx"
    shape: tuple[int, ...] = ()  # per-example shape for "tensor"
    name: str = "x"  # forward() keyword for "tensor"
    dtype: str = "float32"
    default_seq_len: int = 128
    tokenizer: Any = None  # a transformers tokenizer for "tokens"
    processor: Any = None  # a transformers image processor for a Hugging Face image model ("tensor", pixel_values)
    onnx_inputs: tuple[tuple[str, tuple, str], ...] = ()  # (name, shape with None for dynamic dims, numpy dtype)

    def make(self, batch_size: int = 1, seq_len: int | None = None) -> dict[str, torch.Tensor]:
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        seq_len = seq_len or self.default_seq_len
        if self.kind == "tensor":
            gen = torch.Generator().manual_seed(0)
            return {self.name: torch.rand((batch_size, *self.shape), generator=gen, dtype=getattr(torch, self.dtype))}
        if self.kind == "tokens":
            text = _SAMPLE_TEXT * (1 + seq_len // 20)
            enc = self.tokenizer([text] * batch_size, max_length=seq_len, truncation=True, padding="max_length",
                                 return_tensors="pt")
            return dict(enc)
        if self.kind == "onnx":
            return _onnx_inputs(self.onnx_inputs, batch_size, seq_len)
        raise ValueError(f"unknown input kind {self.kind!r}")


def _onnx_inputs(specs, batch_size: int, seq_len: int) -> dict[str, torch.Tensor]:
    """Dynamic dims: the first is the batch, the others a sequence length (the usual export of text models)."""
    out = {}
    gen = torch.Generator().manual_seed(0)
    for name, shape, dtype in specs:
        dims = [d if isinstance(d, int) and d > 0 else (batch_size if i == 0 else seq_len) for i, d in enumerate(shape)]
        if "int" in dtype:
            lowered = name.lower()
            if "mask" in lowered:
                out[name] = torch.ones(dims, dtype=torch.int64)
            elif "type" in lowered:
                out[name] = torch.zeros(dims, dtype=torch.int64)
            else:
                out[name] = torch.randint(100, 1000, dims, generator=gen, dtype=torch.int64)
        else:
            out[name] = torch.rand(dims, generator=gen)
    return out


@dataclass
class LoadedModel:
    module: nn.Module
    inputs: InputSpec
    reference: str
    source: str  # "zoo" | "huggingface" | "minilm" | "onnx" | "factory" | "run-dir" | "state-dict" | "pickle"
    task: str = "unknown"
    num_classes: int | None = None
    arch: str | None = None  # a reference that rebuilds the architecture, e.g. "zoo:lenet5" or an HF config dir
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def is_onnx(self) -> bool:
        from sizewise.models.onnx_module import OnnxModule

        return isinstance(self.module, OnnxModule)

    def example_inputs(self, batch_size: int = 1, seq_len: int | None = None) -> dict[str, torch.Tensor]:
        return self.inputs.make(batch_size, seq_len)

    def __call__(self, **inputs: torch.Tensor) -> Any:
        return self.module(**inputs)
