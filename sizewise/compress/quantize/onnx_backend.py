"""Quantization on ONNX Runtime: real int8/int4 kernels (MatMulInteger, QLinear*, DequantizeLinear-fused, MatMulNBits),
never fake-quant. The quantized ``.onnx`` is the artifact, so its file size is the bytes a user ships.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from sizewise.compress.quantize.config import HalfPrecision, Int8Dynamic, Int8Static, WeightOnly
from sizewise.core.errors import DataError
from sizewise.core.optional import require

WEIGHT_OPS = ("MatMul", "Gemm", "Conv")


def quantizable_nodes(path: str | Path, config) -> list[tuple[str, str]]:
    """(node name, op type) of the nodes the method would quantize: ops with a stored weight."""
    onnx = require("onnx", "onnx", "quantization")
    model = onnx.load(str(path), load_external_data=False)
    weights = {i.name for i in model.graph.initializer}
    ops = ("MatMul",) if isinstance(config, WeightOnly) else WEIGHT_OPS
    found = [(n.name, n.op_type) for n in model.graph.node if n.op_type in ops and any(i in weights for i in n.input)]
    if getattr(config, "embeddings", True):
        found += [(n.name, n.op_type) for n in model.graph.node if n.op_type == "Gather" and n.input[0] in weights]
    return found


def unquantizable_nodes(path: str | Path, quantizable: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Nodes holding a stored weight that the method leaves in float (they are listed on the card)."""
    onnx = require("onnx", "onnx", "quantization")
    model = onnx.load(str(path), load_external_data=False)
    weights = {i.name for i in model.graph.initializer}
    chosen = {name for name, _ in quantizable}
    return [(n.name, n.op_type) for n in model.graph.node
            if n.op_type in (*WEIGHT_OPS, "Gather") and n.name not in chosen and any(i in weights for i in n.input)]


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over our batches."""

    def __init__(self, batches: list[dict[str, np.ndarray]], input_names: set[str]):
        self._items = iter([{k: v for k, v in b.items() if k in input_names} for b in batches])

    def get_next(self):
        return next(self._items, None)

    def rewind(self) -> None:  # required by newer onnxruntime readers; our batches are consumed once per call
        pass


def _input_names(path: Path) -> set[str]:
    import onnxruntime as ort

    return {i.name for i in ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()}


def check_calibration(path: Path, batches: list[dict[str, np.ndarray]]) -> None:
    """Run one calibration batch through the float model, so mismatched data fails here with a clear line."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    missing = names - set(batches[0])
    if missing:
        raise DataError(f"the calibration data has no input(s) {sorted(missing)} that the model needs",
                        hint="use data of the kind the model was trained on")
    try:
        session.run(None, {k: v for k, v in batches[0].items() if k in names})
    except Exception as exc:  # onnxruntime's InvalidArgument / Fail
        shapes = {k: v.shape for k, v in batches[0].items()}
        raise DataError(f"the calibration data {shapes} does not fit the model: {str(exc).splitlines()[0][:200]}",
                        hint="use data of the kind the model was trained on") from exc


def _entropy_ranges(fp32: Path, out: Path, batches, config) -> str:
    """KL-divergence (entropy) ranges with a real histogram. quantize_static builds its entropy calibrator with 128
    bins for 128 quantized levels, which leaves the KL search one candidate, the full range, i.e. min-max; here 2048
    bins are searched, as TensorRT's entropy calibration does, and the ranges reach quantize_static through its cache."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, save_tensors_data

    calibrator = create_calibrator(fp32, [*WEIGHT_OPS, "Gather"], augmented_model_path=str(out) + ".augmented.onnx",
                                   calibrate_method=CalibrationMethod.Entropy,
                                   extra_options={"symmetric": config.symmetric_activations, "num_bins": 2048,
                                                  "num_quantized_bins": 128})
    calibrator.collect_data(_Reader(batches, _input_names(fp32)))
    cache = str(out) + ".calibration.json"
    save_tensors_data(calibrator.compute_data(), cache)
    Path(str(out) + ".augmented.onnx").unlink(missing_ok=True)
    return cache


def quantize_onnx(fp32: Path, out: Path, config, batches: list[dict[str, np.ndarray]] | None,
                  exclude: list[str] = (), include: list[str] | None = None) -> Path:
    """Write ``config``'s quantization of ``fp32`` to ``out``; ``exclude`` keeps nodes in float, ``include`` (for
    sensitivity analysis) quantizes only those nodes."""
    q = require("onnxruntime.quantization", "onnx", "quantization")
    logging.getLogger("root").setLevel(logging.ERROR)  # onnxruntime.quantization logs every skipped node
    # The int8 quantizers first split each Gemm into MatMul + Add and rename it "<name>_MatMul": a node chosen by its
    # original name must be named both ways, or excluding it silently does nothing.
    if include is not None and isinstance(config, (WeightOnly, HalfPrecision)):
        # MatMulNBits' nodes_to_include adds to its default op types rather than restricting to them, and the fp16
        # converter has no include list: "this layer alone" is everything else excluded.
        exclude = [*exclude, *(n for n, _ in quantizable_nodes(fp32, config) if n not in set(include))]
        include = None
    exclude = [alias for name in exclude for alias in (name, f"{name}_MatMul")]
    include = None if include is None else [alias for name in include for alias in (name, f"{name}_MatMul")]
    if isinstance(config, Int8Dynamic):
        q.quantize_dynamic(str(fp32), str(out), weight_type=q.QuantType.QInt8, per_channel=config.per_channel,
                           nodes_to_exclude=exclude, nodes_to_quantize=include,
                           extra_options={"MatMulConstBOnly": True})
    elif isinstance(config, Int8Static):
        method = {"minmax": q.CalibrationMethod.MinMax, "percentile": q.CalibrationMethod.Percentile,
                  "entropy": q.CalibrationMethod.Entropy}[config.calibration]
        fmt = q.QuantFormat.QDQ if config.format == "qdq" else q.QuantFormat.QOperator
        reader, cache = _Reader(batches, _input_names(fp32)), None
        if config.calibration == "entropy":
            cache, reader = _entropy_ranges(fp32, out, batches, config), None
        q.quantize_static(str(fp32), str(out), reader, quant_format=fmt, calibration_cache_path=cache,
                          per_channel=config.per_channel, activation_type=q.QuantType.QInt8,
                          weight_type=q.QuantType.QInt8, calibrate_method=method,
                          op_types_to_quantize=[*WEIGHT_OPS, "Gather"],
                          nodes_to_exclude=exclude, nodes_to_quantize=include,
                          extra_options={"ActivationSymmetric": config.symmetric_activations,
                                         "WeightSymmetric": True, "MatMulConstBOnly": True})
    elif isinstance(config, WeightOnly):
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        ops = ("MatMul", "Gather") if config.embeddings else ("MatMul",)
        quantizer = MatMulNBitsQuantizer(onnx.load(str(fp32)), bits=config.bits, block_size=config.group_size,
                                         is_symmetric=True, nodes_to_exclude=exclude, nodes_to_include=include,
                                         op_types_to_quantize=ops, quant_axes=(("Gather", 1), ("MatMul", 0)))
        quantizer.process()
        quantizer.model.save_model_to_file(str(out), use_external_data_format=False)
    elif isinstance(config, HalfPrecision):
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True, node_block_list=exclude)
        onnx.save(model, str(out))
    else:
        raise TypeError(f"not an onnxruntime quantization config: {config!r}")
    return out
