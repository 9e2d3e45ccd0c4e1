"""Write a transformers Llama-architecture causal LM as a GGUF file that llama.cpp runs, with each weight in the
encoding asked for: F32, F16, Q5_0 / Q8_0 (round to nearest, llama.cpp's reference rounding), or codes that a
quantizer already chose, packed exactly: 4-bit group codes (:class:`GroupCodes`) into Q4_0 / Q4_1 blocks, Q5_0 / Q8_0
codes with scales of the quantizer's choosing (:class:`BlockCodes`).

Written here with the ``gguf`` package (llama.cpp's own Python writer and quantizers) rather than by running
llama.cpp's ``convert_hf_to_gguf.py`` + ``llama-quantize``: those ship with llama.cpp's sources, not with any
installable package, and ``llama-quantize`` picks its own rounding, whereas a calibrated quantizer's codes must reach
the file unchanged. The mapping is the one ``convert_hf_to_gguf.py`` uses for ``LlamaForCausalLM`` (tensor names,
the rotary permutation of the query and key rows, a tied output matrix stored once as ``token_embd``), and the
tests check llama.cpp's logits against torch's on the same weights.

Block formats (ggml-common.h), 32 weights per block: Q4_0 = fp16 ``d`` + 16 bytes, ``w = d * (q - 8)``;
Q4_1 = fp16 ``d``, fp16 ``m`` + 16 bytes, ``w = d * q + m``; byte ``j`` holds ``q[j]`` (low nibble) and ``q[j + 16]``.
A group of 32k weights that shares one scale (and minimum) is k blocks with equal ``d`` (and ``m``), so any group size
that is a multiple of 32 maps onto these blocks exactly; ``d`` and ``m`` are fp16 in the file, so a quantizer rounds
its scales to fp16 (:func:`GroupCodes.dequantize` does) before it hands the weights to torch.

The tokenizer is copied from the GGUF file the model was loaded from when there is one (``metadata["gguf"]``); else
it is built from a Hugging Face fast BPE tokenizer (vocabulary, merges, special tokens) without a pre-tokenizer
name, which llama.cpp then treats as its default one (sizewise scores perplexity on transformers' token ids either way).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sizewise.core.errors import ConfigError, ModelReferenceError
from sizewise.core.optional import require

BLOCK = 32  # weights per Q4_0 / Q4_1 / Q8_0 block
FLOAT_TYPES = ("F32", "F16")
ROUNDED_TYPES = ("Q5_0", "Q8_0")  # quantized here by gguf's reference rounding (blocks of 32, like the 4-bit ones)
CODE_TYPES = ("Q4_0", "Q4_1")  # packed from a quantizer's GroupCodes
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM",)
_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight"}


@dataclass(frozen=True)
class GroupCodes:
    """A (rows, cols) weight on a 4-bit group grid: ``q`` in 0..15, one ``scale`` (and ``offset``) per row and group
    of ``group_size`` columns. Symmetric (``offset`` None): ``w = scale * (q - 8)``; asymmetric: ``w = scale * q +
    offset``."""

    q: np.ndarray  # uint8 (rows, cols)
    scale: np.ndarray  # float32 (rows, cols // group_size), fp16-representable
    offset: np.ndarray | None  # float32 like scale, or None (symmetric)
    group_size: int

    def __post_init__(self) -> None:
        rows, cols = self.q.shape
        if self.group_size % BLOCK or cols % self.group_size:
            raise ConfigError(f"a GGUF 4-bit weight needs groups of a multiple of {BLOCK} weights dividing its "
                              f"{cols} columns, got group size {self.group_size}", hint="use --group-size 32")
        if self.scale.shape != (rows, cols // self.group_size):
            raise ValueError(f"scale shape {self.scale.shape} does not fit q {self.q.shape} / {self.group_size}")

    @property
    def gguf_type(self) -> str:
        return "Q4_0" if self.offset is None else "Q4_1"

    def dequantize(self) -> np.ndarray:
        """The float32 weights exactly as llama.cpp reads them back (scales and offsets through fp16)."""
        g = self.group_size
        scale = np.repeat(self.scale.astype(np.float16).astype(np.float32), g, axis=1)
        q = self.q.astype(np.float32)
        if self.offset is None:
            return scale * (q - 8.0)
        return scale * q + np.repeat(self.offset.astype(np.float16).astype(np.float32), g, axis=1)

    def permute_rows(self, order: np.ndarray) -> GroupCodes:
        return GroupCodes(self.q[order], self.scale[order], None if self.offset is None else self.offset[order],
                          self.group_size)

    def pack(self) -> np.ndarray:
        """The GGUF bytes, (rows, blocks per row x block bytes) uint8."""
        rows, cols = self.q.shape
        blocks = cols // BLOCK
        reps = self.group_size // BLOCK
        q = self.q.reshape(rows, blocks, BLOCK).astype(np.uint8)
        nibbles = (q[..., :BLOCK // 2] & 0x0F) | ((q[..., BLOCK // 2:] & 0x0F) << 4)
        d = np.repeat(self.scale, reps, axis=1).astype(np.float16).view(np.uint8).reshape(rows, blocks, 2)
        parts = [d]
        if self.offset is not None:
            parts.append(np.repeat(self.offset, reps, axis=1).astype(np.float16).view(np.uint8).reshape(rows, blocks, 2))
        parts.append(nibbles.astype(np.uint8))
        return np.concatenate(parts, axis=-1).reshape(rows, -1)


BLOCK_LEVELS = {"Q5_0": (-16, 15), "Q8_0": (-127, 127)}  # signed code range of each BlockCodes type


@dataclass(frozen=True)
class BlockCodes:
    """A (rows, cols) weight on a Q5_0 or Q8_0 grid chosen by a quantizer: ``w = scale * q`` with one fp16 ``scale``
    per block of 32 columns and signed codes ``q`` (Q5_0: -16..15, Q8_0: -127..127). gguf's own quantizers fix each
    block's scale by llama.cpp's reference rule; these codes let a calibrated choice of scale reach the file."""

    q: np.ndarray  # int8 (rows, cols)
    scale: np.ndarray  # float32 (rows, cols // 32), fp16-representable, may be negative
    kind: str

    def __post_init__(self) -> None:
        rows, cols = self.q.shape
        lo, hi = BLOCK_LEVELS[self.kind]
        if cols % BLOCK or self.scale.shape != (rows, cols // BLOCK):
            raise ValueError(f"scale shape {self.scale.shape} does not fit q {self.q.shape} in blocks of {BLOCK}")
        if self.q.size and (self.q.min() < lo or self.q.max() > hi):
            raise ValueError(f"{self.kind} codes must lie in {lo}..{hi}")

    @property
    def gguf_type(self) -> str:
        return self.kind

    def dequantize(self) -> np.ndarray:
        scale = np.repeat(self.scale.astype(np.float16).astype(np.float32), BLOCK, axis=1)
        return scale * self.q.astype(np.float32)

    def permute_rows(self, order: np.ndarray) -> BlockCodes:
        return BlockCodes(self.q[order], self.scale[order], self.kind)

    def pack(self) -> np.ndarray:
        """The GGUF bytes, (rows, blocks per row x block bytes) uint8: Q8_0 = fp16 ``d`` + 32 int8; Q5_0 = fp16 ``d``,
        32 high bits (little-endian, bit j for weight j), 16 bytes of low nibbles (weights j and j + 16), codes
        stored + 16."""
        rows, cols = self.q.shape
        blocks = cols // BLOCK
        d = self.scale.astype(np.float16).view(np.uint8).reshape(rows, blocks, 2)
        q = self.q.reshape(rows, blocks, BLOCK)
        if self.kind == "Q8_0":
            return np.concatenate([d, q.astype(np.int8).view(np.uint8)], axis=-1).reshape(rows, -1)
        u = (q.astype(np.int16) + 16).astype(np.uint8)
        low = (u[..., :BLOCK // 2] & 0x0F) | ((u[..., BLOCK // 2:] & 0x0F) << 4)
        high = np.packbits(u >> 4, axis=-1, bitorder="little")
        return np.concatenate([d, high, low.astype(np.uint8)], axis=-1).reshape(rows, -1)


def rope_permutation(rows: int, heads: int) -> np.ndarray:
    """The row order ``convert_hf_to_gguf.py`` gives a Llama query/key matrix: Hugging Face stores each head's rotary
    halves one after the other, llama.cpp interleaves them (and transformers undoes this on loading a GGUF file)."""
    head_dim = rows // heads
    index = np.arange(rows).reshape(heads, 2, head_dim // 2).swapaxes(1, 2).reshape(rows)
    return index


def check_architecture(config: Any) -> None:
    arch = (getattr(config, "architectures", None) or ["?"])[0]
    if arch not in SUPPORTED_ARCHITECTURES or getattr(config, "model_type", None) != "llama":
        raise ConfigError(f"sizewise writes GGUF files for {', '.join(SUPPORTED_ARCHITECTURES)} only, not {arch}",
                          hint="quantize this model for onnxruntime or torch instead (e.g. --method int8-dynamic)")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise ConfigError("this Llama model has biases, which the GGUF llama architecture does not carry")
    scaling = _rope(config).get("rope_type", "default")
    if scaling not in (None, "default"):
        raise ConfigError(f"this Llama model uses {scaling} rope scaling, which sizewise does not write to GGUF yet")


def _rope(config: Any) -> dict:
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    return dict(params)


def _rope_theta(config: Any) -> float:
    return float(_rope(config).get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0)


def gguf_tensor_name(hf_name: str, tied: bool) -> str | None:
    """The GGUF name of a Hugging Face Llama parameter (None: not stored, the tied output matrix)."""
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    if hf_name == "lm_head.weight":
        return None if tied else "output.weight"
    parts = hf_name.split(".")
    if len(parts) >= 4 and parts[:2] == ["model", "layers"]:
        tail = ".".join(parts[3:])
        if tail in _LAYER_NAMES:
            return f"blk.{parts[2]}.{_LAYER_NAMES[tail]}"
    raise ConfigError(f"no GGUF name for the Llama parameter {hf_name}")


def _file_type(gguf, encodings: dict[str, str]) -> int:
    counts: dict[str, int] = {}
    for kind in encodings.values():
        counts[kind] = counts.get(kind, 0) + 1
    dominant = max(counts, key=counts.get) if counts else "F32"
    names = {"F32": "ALL_F32", "F16": "MOSTLY_F16", "Q8_0": "MOSTLY_Q8_0", "Q4_0": "MOSTLY_Q4_0",
             "Q4_1": "MOSTLY_Q4_1", "Q5_0": "MOSTLY_Q5_0"}
    return int(gguf.LlamaFileType[names[dominant]])


def _copy_tokenizer(gguf, writer, source: Path) -> None:
    reader = gguf.GGUFReader(str(source))
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        kind = field.types[0]
        value = field.contents()
        if kind == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, value, kind, sub_type=field.types[-1])
        else:
            writer.add_key_value(key, value, kind)


def _hf_tokenizer(gguf, writer, tokenizer: Any, vocab_size: int) -> None:
    """gpt2-style BPE metadata from a transformers fast tokenizer (what convert_hf_to_gguf.py's ``_set_vocab_gpt2``
    writes, less the pre-tokenizer name, which it finds by hashing known tokenizers)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    spec = json.loads(backend.to_str()) if backend is not None else {}
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        kind = model.get("type") or "a slow tokenizer"
        raise ConfigError(f"sizewise writes GGUF tokenizers of the BPE kind only, not {kind}",
                          hint="load the model from a GGUF file, whose tokenizer is copied as it is")
    vocab = tokenizer.get_vocab()
    by_id = {i: t for t, i in vocab.items()}
    added = {int(t["id"]): t for t in spec.get("added_tokens", [])}
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(int(gguf.TokenType.UNUSED))
            continue
        tokens.append(by_id[i])
        info = added.get(i)
        types.append(int(gguf.TokenType.CONTROL if info and info.get("special") else
                         gguf.TokenType.USER_DEFINED if info else gguf.TokenType.NORMAL))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for attr, add in (("bos_token_id", writer.add_bos_token_id), ("eos_token_id", writer.add_eos_token_id),
                      ("unk_token_id", writer.add_unk_token_id), ("pad_token_id", writer.add_pad_token_id)):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            add(int(value))
    writer.add_add_bos_token(False)


def write_gguf(module: Any, tokenizer: Any, path: str | os.PathLike, *,
               codes: dict[str, GroupCodes | BlockCodes] | None = None,
               encodings: dict[str, str] | None = None, default: str = "F32", source_gguf: str | None = None,
               name: str | None = None) -> Path:
    """Write ``module`` (a transformers ``LlamaForCausalLM``) to ``path``.

    ``codes`` maps parameter names (``model.layers.0.mlp.up_proj.weight``) to the codes a quantizer chose (4-bit
    group codes, or Q5_0 / Q8_0 block codes);
    ``encodings`` maps others to F32 / F16 / Q5_0 / Q8_0; 1-D tensors (norms) are always F32, as llama.cpp keeps them;
    everything else gets ``default``. ``source_gguf``: a GGUF file whose tokenizer is copied.
    """
    gguf = require("gguf", "llm", "writing GGUF files")
    import torch

    codes, encodings = dict(codes or {}), dict(encodings or {})
    config = module.config
    check_architecture(config)
    for kind in [default, *encodings.values()]:
        if kind not in FLOAT_TYPES + ROUNDED_TYPES:
            raise ConfigError(f"unknown GGUF encoding {kind!r}", hint=f"use one of {', '.join(FLOAT_TYPES + ROUNDED_TYPES)}"
                                                                      f" (4-bit types come as GroupCodes)")
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    tied = bool(getattr(config, "tie_word_embeddings", False))
    state = {k: v for k, v in module.state_dict().items()}
    unknown = set(codes) - set(state)
    if unknown:
        raise ConfigError(f"codes given for parameters the model does not have: {sorted(unknown)[:3]}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name or getattr(config, "_name_or_path", None) or "model")
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(int(heads))
    writer.add_head_count_kv(int(kv_heads))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_rope_dimension_count(int(head_dim))
    if head_dim != config.hidden_size // heads:
        writer.add_key_length(int(head_dim))
        writer.add_value_length(int(head_dim))
    writer.add_vocab_size(int(config.vocab_size))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    chosen: dict[str, str] = {}
    for hf_name, tensor in state.items():
        target = gguf_tensor_name(hf_name, tied)
        if target is None:
            continue
        order = None
        if hf_name.endswith("self_attn.q_proj.weight"):
            order = rope_permutation(tensor.shape[0], heads)
        elif hf_name.endswith("self_attn.k_proj.weight"):
            order = rope_permutation(tensor.shape[0], kv_heads)
        if hf_name in codes:
            group = codes[hf_name]
            if tuple(group.q.shape) != tuple(tensor.shape):
                raise ConfigError(f"codes for {hf_name} have shape {group.q.shape}, the weight {tuple(tensor.shape)}")
            group = group.permute_rows(order) if order is not None else group
            kind = group.gguf_type
            data = group.pack()
        else:
            array = tensor.detach().to(torch.float32).cpu().numpy()
            array = array[order] if order is not None else array
            kind = "F32" if array.ndim == 1 else encodings.get(hf_name, default)
            if kind == "F32":
                data = np.ascontiguousarray(array, dtype=np.float32)
            elif kind == "F16":
                data = array.astype(np.float16)
            else:
                if array.shape[-1] % BLOCK:
                    raise ConfigError(f"{hf_name} has {array.shape[-1]} columns, not a multiple of {BLOCK}: it "
                                      f"cannot be {kind}", hint="keep it F16 or F32")
                data = gguf.quants.quantize(np.ascontiguousarray(array, dtype=np.float32),
                                            gguf.GGMLQuantizationType[kind])
        chosen[hf_name] = kind
        qtype = gguf.GGMLQuantizationType[kind]
        writer.add_tensor(target, data, raw_dtype=None if kind in FLOAT_TYPES else qtype)
    weights = {k: v for k, v in chosen.items() if state[k].ndim > 1}
    writer.add_file_type(_file_type(gguf, weights))
    if source_gguf and Path(source_gguf).is_file():
        _copy_tokenizer(gguf, writer, Path(source_gguf))
    elif tokenizer is not None:
        _hf_tokenizer(gguf, writer, tokenizer, int(config.vocab_size))
    else:
        raise ModelReferenceError("the model has no tokenizer to write into the GGUF file",
                                  hint="load it with its tokenizer")
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    tmp.replace(path)
    return path


def tensor_encodings(path: str | os.PathLike) -> dict[str, str]:
    """GGUF tensor name -> its type name, read back from a file."""
    gguf = require("gguf", "llm", "GGUF files")
    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}
