"""4-bit group codes for the linear layers of a causal LM: round to nearest (the baseline every paper compares
against, with llama.cpp's own Q4_0 / Q4_1 rounding) or calibrated by NNCF (AWQ and/or scale estimation), and the
per-layer statistics the mixed-precision fallback ranks layers by.

Why NNCF for the calibrated codes (checked here, torch 2.13 CPU, transformers 5.24; validation perplexities of the
candidates on SmolLM2-135M: ``benchmarks/llm_int4.py``):

- ``nncf.compress_weights`` runs its data-aware algorithms (AWQ, scale estimation) on a plain PyTorch model on the
  CPU, and its result is an ordinary group grid: uint4 codes, fp16 scales and integer zero points per group of
  ``group_size`` weights, which is exactly a GGUF Q4_1 (asymmetric) or Q4_0 (symmetric) block when the group size is
  a multiple of 32. Its AWQ folds the activation scales into the preceding layer's weights, so nothing but weights
  changes and the file runs on an unmodified llama.cpp.
- torchao 0.18's GPTQ asserts a CUDA device and its int4 path needs the ``mslk`` CUDA kernels; its AWQ keeps a
  per-layer activation pre-scale at run time, which a GGUF file cannot carry.
- llm-compressor (GPTQ) pins transformers to an older release than sizewise's (pip would downgrade it).
- NNCF's own GPTQ runs on its OpenVINO backend only, not on PyTorch models ("Torch backend does not support gptq").
- hqq (and torchao's HQQ qparams) are data-free: no calibration.

Caveat on SmolLM2-135M (``smollm2-135m``): its float weights are dequantized from a Q4_1 file, so round to nearest on
the asymmetric group-32 grid gives them back exactly (a test checks it) and scores the float model's perplexity;
NNCF's asymmetric grid has an integer zero point, which that file's minima are not, so on this one model calibrated
codes cannot beat round to nearest on Q4_1. Compare algorithms on the symmetric (Q4_0) grid, or another model.

Round to nearest is written here (a few lines of numpy) because it must be llama.cpp's rounding exactly: the
asymmetric grid's minimum is a float (``w = d * q + m``), not NNCF's integer zero point.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from sizewise.core.errors import ConfigError
from sizewise.core.optional import package_version, require
from sizewise.models.gguf_writer import BLOCK_LEVELS, BlockCodes, GroupCodes

LINEAR_SUFFIXES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def linear_weights(module: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """The transformer blocks' linear layers, by parameter name (``model.layers.0.mlp.up_proj.weight``): what the
    4-bit codes are for. The token embedding (tied to the output) is encoded separately."""
    return {f"{name}.weight": m for name, m in module.named_modules()
            if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in LINEAR_SUFFIXES}


def _fp16(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float16).astype(np.float32)


def rtn_codes(weight: torch.Tensor, group_size: int, symmetric: bool) -> GroupCodes:
    """Round to nearest on a ``group_size`` grid, as llama.cpp's reference quantizers do for Q4_0 / Q4_1, with the
    scale (and minimum) rounded to fp16 first, so the codes are the nearest ones for the scales the file stores."""
    w = weight.detach().to(torch.float32).cpu().numpy()
    rows, cols = w.shape
    if cols % group_size:
        raise ConfigError(f"group size {group_size} does not divide the {cols} columns of a layer",
                          hint="use --group-size 32")
    g = w.reshape(rows, cols // group_size, group_size)
    if symmetric:  # Q4_0: the value of largest magnitude maps to -8
        idx = np.abs(g).argmax(axis=-1)[..., None]
        extreme = np.take_along_axis(g, idx, axis=-1)[..., 0]
        scale = _fp16(extreme / -8.0)
        inv = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale != 0)
        q = np.clip(np.floor(g * inv[..., None] + 8.5), 0, 15)
        offset = None
    else:  # Q4_1: minimum and range
        lo, hi = g.min(axis=-1), g.max(axis=-1)
        scale, offset = _fp16((hi - lo) / 15.0), _fp16(lo)
        inv = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale != 0)
        q = np.clip(np.floor((g - offset[..., None]) * inv[..., None] + 0.5), 0, 15)
    return GroupCodes(q.reshape(rows, cols).astype(np.uint8), scale.astype(np.float32),
                      None if offset is None else offset.astype(np.float32), group_size)


SCALE_FACTORS = tuple(0.80 + 0.02 * i for i in range(16))  # candidate scales, x the reference rule's (0.80..1.10)


def block_codes(weight: np.ndarray, kind: str, moment: torch.Tensor | None = None) -> BlockCodes:
    """Q5_0 / Q8_0 codes for a float weight with each block's scale chosen to minimise the layer's output error,
    sum_j m_j (w_j - d q_j)^2 (m: the input's second moments, :func:`input_moments`; 1 without calibration data),
    instead of llama.cpp's reference rule (the value of largest magnitude maps to the end of the grid), which one
    outlier in a block can make coarse for the other 31 weights.

    The search llama.cpp runs when given an importance matrix (``make_qx_quants``), vectorised over all blocks:
    for each candidate scale (``SCALE_FACTORS`` x the reference one) round the block to the grid, refit the scale
    to those codes by weighted least squares, round it to fp16 as the file stores it, and keep per block the
    candidate with the least weighted error. The reference codes compete too, so no block ends up worse than
    gguf's own quantizer would make it."""
    lo, hi = BLOCK_LEVELS[kind]
    w = torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32))
    rows, cols = w.shape
    if cols % 32:
        raise ConfigError(f"a {kind} weight needs a multiple of 32 columns, got {cols}", hint="keep it F16 or F32")
    x = w.reshape(rows, cols // 32, 32)
    m = (torch.ones(cols) if moment is None else moment.to(torch.float32).clamp_min(0)).reshape(1, cols // 32, 32)
    if kind == "Q5_0":  # the signed extreme maps to -16 (ggml's quantize_row_q5_0_ref)
        extreme = torch.gather(x, -1, x.abs().argmax(-1, keepdim=True))[..., 0]
        reference = extreme / lo
    else:  # the magnitude maximum maps to 127 (quantize_row_q8_0_ref)
        reference = x.abs().amax(-1) / hi

    def fp16(d: torch.Tensor) -> torch.Tensor:
        return d.to(torch.float16).to(torch.float32)

    def codes_for(d: torch.Tensor) -> torch.Tensor:
        inv = torch.where(d == 0, torch.zeros_like(d), 1.0 / d)
        return torch.clamp(torch.floor(x * inv[..., None] + 0.5), lo, hi)

    def error(d: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return (m * (x - d[..., None] * q) ** 2).sum(-1)

    best_d = fp16(reference)
    best_q = codes_for(best_d)
    best_err = error(best_d, best_q)
    for factor in SCALE_FACTORS:
        q = codes_for(reference * factor)
        den = (m * q * q).sum(-1)
        d = fp16(torch.where(den > 0, (m * x * q).sum(-1) / torch.where(den > 0, den, 1.0), best_d))
        for codes in (q, codes_for(d)):  # the codes the scale was fitted to, and those nearest the fitted scale
            err = error(d, codes)
            better = err < best_err
            best_d = torch.where(better, d, best_d)
            best_q = torch.where(better[..., None], codes, best_q)
            best_err = torch.where(better, err, best_err)
    return BlockCodes(best_q.reshape(rows, cols).to(torch.int8).numpy(), best_d.numpy().astype(np.float32), kind)


# ------------------------------------------------------------------------------------------------- activations

@contextmanager
def input_moments(layers: dict[str, torch.nn.Linear]) -> Iterator[dict[str, torch.Tensor]]:
    """While active, accumulate E[x_j^2] of each layer's input columns (the diagonal of GPTQ's Hessian): a layer's
    output error from a weight error dW is about sum_j E[x_j^2] * ||dW[:, j]||^2."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    handles = []

    def hook(name):
        def record(_module, args, _output):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).to(torch.float32)
            sums[name] = sums.get(name, 0) + (x * x).sum(0)
            counts[name] = counts.get(name, 0) + x.shape[0]
        return record

    for name, layer in layers.items():
        handles.append(layer.register_forward_hook(hook(name)))
    moments: dict[str, torch.Tensor] = {}
    try:
        yield moments
    finally:
        for h in handles:
            h.remove()
        moments.update({k: sums[k] / max(1, counts[k]) for k in sums})


def output_error(weight: torch.Tensor, approx: np.ndarray, moment: torch.Tensor | None) -> float:
    """Relative output error of replacing ``weight`` by ``approx``: sqrt(sum_j m_j ||dW_j||^2 / sum_j m_j ||W_j||^2)
    with m the input's second moments (1 without calibration data)."""
    w = weight.detach().to(torch.float32)
    dw = torch.from_numpy(approx) - w
    m = moment if moment is not None else torch.ones(w.shape[1])
    num = float(((dw * dw).sum(0) * m).sum())
    den = float(((w * w).sum(0) * m).sum())
    return (num / den) ** 0.5 if den > 0 else 0.0


def awq_float_targets(floats: dict[str, np.ndarray], codes: dict[str, GroupCodes]
                      ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The float weights the codes stand for, when AWQ has moved scales between layers: NNCF folds a per-channel
    scale s into each MLP pair (up_proj rows / s, down_proj columns * s), so an up or down projection's codes
    approximate a scaled weight, not the model's. Returns (targets, input scales): ``floats`` with each such pair
    replaced by its scaled form, and s by down projection (its inputs are the up projection's outputs / s).

    NNCF does not hand s back, so it is fitted per row by least squares from the up projection's dequantized codes:
    s_i = <w_i, w_i> / <w_i, q_i>. Both layers of a pair at 8 bits give the model's function for any s; one of the
    two at 8 bits needs s only as closely as the 4-bit codes hold it. This lets the fallback raise one layer of a
    pair instead of both, so the bytes a pair's partner would take go to another layer."""
    targets = dict(floats)
    input_scales: dict[str, np.ndarray] = {}
    for up in [n for n in codes if n.endswith("mlp.up_proj.weight")]:
        down = up[:-len("up_proj.weight")] + "down_proj.weight"
        if down not in floats:
            continue
        w, q = floats[up].astype(np.float64), codes[up].dequantize().astype(np.float64)
        dot = (w * q).sum(1)
        s = np.where(dot > 0, (w * w).sum(1) / np.where(dot > 0, dot, 1.0), 1.0)
        targets[up] = (floats[up] / s[:, None]).astype(np.float32)
        targets[down] = (floats[down] * s[None, :]).astype(np.float32)
        input_scales[down] = s.astype(np.float32)
    return targets, input_scales


# ------------------------------------------------------------------------------------------------- NNCF

def nncf_version() -> str:
    return package_version("nncf")


class _Captured(Exception):
    """Raised by the hook that records the first block's inputs: the rest of the model need not run."""


def _decoder_blocks(module: torch.nn.Module) -> torch.nn.ModuleList:
    blocks = getattr(getattr(module, "model", None), "layers", None)
    if not isinstance(blocks, torch.nn.ModuleList) or not len(blocks):
        raise ConfigError(f"{type(module).__name__} has no decoder blocks at model.layers to calibrate one by one",
                          hint="use --method int4-rtn")
    return blocks


def block_inputs(module: torch.nn.Module, windows: list[torch.Tensor]) -> list[dict]:
    """The keyword arguments the first decoder block receives for each window (hidden states, position embeddings,
    mask), recorded by a pre-hook that stops the forward pass there."""
    captured: list[dict] = []

    def record(_block, args, kwargs):
        inputs = {k: v for k, v in kwargs.items() if k not in ("past_key_values", "past_key_value", "use_cache")}
        if args:
            inputs["hidden_states"] = args[0]
        captured.append(inputs)
        raise _Captured

    handle = _decoder_blocks(module)[0].register_forward_pre_hook(record, with_kwargs=True)
    try:
        with torch.no_grad():
            for w in windows:
                with contextlib.suppress(_Captured):
                    module(input_ids=w, use_cache=False)
    finally:
        handle.remove()
    return captured


def nncf_codes(module: torch.nn.Module, windows: list[torch.Tensor], group_size: int, symmetric: bool,
               awq: bool, scale_estimation: bool, progress=None) -> dict[str, GroupCodes]:
    """NNCF's 4-bit codes for every linear layer of ``module`` (not changed), calibrated on ``windows`` (token id
    tensors of shape (1, T)), one decoder block at a time.

    Why block by block: handed the whole model, NNCF's pass made this step add 6.1 GiB of memory on SmolLM2-135M
    (0.5 GiB of weights, 32 windows of 512 tokens); one block at a time it adds 0.5 GiB, for the same codes, in
    about 1.4x the time (``benchmarks/results/llm_calibration_memory.md``). NNCF sees one block with that block's
    inputs for all windows (recorded from the float model, then pushed through the float block to become the next
    block's inputs, as they are when NNCF runs the whole model), so the peak holds one block's statistics and two
    sets of hidden states, whatever the depth. The codes equal those of a whole-model run (a test checks it);
    ``all_layers`` because a block's last projection is not the model's last layer NNCF would keep at 8 bits."""
    nncf = require("nncf", "llm", "calibrated int4 quantization (AWQ, scale estimation)")

    mode = nncf.CompressWeightsMode.INT4_SYM if symmetric else nncf.CompressWeightsMode.INT4_ASYM
    blocks = _decoder_blocks(module)
    prefix = next(n for n, m in module.named_modules() if m is blocks)
    inputs = block_inputs(module, windows)
    codes: dict[str, GroupCodes] = {}
    with _quiet_nncf():  # its bit-width table would print once per block; sizewise reports progress per block
        for index, block in enumerate(blocks):
            _calibrate_block(nncf, mode, block, index, prefix, inputs, codes, group_size, symmetric, awq,
                             scale_estimation, len(blocks), progress)
    missing = sorted(set(linear_weights(module)) - set(codes))
    if missing:
        raise ConfigError(f"NNCF {nncf_version()} left {len(missing)} linear layer(s) uncompressed, e.g. {missing[0]}",
                          hint="report this with the NNCF version; use --method int4-rtn meanwhile")
    return codes


@contextlib.contextmanager
def _quiet_nncf():
    import logging

    from nncf.common.logging import nncf_logger

    level = nncf_logger.level
    nncf_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        nncf_logger.setLevel(level)


def _calibrate_block(nncf, mode, block, index: int, prefix: str, inputs: list[dict], codes: dict, group_size: int,
                     symmetric: bool, awq: bool, scale_estimation: bool, blocks: int, progress) -> None:
    """NNCF on one block (a copy), its codes added to ``codes``; then the float block turns ``inputs`` into the
    next block's."""
    if progress:
        progress(f"calibrating block {index + 1}/{blocks}")
    work = copy.deepcopy(block).eval()
    with torch.inference_mode(False), torch.no_grad():
        compressed = nncf.compress_weights(work, mode=mode, group_size=group_size, ratio=1.0,
                                           dataset=nncf.Dataset(inputs), subset_size=len(inputs), all_layers=True,
                                           awq=awq, scale_estimation=scale_estimation)
    codes.update({f"{prefix}.{index}.{name}": c for name, c in _read_codes(compressed, symmetric).items()})
    del work, compressed
    with torch.no_grad():
        for kwargs in inputs:
            out = block(**kwargs)
            kwargs["hidden_states"] = out[0] if isinstance(out, tuple) else out


def _read_codes(compressed: torch.nn.Module, symmetric: bool) -> dict[str, GroupCodes]:
    """The group codes NNCF left in a compressed module, by its parameter names (``mlp.up_proj.weight``)."""
    from nncf.torch.quantization.layers import unpack_int4, unpack_uint4

    scaled = sorted(n for n, m in compressed.named_modules() if type(m).__name__ == "SQMultiply")
    if scaled:  # an activation scale applied at run time: not a weight, so a GGUF file cannot carry it
        raise ConfigError(f"NNCF put run-time activation scales before {len(scaled)} layer(s) ({scaled[0]}), which "
                          f"llama.cpp cannot apply", hint="use --method int4-rtn, or the scale-estimation algorithm")
    params = dict(compressed.named_parameters())
    codes: dict[str, GroupCodes] = {}
    for hook_name, hook in compressed.named_modules():
        if not hasattr(hook, "compressed_weight_shape"):
            continue
        # "__nncf_hooks.post_hooks.mlp:up_proj:weight__0.0" -> "mlp.up_proj.weight"
        target = hook_name.split(".post_hooks.", 1)[-1].rsplit("__", 1)[0].replace(":", ".")
        if target.rsplit(".", 2)[-2] not in LINEAR_SUFFIXES:
            continue
        shape = tuple(hook.compressed_weight_shape)  # (rows, groups, group_size)
        packed = params[target].data
        scale = hook._scale.to(torch.float32).reshape(shape[0], shape[1]).numpy()
        if symmetric:
            q = unpack_int4(packed).reshape(shape).to(torch.int16) + 8
            offset = None
        else:
            q = unpack_uint4(packed).reshape(shape).to(torch.int16)
            zero = unpack_uint4(hook._zero_point).reshape(hook.zero_point_shape).to(torch.float32)
            offset = (-scale * zero.reshape(shape[0], shape[1]).numpy()).astype(np.float32)
        codes[target] = GroupCodes(q.reshape(shape[0], -1).numpy().astype(np.uint8), scale.astype(np.float32),
                                   offset, shape[2])
    return codes
