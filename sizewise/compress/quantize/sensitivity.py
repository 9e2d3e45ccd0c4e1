"""Which layers quantization hurts, one at a time, and the automatic fallback that keeps the worst in float.

Per layer we quantize that layer alone and record the relative output error on calibration inputs (cheap, always)
and the metric change on a held-out subset (when data is given). The fallback then keeps the k most sensitive layers
in float for k = 0, 1, 2, 4, 8, ... until the budget holds; if nothing holds, the closest candidate is returned with
a verdict that says so — never nothing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sizewise.compress.quantize.onnx_backend import quantize_onnx


@dataclass(frozen=True)
class LayerSensitivity:
    node: str
    op_type: str
    output_error: float  # ||y_q - y|| / ||y|| on the calibration inputs, with only this layer quantized
    metric: float | None  # the held-out metric with only this layer quantized
    metric_drop: float | None  # in points (accuracy x 100, Spearman x 100)


def _outputs(path: Path, batches: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return [session.run(None, {k: v for k, v in b.items() if k in names})[0] for b in batches]


def relative_error(reference: list[np.ndarray], candidate: list[np.ndarray]) -> float:
    num = sum(float(np.sum((c.astype(np.float64) - r) ** 2)) for r, c in zip(reference, candidate, strict=True))
    den = sum(float(np.sum(r.astype(np.float64) ** 2)) for r in reference)
    return float(np.sqrt(num / max(den, 1e-30)))


def layer_sensitivity(fp32: Path, config, batches, nodes: list[tuple[str, str]],
                      metric_of: Callable[[Path], float] | None, baseline_points: float | None,
                      progress: Callable[[str], None] | None = None) -> list[LayerSensitivity]:
    reference = _outputs(fp32, batches)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (node, op_type) in enumerate(nodes, start=1):
            if progress:
                progress(f"sensitivity {i}/{len(nodes)}: {node}")
            path = quantize_onnx(fp32, Path(tmp) / "one.onnx", config, batches, include=[node])
            error = relative_error(reference, _outputs(path, batches))
            metric = metric_of(path) if metric_of else None
            drop = baseline_points - metric if metric is not None and baseline_points is not None else None
            rows.append(LayerSensitivity(node, op_type, error, metric, drop))
    # most sensitive first: by metric drop when measured, the output error breaking ties (and ranking otherwise)
    return sorted(rows, key=lambda r: (-(r.metric_drop or 0.0), -r.output_error))


def fallback_steps(n: int) -> list[int]:
    """How many of the most sensitive layers to keep in float, in the order they are tried."""
    steps, k = [0], 1
    while k < n:
        steps.append(k)
        k *= 2
    return [*steps, n] if n else steps
