"""A causal LM measured on ONNX Runtime GenAI: what a folder built by its model builder costs on the CPU.

The folder measured is the model's own (an ``int4-ortgenai`` step built it: ``metadata["ortgenai_dir"]``, and the
weights still hash to what they were when it was built), else the model built as fp32 by the same builder (what
"fp32 on ORT GenAI" means: the same float weights). Prefill and decode tokens/s come from the greedy loop of
:mod:`sizewise.measure.llm` run on the GenAI ``Generator`` (batch 1, its own KV cache); perplexity is scored on the same
token ids, windows and positions as on torch and llama.cpp, with the logits of every position taken from onnxruntime
running the folder's ``model.onnx`` (the Generator hands out the last position's logits only; the graph and its
kernels are the same). FLOPs per token are the same model's, counted on its PyTorch twin. The KV cache is the
graph's (float32 on the CPU builds).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from sizewise.measure.card import LLMStats, SizeStats
from sizewise.measure.energy import EnergySettings
from sizewise.measure.llm import LLMConfig, RuntimeFacts, measure_llm_runtime
from sizewise.models.loaded import LoadedModel
from sizewise.models.ortgenai import MODEL_FILE, OrtGenAIModule, build, folder_files, genai_version

RUNTIME = "ortgenai"


def own_folder(loaded: LoadedModel) -> str | None:
    """The model's own built folder, if it has one whose weights are still the module's."""
    from sizewise.models.gguf import weights_fingerprint

    path = loaded.metadata.get("ortgenai_dir")
    if not path or not (Path(path) / MODEL_FILE).is_file() or loaded.is_onnx:
        return None
    if weights_fingerprint(loaded.module) != loaded.metadata.get("ortgenai_fingerprint"):
        return None
    return path


def ortgenai_module(loaded: LoadedModel, workdir: str, threads: int) -> OrtGenAIModule:
    """The ORT GenAI module measured for ``loaded`` (its own folder, or an fp32 build into ``workdir``)."""
    path = own_folder(loaded)
    if path is None:
        path = str(build(loaded.module, loaded.inputs.tokenizer, Path(workdir) / "ortgenai-fp32", precision="fp32",
                         reference=f"'{loaded.reference}'"))
    return OrtGenAIModule(path, threads=threads, config=loaded.module.config)


def _graph(folder: str | Path):
    """The folder's graph, its tensor headers only (the weights stay on disk)."""
    from sizewise.core.optional import require

    onnx = require("onnx", "ortgenai", "reading an ORT GenAI folder's graph")
    return onnx.load(str(Path(folder) / MODEL_FILE), load_external_data=False).graph


def _initializers(graph) -> dict[str, tuple[str, int, int]]:
    """Per initializer: element type, bytes, and rows (its first dimension)."""
    from onnx import helper

    out = {}
    for init in graph.initializer:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(init.data_type))
        out[init.name] = (str(dtype), int(np.prod(init.dims, dtype=np.int64)) * dtype.itemsize,
                          int(init.dims[0]) if init.dims else 1)
    return out


def bytes_by_dtype(folder: str | Path) -> dict[str, int]:
    """Initializer bytes of the folder's graph by element type (int4 blocks are packed uint8)."""
    by_dtype: dict[str, int] = defaultdict(int)
    for dtype, nbytes, _rows in _initializers(_graph(folder)).values():
        by_dtype[dtype] += nbytes
    return dict(by_dtype)


def step_read_bytes(folder: str | Path) -> int:
    """The initializer bytes a decode step reads: all, except a table only a ``Gather`` looks rows up in (an int8 or
    fp32 build's token embedding: one row per token); the int4 build's ``GatherBlockQuantized`` shares the output
    matrix's blocks, which the last MatMul reads whole."""
    graph = _graph(folder)
    readers: dict[str, set[str]] = defaultdict(set)
    for node in graph.node:
        for position, name in enumerate(node.input):
            readers[name].add("lookup" if node.op_type == "Gather" and position == 0 else "other")
    total = 0
    for name, (_dtype, nbytes, rows) in _initializers(graph).items():
        total += nbytes // max(1, rows) if readers.get(name) == {"lookup"} else nbytes
    return total


def folder_size(folder: str | Path) -> SizeStats:
    """A built folder as shipped: every file in it (graph, weights, genai_config.json, tokenizer)."""
    from sizewise.measure.size import artifact_bytes

    files = folder_files(folder)
    by_dtype = bytes_by_dtype(folder)
    raw, zipped = artifact_bytes(files)
    return SizeStats(memory_bytes=sum(by_dtype.values()), memory_by_dtype=by_dtype, disk_bytes=raw, zip_bytes=zipped,
                     artifact=" + ".join(f.name for f in files))


def _kv_bytes_per_element(module: OrtGenAIModule) -> int:
    spec = next((s for s in module.session().get_inputs() if s.name.startswith("past_key_values")), None)
    return 2 if spec is not None and "float16" in spec.type else 4


def measure_llm_ortgenai(loaded: LoadedModel, module: OrtGenAIModule, config: LLMConfig | None = None,
                         threads: int = 1, energy: EnergySettings | None = None, texts: list[str] | None = None,
                         split: str | None = None, progress=None) -> LLMStats:
    """The LLM section of the card on ONNX Runtime GenAI (see the module doc)."""
    by_dtype = bytes_by_dtype(module.path)
    kv_bytes = _kv_bytes_per_element(module)
    facts = RuntimeFacts(
        runtime=RUNTIME, label="ORT GenAI", weight_bytes=sum(by_dtype.values()),
        read_bytes=step_read_bytes(module.path), kv_bytes_per_element=kv_bytes,
        device=f"cpu (ORT GenAI {genai_version() or '?'})", dtype="+".join(sorted(by_dtype)),
        decoding=f"greedy (argmax) on ONNX Runtime GenAI's Generator, batch 1: append_tokens(prompt), then "
                 f"new_tokens - 1 generate_next_token calls reusing its float{8 * kv_bytes} KV cache",
        roofline="decode reads every weight (the graph's initializers, but one row of a table only a Gather looks "
                 "up: the token embedding of an int8 or fp32 build) and the whole KV cache once per step: roofline "
                 "tokens/s = read bandwidth / (those bytes + KV cache bytes)")
    return measure_llm_runtime(loaded, module, facts, config, threads, energy, texts, split, progress)
