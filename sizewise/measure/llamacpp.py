"""A causal LM measured on llama.cpp: what a GGUF file costs where people deploy small LLMs.

The module measured is the model's own GGUF file when it has one (a step wrote it: ``metadata["gguf_file"]``, and the
weights still hash to what they were when it was written), else the model written as an F32 GGUF file (what
"fp32 on llama.cpp" means: the same float weights). Prefill and decode tokens/s come from the greedy loop of
:mod:`sizewise.measure.llm` run on llama.cpp's own KV cache (batch 1: llama-cpp-python's ``Llama`` decodes one
sequence); perplexity is scored by llama.cpp's logits on the same token ids, windows and positions as on torch.
FLOPs per token are the same model's, counted on its PyTorch twin. The KV cache is llama.cpp's default f16 cache.
"""

from __future__ import annotations

from collections import defaultdict
from functools import lru_cache
from pathlib import Path

from sizewise.measure.card import LLMStats, SizeStats
from sizewise.measure.energy import EnergySettings
from sizewise.measure.llm import LLMConfig, RuntimeFacts, measure_llm_runtime
from sizewise.models.llamacpp import LlamaCppModule
from sizewise.models.loaded import LoadedModel

KV_BYTES_PER_ELEMENT = 2  # llama.cpp's default KV cache type is f16


def own_gguf(loaded: LoadedModel) -> str | None:
    """The model's own GGUF file, if it has one whose weights are still the module's."""
    from sizewise.models.gguf import weights_fingerprint

    path = loaded.metadata.get("gguf_file")
    if not path or not Path(path).is_file() or loaded.is_onnx:
        return None
    if weights_fingerprint(loaded.module) != loaded.metadata.get("gguf_fingerprint"):
        return None
    return path


def llamacpp_module(loaded: LoadedModel, workdir: str, threads: int, n_ctx: int) -> LlamaCppModule:
    """The llama.cpp module measured for ``loaded`` (its own GGUF file, or an F32 export into ``workdir``)."""
    from sizewise.models.gguf_writer import write_gguf

    path = own_gguf(loaded)
    if path is None:
        source = (loaded.metadata.get("gguf") or {}).get("path")
        path = str(write_gguf(loaded.module, loaded.inputs.tokenizer, Path(workdir) / "model-f32.gguf",
                              default="F32", source_gguf=source, name=loaded.reference))
    return LlamaCppModule(path, threads=threads, n_ctx=n_ctx, config=loaded.module.config)


def n_ctx_for(loaded: LoadedModel, config: LLMConfig, seq_len: int | None) -> int:
    """llama.cpp's context: room for the perplexity window, the generation and the latency input."""
    from sizewise.tasks.perplexity import resolve_context

    window, _ = resolve_context(loaded.module, config.perplexity)
    return max(window, config.prompt_tokens + config.new_tokens, seq_len or loaded.inputs.default_seq_len)


@lru_cache(maxsize=8)
def _tensors(path: str, mtime_ns: int) -> tuple[tuple[str, str, int, int], ...]:
    """(name, GGUF type, bytes, rows) of every tensor; parsing the tokenizer's strings takes seconds: read once."""
    import gguf

    # GGUF lists the fastest dimension first: a matrix's rows are its last dimension
    return tuple((t.name, t.tensor_type.name, int(t.n_bytes), int(t.shape[-1]) if len(t.shape) > 1 else 1)
                 for t in gguf.GGUFReader(path).tensors)


def _tensors_of(path: str | Path) -> tuple[tuple[str, str, int, int], ...]:
    return _tensors(str(path), Path(path).stat().st_mtime_ns)


def bytes_by_type(path: str | Path) -> dict[str, int]:
    """Tensor bytes of a GGUF file by GGUF type (F32, Q8_0, Q4_1, ...)."""
    by_type: dict[str, int] = defaultdict(int)
    for _name, kind, nbytes, _rows in _tensors_of(path):
        by_type[kind] += nbytes
    return dict(by_type)


def gguf_size(path: str | Path) -> SizeStats:
    """A GGUF file: its tensors' bytes by GGUF type, and the file's bytes (tensors, tokenizer and metadata)."""
    from sizewise.measure.size import artifact_bytes

    by_type = bytes_by_type(path)
    raw, zipped = artifact_bytes([Path(path)])
    return SizeStats(memory_bytes=sum(by_type.values()), memory_by_dtype=by_type, disk_bytes=raw,
                     zip_bytes=zipped, artifact=Path(path).name)


def tensor_bytes(path: str | Path) -> int:
    return sum(bytes_by_type(path).values())


def step_read_bytes(path: str | Path) -> int:
    """The tensor bytes a decode step reads: all, except the token embedding of a file with its own output matrix
    (the lookup reads one row per token); a tied model's ``token_embd`` is the output matrix and is read whole."""
    tensors = {name: (nbytes, rows) for name, _kind, nbytes, rows in _tensors_of(path)}
    total = sum(nbytes for nbytes, _rows in tensors.values())
    if "token_embd.weight" not in tensors or "output.weight" not in tensors:
        return total
    nbytes, rows = tensors["token_embd.weight"]
    return total - nbytes + nbytes // max(1, rows)


def measure_llm_llamacpp(loaded: LoadedModel, module: LlamaCppModule, config: LLMConfig | None = None,
                         threads: int = 1, energy: EnergySettings | None = None, texts: list[str] | None = None,
                         split: str | None = None, progress=None) -> LLMStats:
    """The LLM section of the card on llama.cpp (see the module doc)."""
    facts = RuntimeFacts(
        runtime="llamacpp", label="llama.cpp", weight_bytes=tensor_bytes(module.path),
        read_bytes=step_read_bytes(module.path),
        kv_bytes_per_element=KV_BYTES_PER_ELEMENT, device="cpu (llama.cpp)",
        dtype="+".join(sorted(bytes_by_type(module.path))),
        decoding="greedy (argmax) on llama.cpp (llama-cpp-python), batch 1: one eval of the prompt, then "
                 "new_tokens - 1 one-token evals reusing llama.cpp's f16 KV cache",
        roofline="decode reads every weight (the GGUF file's tensor bytes, but one row of a token embedding that is "
                 "not the output matrix) and the whole KV cache once per step: roofline tokens/s = read bandwidth / "
                 "(those bytes + KV cache bytes)")
    return measure_llm_runtime(loaded, module, facts, config, threads, energy, texts, split, progress)
