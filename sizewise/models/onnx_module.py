"""An ``.onnx`` file run through onnxruntime, wrapped as an ``nn.Module`` so every command can treat it alike."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sizewise.core.errors import ModelReferenceError
from sizewise.core.optional import require


def _numpy_dtype(onnx_type: str) -> str:
    # onnxruntime reports types as "tensor(float)", "tensor(int64)", ...
    inner = onnx_type.removeprefix("tensor(").removesuffix(")")
    return {"float": "float32", "double": "float64", "float16": "float16"}.get(inner, inner)


class OnnxModule(nn.Module):
    """Runs an ONNX graph on onnxruntime's CPU provider. Picklable (the session is rebuilt from the path)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        super().__init__()
        self.path = str(path)
        self.threads = threads
        self._session = self._make_session()

    def _make_session(self):
        ort = require("onnxruntime", "onnx", "running .onnx models")
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        try:
            return ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise ModelReferenceError(
                f"onnxruntime cannot load {self.path}: {str(exc).splitlines()[0][:300]}",
                hint="the file may be truncated or not an ONNX model; re-export it",
            ) from exc

    def set_threads(self, threads: int) -> None:
        if threads != self.threads:
            self.threads = threads
            self._session = self._make_session()

    @property
    def input_specs(self) -> tuple[tuple[str, tuple, str], ...]:
        return tuple((i.name, tuple(d if isinstance(d, int) else None for d in i.shape), _numpy_dtype(i.type))
                     for i in self._session.get_inputs())

    def forward(self, **inputs: torch.Tensor) -> Any:
        feeds = {}
        for name, _, dtype in self.input_specs:
            if name not in inputs:
                raise ModelReferenceError(f"the ONNX model needs input '{name}' but got {sorted(inputs)}")
            feeds[name] = np.asarray(inputs[name].detach().cpu().numpy(), dtype=dtype)
        outputs = self._session.run(None, feeds)
        tensors = [torch.from_numpy(np.asarray(o)) for o in outputs]
        return tensors[0] if len(tensors) == 1 else tuple(tensors)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_session", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._session = self._make_session()

    def file_bytes(self) -> int:
        """The ONNX file plus any external-data files next to it."""
        path = Path(self.path)
        return path.stat().st_size + sum(p.stat().st_size for p in path.parent.glob(path.name + ".data"))


def onnx_initializers(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The graph's stored weights (initializers), which is what an ONNX model's parameters are."""
    onnx = require("onnx", "onnx", "reading ONNX weights")
    from onnx import numpy_helper

    model = onnx.load(str(path))
    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
