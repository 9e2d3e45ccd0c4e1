"""FLOPs of an ONNX graph, from its operators and inferred shapes (for ``.onnx`` references).

No maintained ONNX FLOP counter handles batched MatMul, Gemm and grouped Conv on real exported graphs, so this small
one is written here. ONNX's static shape inference loses shapes behind computed Reshape/Pad arguments, so instead the
graph runs once in onnxruntime with every intermediate tensor exposed as an output: the shapes are the real ones for
the measured inputs. Each MatMul/Gemm/Conv counts 2 x multiply-accumulates, as the PyTorch counter does; other
float-producing ops are listed as uncounted (1 FLOP per output element, an estimate).
"""

from __future__ import annotations

from collections import defaultdict
from math import prod

import numpy as np
import torch

from sizewise.core.optional import require
from sizewise.measure.card import FlopStats, OpFlops

_NO_ARITHMETIC = {"Shape", "Reshape", "Transpose", "Gather", "Unsqueeze", "Squeeze", "Concat", "Constant", "Cast",
                  "Slice", "Identity", "Flatten", "Expand", "ConstantOfShape", "Range", "Equal", "Where", "Split",
                  "Not", "And", "Or", "Less", "Greater", "Pad", "MaxPool", "ArgMax", "GatherElements", "Tile",
                  "NonZero", "QuantizeLinear", "DequantizeLinear", "Size", "DynamicQuantizeLinear",
                  "GatherBlockQuantized"}


def count_onnx_flops(path: str, inputs: dict[str, torch.Tensor]) -> FlopStats:
    onnx = require("onnx", "onnx", "counting FLOPs of ONNX graphs")
    from onnx import numpy_helper

    model = onnx.load(path)
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    shapes = _runtime_shapes(model, inputs)
    for name, array in weights.items():
        shapes[name] = tuple(array.shape)

    counted: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    uncounted: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    effective = 0
    for node in model.graph.node:
        out = shapes.get(node.output[0]) if node.output else None
        flops = _node_flops(node, shapes, out)
        if flops is not None:
            counted[node.op_type][0] += 1
            counted[node.op_type][1] += flops
            position = _WEIGHT_INPUT[node.op_type]
            weight = next((weights[i] for i in node.input[position:position + 1] if i in weights), None)
            # Quantized weights store zero points, not zeros, at pruned positions: density only means something for
            # float weights.
            floating = weight is not None and weight.size and np.issubdtype(weight.dtype, np.floating)
            density = float(np.count_nonzero(weight)) / weight.size if floating else 1.0
            effective += int(round(flops * density))
        elif node.op_type not in _NO_ARITHMETIC:
            key = node.op_type if out is not None else f"{node.op_type} (shape unknown)"
            uncounted[key][0] += 1
            uncounted[key][1] += prod(out) if out is not None else 0
    total = sum(v[1] for v in counted.values())
    rest = sum(v[1] for v in uncounted.values())
    return FlopStats(
        total=total, effective=effective, coverage=total / (total + rest) if total + rest else 1.0,
        input_shape={k: list(v.shape) for k, v in inputs.items()},
        by_op=sorted((OpFlops(k, v[0], v[1]) for k, v in counted.items()), key=lambda o: -o.flops),
        uncounted=sorted((OpFlops(k, v[0], v[1]) for k, v in uncounted.items()), key=lambda o: -o.flops),
        method="ONNX graph operators with inferred shapes (MatMul, Gemm, Conv)",
    )


def _node_flops(node, shapes, out) -> int | None:
    op = node.op_type
    if op not in _WEIGHT_INPUT or out is None:
        return None
    a = shapes.get(node.input[0])
    b = shapes.get(node.input[_WEIGHT_INPUT[op]])
    if a is None or b is None:
        return None
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul", "MatMulNBits"):
        return 2 * prod(out) * a[-1]  # every output element is a dot product over A's last dimension
    if op == "Gemm":
        trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
        return 2 * prod(out) * (a[0] if trans_a else a[-1])
    # Conv: weight is (C_out, C_in / groups, *kernel); each output element needs C_in/groups x kernel MACs
    return 2 * prod(out) * prod(b[1:])


def _runtime_shapes(model, inputs: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """Run the graph once with every node output made a graph output; return each tensor's actual shape."""
    import onnx
    import onnxruntime as ort

    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    present = {o.name for o in exposed.graph.output}
    for node in exposed.graph.node:
        for name in node.output:
            if name and name not in present:
                exposed.graph.output.append(onnx.ValueInfoProto(name=name))
                present.add(name)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep the nodes as written
    session = ort.InferenceSession(exposed.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {i.name: inputs[i.name].numpy() for i in session.get_inputs() if i.name in inputs}
    for i in session.get_inputs():
        if i.name in feeds and "int" in i.type:
            feeds[i.name] = feeds[i.name].astype(np.int64)
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, feeds)
    shapes = {name: tuple(np.shape(v)) for name, v in zip(names, values, strict=True)}
    shapes.update({name: tuple(v.shape) for name, v in inputs.items()})
    return shapes


# Quantized ops: the weight (or packed weight) sits at another input position, the arithmetic is the same.
_WEIGHT_INPUT = {"MatMul": 1, "Gemm": 1, "Conv": 1, "MatMulInteger": 1, "ConvInteger": 1, "QLinearMatMul": 3,
                 "QLinearConv": 3, "MatMulNBits": 1}
