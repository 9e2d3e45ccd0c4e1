"""Export a loaded PyTorch model to ONNX, so it can be measured (and later shipped) on onnxruntime."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from sizewise.core.errors import ModelReferenceError
from sizewise.core.optional import require
from sizewise.models.loaded import LoadedModel

OPSET = 17


class _KwargsAdapter(torch.nn.Module):
    """The exporter takes positional inputs; our models take keyword inputs."""

    def __init__(self, module: torch.nn.Module, names: list[str]):
        super().__init__()
        self.module, self.names = module, names

    def forward(self, *args: torch.Tensor):
        out = self.module(**dict(zip(self.names, args, strict=True)))
        if hasattr(out, "last_hidden_state"):
            return out.last_hidden_state
        if hasattr(out, "logits"):
            return out.logits
        return out


def to_onnx(loaded: LoadedModel, path: str | Path, seq_len: int | None = None) -> Path:
    """Write ``loaded`` as ONNX with a dynamic batch (and sequence) dimension; returns the path."""
    require("onnx", "onnx", "exporting to ONNX")
    path = Path(path)
    example = loaded.example_inputs(2, seq_len)
    names = list(example)
    dynamic = {n: ({0: "batch", 1: "sequence"} if loaded.inputs.kind == "tokens" else {0: "batch"}) for n in names}
    dynamic["output"] = {0: "batch"}
    adapter = _KwargsAdapter(loaded.module, names).eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            # The TorchScript exporter: mature for the CNN and BERT-family graphs sizewise handles, and it does not
            # need onnxscript's optimizer passes (the dynamo exporter's default).
            torch.onnx.export(adapter, tuple(example.values()), str(path), input_names=names, output_names=["output"],
                              dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
    except Exception as exc:  # the exporter raises many internal types
        raise ModelReferenceError(f"could not export '{loaded.reference}' to ONNX: {type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:300]}", hint="measure it with --runtime torch") from exc
    return path
