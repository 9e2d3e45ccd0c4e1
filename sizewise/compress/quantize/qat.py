"""Quantization-aware training: weights fake-quantized while fine-tuning through the shared training loop.

The fake quantizer reproduces onnxruntime's int8 weight scheme (symmetric, one scale per output channel,
scale = max|w| / 127, round half to even), with a straight-through estimator so gradients reach the float weights.
After training the parametrization is removed with the weights left on the int8 grid, and int8-static export on
onnxruntime re-quantizes them exactly.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from sizewise.compress.quantize.config import QuantizationAwareTraining
from sizewise.core.errors import DataError


class FakeQuantPerChannel(nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        flat = w.reshape(w.shape[0], -1)
        scale = flat.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        shape = (-1,) + (1,) * (w.dim() - 1)
        q = torch.clamp(torch.round(w / scale.view(shape)), -127, 127) * scale.view(shape)
        return w + (q - w).detach()  # straight-through: forward sees q, backward sees identity


def train_quantization_aware(loaded, config: QuantizationAwareTraining, ctx) -> dict:
    dataset = ctx.data
    if dataset is None or "train" not in dataset.splits:
        raise DataError("quantization-aware training needs labelled training data", hint="pass --data")
    from sizewise.train import TrainConfig

    layers = [m for m in loaded.module.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    for layer in layers:
        parametrize.register_parametrization(layer, "weight", FakeQuantPerChannel())
    try:
        result = ctx.fit(loaded, TrainConfig(epochs=config.epochs, lr=config.lr), tag="qat")
    finally:
        for layer in layers:
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    return {"qat_epochs": len(result.epochs), "fake_quantized_layers": len(layers),
            "val_metric": result.epochs[-1].val_accuracy if result.epochs else None}
