"""``huffman``: store the weights Deep-Compression style (codebooks + Huffman-coded indices, ``.swz``).

The step changes no weight; it tells the executor to write the artifact in that encoding, which pays off after
pruning and weight sharing (few distinct values, many zeros). The format is :mod:`sizewise.models.compressed_format`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sizewise.compress.registry import Method, StepContext, StepOutput, register
from sizewise.core.errors import ConfigError
from sizewise.models.artifact import ENCODING_DEEP_COMPRESSION


@dataclass(frozen=True)
class HuffmanEncode:
    format: str = ENCODING_DEEP_COMPRESSION

    def __post_init__(self) -> None:
        if self.format != ENCODING_DEEP_COMPRESSION:
            raise ConfigError(f"unknown format '{self.format}'", hint=f"known: {ENCODING_DEEP_COMPRESSION}")


def encode_step(loaded, config: HuffmanEncode, ctx: StepContext) -> StepOutput:
    if loaded.is_onnx:
        raise ConfigError("Huffman encoding stores PyTorch weights; this step's model is already an ONNX graph",
                          hint="put the encode step before any onnxruntime quantization")
    return StepOutput(loaded, {"format": config.format})


register(Method("huffman", "encode", HuffmanEncode, encode_step,
                "Deep Compression storage: codebooks, Huffman-coded indices and sparse positions (.swz)",
                runtimes=("torch",), encoding=ENCODING_DEEP_COMPRESSION))
