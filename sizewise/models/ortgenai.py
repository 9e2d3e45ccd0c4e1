"""A causal LM as an ONNX Runtime GenAI folder: built by the library's own model builder, run by its ``Generator``
(and by onnxruntime for whole-window logits), wrapped as an ``nn.Module`` so sizewise's timers, memory probe and
perplexity can drive it, as :class:`~sizewise.models.llamacpp.LlamaCppModule` does for GGUF files.

Why the builder and not sizewise's own ONNX export: ``onnxruntime_genai.models.builder.create_model`` writes the
graph ORT GenAI is tuned for (fused QKV, ``GroupQueryAttention`` with a shared KV buffer,
``SkipSimplifiedLayerNormalization``, int4 weights as ``MatMulNBits``, a tied embedding as ``GatherBlockQuantized``)
plus the ``genai_config.json`` its runtime reads. It takes a Hugging Face directory, so the loaded model is saved into
a work folder first (``save_pretrained`` of the module and its tokenizer). int4 is the builder's round to nearest on
its block grid, symmetric by default (``w = s (q - 8)``); ``accuracy_level`` 4 lets the CPU kernel quantize
activations to int8.

:func:`load_weights` reads the weights back out of a built folder into the transformers model (dequantizing int4
blocks), so that the PyTorch twin of an int4 folder holds exactly the weights the folder holds: FLOPs, validation
scores and a later ``--runtime torch`` measure the model that is shipped, as for a GGUF file.

CPU note: ORT's ``GroupQueryAttention`` needs a head size that is a multiple of 16; :func:`check_buildable` says so
before a build is attempted.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from sizewise.core.errors import ConfigError, ModelReferenceError
from sizewise.core.optional import require
from sizewise.models.hf import attention_shape

EXTRA = "ortgenai"
MODEL_FILE = "model.onnx"
GENAI_CONFIG = "genai_config.json"
PRECISIONS = ("fp32", "int4", "int8")


def _genai():
    return require("onnxruntime_genai", EXTRA, "ONNX Runtime GenAI")


def genai_version() -> str | None:
    try:
        import importlib.metadata

        return importlib.metadata.version("onnxruntime-genai")
    except Exception:  # noqa: BLE001 - not installed
        return None


def check_buildable(config: Any, reference: str = "the model") -> None:
    """The checks the builder makes late or not at all, as one line each."""
    shape = attention_shape(config)
    if shape["head_dim"] % 16:
        raise ConfigError(f"ONNX Runtime GenAI's CPU attention (GroupQueryAttention) needs a head size that is a "
                          f"multiple of 16; {reference} has {shape['head_dim']}",
                          hint="use --runtime llamacpp or torch for this model")


@contextlib.contextmanager
def _quiet():
    """The builder prints its options, a line per quantized node (through logging) and tqdm bars: none is wanted on a
    sizewise command's screen."""
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    quantizer = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    quantizer.addFilter(_harmless)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        quantizer.removeFilter(_harmless)
        logging.disable(previous)


def _harmless(record: logging.LogRecord) -> bool:
    """An int8 build logs this ERROR for the float token embedding it leaves as it is (8-bit Gather is not supported;
    the graph is complete): not an error for the user."""
    return "Gather only supports 4 bits quantization" not in record.getMessage()


def build(module: nn.Module, tokenizer: Any, out_dir: str | os.PathLike, precision: str = "int4",
          block_size: int = 32, accuracy_level: int = 4, symmetric: bool = True, reference: str = "the model") -> Path:
    """An ORT GenAI folder in ``out_dir`` for the transformers causal LM ``module``, built by the library's builder
    (``create_model``) for the CPU execution provider."""
    if precision not in PRECISIONS:
        raise ConfigError(f"ORT GenAI precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    _genai()
    from onnxruntime_genai.models.builder import create_model, parse_extra_options

    check_buildable(module.config, reference)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    options = []
    if precision in ("int4", "int8"):
        options = [f"block_size={block_size}", f"accuracy_level={accuracy_level}",
                   f"is_symmetric={'true' if symmetric else 'false'}"]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="sizewise-ortgenai-", dir=out_dir.parent) as work:
        hf_dir, cache = Path(work) / "hf", Path(work) / "cache"
        module.config.architectures = module.config.architectures or [type(module).__name__]
        try:
            with _quiet():
                module.save_pretrained(hf_dir, safe_serialization=True)
                tokenizer.save_pretrained(hf_dir)
                extra = parse_extra_options(None, str(hf_dir), str(out_dir), precision, "cpu", str(cache), options)
                create_model(None, str(hf_dir), str(out_dir), precision, "cpu", str(cache), **extra)
        except Exception as exc:  # the builder raises bare Exception / NotImplementedError / ValueError
            raise ModelReferenceError(f"the ONNX Runtime GenAI builder could not build {reference} "
                                      f"({(module.config.architectures or ['?'])[0]}, {precision}): "
                                      f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}",
                                      hint="the builder supports the architectures listed in its README "
                                           "(Llama, Mistral, Phi, Qwen, Gemma, ...)") from exc
    if not (out_dir / MODEL_FILE).is_file():
        raise ModelReferenceError(f"the ONNX Runtime GenAI builder wrote no {MODEL_FILE} in {out_dir}")
    return out_dir


def folder_files(folder: str | os.PathLike) -> list[Path]:
    """Every file of a built folder: the graph, its weights, the runtime config and the tokenizer a user ships."""
    # not sizewise's manifest, when the folder is a saved model directory
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("sizewise-"))


def genai_config(folder: str | os.PathLike) -> dict:
    return json.loads((Path(folder) / GENAI_CONFIG).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------------- weights back

def _dequantize_nbits(packed: np.ndarray, scales: np.ndarray, zero_points: np.ndarray | None, k: int, bits: int,
                      block: int) -> np.ndarray:
    """MatMulNBits' ``B`` as the float [N, K] matrix it stands for: ``(q - zero point) * scale`` per block; no zero
    points means the midpoint, 2^(bits-1). 4 bits: [N, blocks, block/2] bytes, low nibble first (zero points packed
    the same way); 8 bits: [N, blocks, block] bytes (a zero point per byte)."""
    if bits not in (4, 8):
        raise ModelReferenceError(f"reading {bits}-bit MatMulNBits weights is not supported (4- and 8-bit only)")
    n = packed.shape[0]
    blocks = -(-k // block)
    if bits == 4:
        q = np.stack([packed & 0x0F, packed >> 4], axis=-1)
    else:
        q = packed
    q = q.reshape(n, blocks, block).astype(np.float32)
    if zero_points is None:
        zp = np.full((n, blocks, 1), float(2 ** (bits - 1)), dtype=np.float32)
    else:
        zp_bytes = zero_points.reshape(n, -1)
        if bits == 4:
            zp_bytes = np.stack([zp_bytes & 0x0F, zp_bytes >> 4], axis=-1).reshape(n, -1)
        zp = zp_bytes[:, :blocks].astype(np.float32)[..., None]
    w = (q - zp) * scales.reshape(n, blocks, 1).astype(np.float32)
    return w.reshape(n, blocks * block)[:, :k]


def _linear_weights(graph, inits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every projection of the graph as ``{builder prefix: float [out, in] matrix}`` (the prefix is the initializer
    name before ``.MatMul``: ``model.layers.0.attn.qkv_proj``, ``lm_head``)."""
    from onnx import helper

    out: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op_type == "MatMul" and len(node.input) > 1 and node.input[1] in inits:
            name = node.input[1]
            out[name.split(".MatMul")[0]] = inits[name].T
        elif node.op_type == "MatMulNBits":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            zero_points = inits.get(node.input[3]) if len(node.input) > 3 and node.input[3] else None
            w = _dequantize_nbits(inits[node.input[1]], inits[node.input[2]], zero_points, attrs["K"],
                                  attrs.get("bits", 4), attrs["block_size"])
            out[node.input[1].split(".MatMul")[0]] = w
    return out


def folder_state(folder: str | os.PathLike, config: Any) -> dict[str, torch.Tensor]:
    """The transformers state dict (Llama names) of the weights a built folder holds, int4 blocks dequantized."""
    onnx = require("onnx", EXTRA, "reading an ORT GenAI folder's graph")
    from onnx import numpy_helper

    model = onnx.load(str(Path(folder) / MODEL_FILE), load_external_data=True)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    linear = _linear_weights(model.graph, inits)
    shape = attention_shape(config)
    q_rows, kv_rows = shape["heads"] * shape["head_dim"], shape["kv_heads"] * shape["head_dim"]
    state: dict[str, np.ndarray] = {}
    for prefix, w in linear.items():
        if prefix == "lm_head":
            state["lm_head.weight"] = w
            continue
        layer, _, proj = prefix.partition(".attn.") if ".attn." in prefix else prefix.partition(".mlp.")
        if ".attn." in prefix and proj == "qkv_proj":
            for name, part in zip(("q_proj", "k_proj", "v_proj"),
                                  np.split(w, [q_rows, q_rows + kv_rows], axis=0)):
                state[f"{layer}.self_attn.{name}.weight"] = part
        elif ".attn." in prefix:
            state[f"{layer}.self_attn.{proj}.weight"] = w
        else:
            state[f"{layer}.mlp.{proj}.weight"] = w
    layers = shape["layers"]
    for name, array in inits.items():
        if name.endswith("_layernorm.weight"):
            if name == f"model.layers.{layers}.final_norm_layernorm.weight":
                state["model.norm.weight"] = array
            else:
                state[name] = array
    if "model.embed_tokens.weight" in inits:
        state["model.embed_tokens.weight"] = inits["model.embed_tokens.weight"]
    else:  # a tied embedding shares the output matrix (int4: GatherBlockQuantized reads lm_head's blocks)
        state["model.embed_tokens.weight"] = state["lm_head.weight"]
    return {k: torch.from_numpy(np.array(v, dtype=np.float32, copy=True)) for k, v in state.items()}


def load_weights(module: nn.Module, folder: str | os.PathLike) -> nn.Module:
    """Put the weights of a built folder into ``module`` (its transformers twin), checking every parameter is set."""
    state = folder_state(folder, module.config)
    params = dict(module.named_parameters(remove_duplicate=False))
    tied = getattr(module.config, "tie_word_embeddings", False)
    missing = sorted(n for n in params if n not in state and not (tied and n == "lm_head.weight"))
    unknown = sorted(n for n in state if n not in params)
    if missing or unknown:
        raise ModelReferenceError(f"the ONNX graph in {folder} does not map onto {type(module).__name__}: "
                                  f"missing {missing[:4]}, unknown {unknown[:4]}",
                                  hint="sizewise reads back Llama-family graphs of the ORT GenAI builder")
    if tied and not torch.equal(state["lm_head.weight"], state["model.embed_tokens.weight"]):
        # an int8 build keeps the embedding in float32 and the output matrix at 8 bits: two tensors, as in the graph
        module.lm_head.weight = nn.Parameter(state["lm_head.weight"].clone())
        module.config.tie_word_embeddings = False
        params, tied = dict(module.named_parameters(remove_duplicate=False)), False
    with torch.no_grad():
        for name, value in state.items():
            if tied and name == "lm_head.weight" and "model.embed_tokens.weight" in state:
                continue  # one tensor: set through the embedding
            if tuple(params[name].shape) != tuple(value.shape):
                raise ModelReferenceError(f"{name}: the graph holds {tuple(value.shape)}, the model "
                                          f"{tuple(params[name].shape)}")
            params[name].copy_(value)
    return module


# ---------------------------------------------------------------------------------------------------- running


class OrtGenAIModule(nn.Module):
    """A built ORT GenAI folder. ``forward`` gives the logits of every position (onnxruntime on the folder's
    ``model.onnx`` from an empty KV cache: what the sliding-window perplexity needs; the GenAI ``Generator`` hands out
    the last position's only); :meth:`generate_timed` is the greedy loop on the GenAI ``Generator``. Picklable: the
    sessions are reopened from the folder."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None, config: Any = None):
        super().__init__()
        self.path = str(path)
        self.threads = threads or max(1, torch.get_num_threads())
        self.config = config  # the transformers config of the same model: positions, heads, KV cache shape
        self._session = None
        self._model = None
        self._decoding = None  # (generator, max_length) of the last generation, for decode_step

    def set_threads(self, threads: int) -> None:
        if threads != self.threads:
            self.threads = threads
            self._session = self._model = self._decoding = None

    # ------------------------------------------------------------------ onnxruntime: logits of every position
    def session(self):
        if self._session is None:
            ort = require("onnxruntime", "onnx", "running ONNX models")
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            try:
                self._session = ort.InferenceSession(str(Path(self.path) / MODEL_FILE), options,
                                                     providers=["CPUExecutionProvider"])
            except Exception as exc:  # InvalidGraph, NoSuchFile, ...
                raise ModelReferenceError(f"onnxruntime cannot load {Path(self.path) / MODEL_FILE}: "
                                          f"{str(exc).splitlines()[0][:300]}") from exc
        return self._session

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: Any) -> Any:
        session = self.session()
        ids = input_ids.detach().cpu().numpy().astype(np.int64)
        mask = np.ones_like(ids) if attention_mask is None else attention_mask.detach().cpu().numpy().astype(np.int64)
        feeds: dict[str, np.ndarray] = {"input_ids": ids, "attention_mask": mask}
        for spec in session.get_inputs():
            if spec.name.startswith("past_key_values"):
                dtype = np.float16 if "float16" in spec.type else np.float32
                feeds[spec.name] = np.zeros((ids.shape[0], spec.shape[1], 0, self._head_dim(spec)), dtype=dtype)
        logits = session.run(["logits"], feeds)[0]
        return SimpleNamespace(logits=torch.from_numpy(np.asarray(logits, dtype=np.float32)))

    def _head_dim(self, spec) -> int:
        last = spec.shape[-1]
        if isinstance(last, int):
            return last
        return int(genai_config(self.path)["model"]["decoder"]["head_size"])

    # ------------------------------------------------------------------ the GenAI Generator: timed greedy decoding
    def genai_model(self):
        if self._model is None:
            og = _genai()
            config = og.Config(self.path)
            config.clear_providers()  # CPU
            config.overlay(json.dumps({"model": {"decoder": {"session_options": {
                "intra_op_num_threads": self.threads, "inter_op_num_threads": 1}}}}))
            self._model = og.Model(config)
        return self._model

    def _generator(self, max_length: int):
        og = _genai()
        params = og.GeneratorParams(self.genai_model())
        params.set_search_options(max_length=max_length, do_sample=False)
        return og.Generator(self.genai_model(), params)

    def generate_timed(self, prompt: list[int], new_tokens: int):
        """Greedy generation of ``new_tokens`` after ``prompt``: token 1 from the prefill (``append_tokens`` then the
        argmax), the rest one ``generate_next_token`` (one forward + argmax) each, every step timed."""
        from sizewise.models.llamacpp import TimedGeneration

        generator = self._generator(len(prompt) + new_tokens + 1)  # + 1: room for decode_step
        t0 = time.perf_counter_ns()
        generator.append_tokens(np.asarray(prompt, dtype=np.int32))
        generator.generate_next_token()  # the prefill's logits are there: this only picks their argmax
        token = int(generator.get_next_tokens()[0])
        first = last = time.perf_counter_ns()
        cpu0 = time.process_time_ns()
        tokens, steps = [token], []
        for _ in range(new_tokens - 1):
            generator.generate_next_token()
            token = int(generator.get_next_tokens()[0])
            now = time.perf_counter_ns()
            steps.append(now - last)
            last = now
            tokens.append(token)
        self._decoding = generator
        return TimedGeneration(ttft_ns=first - t0, step_ns=steps, total_ns=last - t0,
                               decode_cpu_ns=time.process_time_ns() - cpu0, tokens=tokens)

    def decode_step(self) -> None:
        """One more decode step after the last generation, then rewound, so an energy counter can be read over many
        steps at a fixed context."""
        generator = self._decoding
        if generator is None:
            raise RuntimeError("decode_step needs a generation first (generate_timed)")
        count = generator.token_count()
        generator.generate_next_token()
        generator.rewind_to(count)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_session"] = state["_model"] = state["_decoding"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        # loaded at once, as a torch module's weights are resident when it is unpickled: a peak memory probe then
        # sees the run, not the loading
        self.__dict__.update(state)
        self.session()
