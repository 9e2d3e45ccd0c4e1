"""``sizewise.measure``: one call that produces a :class:`ModelCard`, each part measured the same way every time."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from sizewise.core.errors import ConfigError, InputShapeError
from sizewise.measure.card import FlopStats, LayerParams, MemoryStats, ModelCard
from sizewise.measure.energy import EnergySettings, carbon_for, measure_energy
from sizewise.measure.environment import describe_environment
from sizewise.measure.flops import count_flops
from sizewise.measure.latency import machine_busy, measure_latency
from sizewise.measure.llm import LLMConfig
from sizewise.measure.memory import measure_peak_memory
from sizewise.measure.params import count_params
from sizewise.measure.size import measure_size
from sizewise.models.loaded import LoadedModel

RUNTIMES = ("torch", "onnxruntime", "llamacpp", "ortgenai")
LLM_RUNTIMES = ("llamacpp", "ortgenai")  # causal LMs only: each measures its own file or folder, with tokens/s


@dataclass(frozen=True)
class MeasureConfig:
    batch_size: int = 1
    seq_len: int | None = None  # text models; None = the model's default (128, or its maximum if smaller)
    threads: int | None = None  # None = torch's current setting (usually the physical core count)
    runtime: str = "torch"
    latency_seconds: float = 1.0  # minimum time spent in timed calls at the main batch size
    throughput_sweep: tuple[int, ...] = (1, 8, 32)
    measure_memory: bool = True
    eval_limit: int | None = None  # evaluate on N examples of the split only (Split.sample; texts: the first N)
    split: str | None = None  # the split metrics are computed on; None = the dataset's reported split (test)
    energy: EnergySettings = EnergySettings()
    llm: LLMConfig = LLMConfig()  # causal LMs: prompt, new tokens, batch, perplexity window (see measure/llm.py)

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch size must be a positive integer, got {self.batch_size!r}")
        if self.seq_len is not None and (not isinstance(self.seq_len, int) or self.seq_len < 1):
            raise ConfigError(f"sequence length must be a positive integer, got {self.seq_len!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"threads must be a positive integer, got {self.threads!r}")
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"unknown runtime '{self.runtime}'", hint=f"choose one of: {', '.join(RUNTIMES)}")
        if self.latency_seconds <= 0:
            raise ConfigError(f"latency_seconds must be > 0, got {self.latency_seconds}")


def _check_seq_len(loaded: LoadedModel, seq_len: int | None) -> None:
    limit = loaded.metadata.get("max_seq_len")
    if seq_len and limit and seq_len > limit:
        raise ConfigError(f"--seq-len {seq_len} is longer than model '{loaded.reference}' accepts ({limit} tokens)",
                          hint=f"use --seq-len {limit} or less")


def _probe(loaded: LoadedModel, inputs: dict[str, torch.Tensor]) -> None:
    """One forward pass, so a model that rejects the inputs fails with a clear line, not deep in a timer."""
    if loaded.inputs.kind == "tensor" and not loaded.inputs.shape:
        raise InputShapeError(f"sizewise does not know the input shape of '{loaded.reference}'",
                              hint="pass --input-shape C,H,W (per example, without the batch), or give the module "
                                   "an `input_shape` attribute")
    try:
        with torch.inference_mode():
            loaded.module(**inputs)
    except Exception as exc:  # user models raise anything on a bad shape: RuntimeError, ValueError, IndexError...
        shapes = {k: tuple(v.shape) for k, v in inputs.items()}
        raise InputShapeError(f"model '{loaded.reference}' rejected inputs {shapes}: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                              hint="pass --input-shape matching what the model expects") from exc


def _runtime_module(loaded: LoadedModel, runtime: str, seq_len: int | None, workdir: str, config=None):
    if runtime == "llamacpp":  # a GGUF file on llama.cpp: sizewise/measure/llamacpp.py
        from sizewise.measure.llamacpp import llamacpp_module, n_ctx_for

        if loaded.task != "causal-lm" or loaded.is_onnx:
            raise ConfigError(f"llama.cpp runs causal language models; '{loaded.reference}' is a {loaded.task} "
                              f"model", hint="use --runtime torch or onnxruntime")
        return llamacpp_module(loaded, workdir, config.threads or torch.get_num_threads(),
                               n_ctx_for(loaded, config.llm, seq_len))
    if runtime == "ortgenai":  # a folder built by ONNX Runtime GenAI's model builder: sizewise/measure/ortgenai.py
        if loaded.task != "causal-lm" or loaded.is_onnx:
            raise ConfigError(f"ONNX Runtime GenAI runs causal language models; '{loaded.reference}' is a "
                              f"{loaded.task} model", hint="use --runtime torch or onnxruntime")
        from sizewise.measure.ortgenai import ortgenai_module

        return ortgenai_module(loaded, workdir, config.threads or torch.get_num_threads())
    if runtime == "torch" or loaded.is_onnx:
        if runtime == "torch" and loaded.is_onnx:
            raise ConfigError(f"'{loaded.reference}' is an ONNX file: it runs on onnxruntime only",
                              hint="use --runtime onnxruntime")
        return loaded.module
    from sizewise.models.convert import to_onnx
    from sizewise.models.onnx_module import OnnxModule

    return OnnxModule(to_onnx(loaded, f"{workdir}/model.onnx", seq_len=seq_len))


def measure(loaded: LoadedModel, config: MeasureConfig | None = None, dataset=None,
            progress=None) -> ModelCard:
    """Measure ``loaded``. ``dataset`` (a :class:`~sizewise.data.Dataset`) adds metrics on ``config.split``
    (default: its reported split, test); ``metrics["split"]`` names the split.

    ``progress`` is an optional callable taking a short description of the step about to run.
    """
    import tempfile

    config = config or MeasureConfig()
    step = progress or (lambda _msg: None)
    threads = config.threads or torch.get_num_threads()
    _check_seq_len(loaded, config.seq_len)
    runtime = "onnxruntime" if loaded.is_onnx else config.runtime
    warnings: list[str] = []

    def make_inputs(batch: int) -> dict[str, torch.Tensor]:
        return loaded.example_inputs(batch, config.seq_len)

    inputs = make_inputs(config.batch_size)
    step("checking the inputs")
    _probe(loaded, inputs)
    causal_lm = loaded.task == "causal-lm"
    texts: list[str] | None = None
    split = None
    if dataset is not None:
        split = config.split or dataset.heldout
        if causal_lm:  # perplexity on the split's text; checked and read before any time is spent
            from sizewise.tasks.perplexity import split_texts

            texts = split_texts(dataset, split, config.eval_limit)
        else:
            from sizewise.tasks import check_compatible

            check_compatible(loaded, dataset)

    step("counting parameters and bytes")
    params = count_params(loaded.module)
    exported = runtime == "onnxruntime" and not loaded.is_onnx
    size = None if exported or runtime in LLM_RUNTIMES else measure_size(loaded)
    if params.nonfinite:
        warnings.append(f"{params.nonfinite:,} weights are NaN or Inf: the model is broken, whatever it measures")

    step("counting FLOPs")
    flops: FlopStats | None = None
    if loaded.is_onnx:
        from sizewise.measure.onnx_flops import count_onnx_flops

        flops = count_onnx_flops(loaded.module.path, inputs)
    else:
        flops, by_layer = count_flops(loaded.module, inputs)
        params = replace(params, per_layer=[LayerParams(r.name, r.kind, r.params, r.nonzero, by_layer.get(r.name))
                                            for r in params.per_layer])
    if flops.coverage < 0.95:
        warnings.append(f"only {flops.coverage:.1%} of the arithmetic has a FLOP formula; "
                        f"see flops.uncounted for the rest")

    llm = None
    with tempfile.TemporaryDirectory() as workdir:
        module = _runtime_module(loaded, runtime, config.seq_len, workdir, config)
        if runtime == "llamacpp":  # what is deployed is the GGUF file: its bytes
            from sizewise.measure.llamacpp import gguf_size

            size = gguf_size(module.path)
        if runtime == "ortgenai":  # what is deployed is the built folder: all its files
            from sizewise.measure.ortgenai import folder_size

            size = folder_size(module.path)
        if exported:  # what is deployed on onnxruntime is the exported graph: its bytes and its FLOPs
            from sizewise.measure.onnx_flops import count_onnx_flops
            from sizewise.measure.size import onnx_size

            size = onnx_size(module.path)
            flops = count_onnx_flops(module.path, inputs)
        step(f"timing on {runtime} with {threads} thread(s)")
        latency = measure_latency(module, make_inputs, batch_size=config.batch_size, threads=threads,
                                  runtime=runtime, min_seconds=config.latency_seconds,
                                  # llama-cpp-python evaluates one sequence at a time: a batch is a loop over rows;
                                  # ORT GenAI's generator is measured at batch 1 (below)
                                  sweep=(config.batch_size,) if runtime in LLM_RUNTIMES else config.throughput_sweep)
        if machine_busy(latency.other_load_cores, threads):
            warnings.append(f"the machine was busy: other processes used {latency.other_load_cores:.1f} cores while "
                            f"timing, so latency is inflated; rerun on an idle machine, or pass --threads to leave "
                            f"their cores free")
        elif latency.noisy:
            warnings.append(f"latency is noisy: p90 is {latency.spread:.0%} above the median; close other work "
                            f"or pass --threads to leave a core free")
        step("estimating energy")
        energy = measure_energy(lambda: module(**inputs), latency, config.energy)
        carbon = carbon_for(energy, config.energy)
        memory = None
        if config.measure_memory:
            step("measuring peak memory in a child process")
            memory = measure_peak_memory(module, inputs, threads)
        if causal_lm and runtime == "llamacpp":
            from sizewise.measure.llamacpp import measure_llm_llamacpp

            llm = measure_llm_llamacpp(loaded, module, config.llm, threads=threads, energy=config.energy,
                                       texts=texts, split=split, progress=step)
        if causal_lm and runtime == "ortgenai":
            from sizewise.measure.ortgenai import measure_llm_ortgenai

            llm = measure_llm_ortgenai(loaded, module, config.llm, threads=threads, energy=config.energy,
                                       texts=texts, split=split, progress=step)

    if causal_lm and runtime in LLM_RUNTIMES:
        warnings += _llm_warnings(llm)
        kv = llm.generation[0].kv_cache
        memory = replace(memory or MemoryStats(None, "not measured (--no-memory)"), kv_cache_bytes=kv.bytes,
                         kv_cache_context_tokens=kv.context_tokens, weights_bytes=llm.weights_bytes)
    elif causal_lm and runtime == "torch":
        from sizewise.measure.llm import measure_llm

        llm = measure_llm(loaded, config.llm, threads=threads, energy=config.energy, texts=texts, split=split,
                          progress=step)
        warnings += _llm_warnings(llm)
        kv = llm.generation[0].kv_cache if llm.generation else None
        if kv is not None:  # the first thing a person sizing an LLM asks: weights + cache, in the memory section
            memory = replace(memory or MemoryStats(None, "not measured (--no-memory)"), kv_cache_bytes=kv.bytes,
                             kv_cache_context_tokens=kv.context_tokens, weights_bytes=llm.weights_bytes)
    elif causal_lm:
        warnings.append(f"tokens/s, the KV cache and perplexity are measured on torch, llamacpp and ortgenai, not on "
                        f"{runtime}; measure with --runtime torch (or llamacpp, ortgenai) for them")

    metrics: dict[str, float] = {}
    if llm is not None and llm.perplexity is not None:
        p = llm.perplexity
        metrics = {"perplexity": p.token_perplexity, "word_perplexity": p.word_perplexity,
                   "bits_per_byte": p.bits_per_byte, "examples": float(p.texts), "split": split}
    elif dataset is not None and not causal_lm:
        from sizewise.tasks import evaluate

        step(f"evaluating on {dataset.name} ({split} split)")
        metrics = {**evaluate(loaded, dataset, split=split, limit=config.eval_limit), "split": split}
    return ModelCard(model=loaded.reference, params=params, size=size, flops=flops, latency=latency, memory=memory,
                     energy=energy, carbon=carbon, metrics=metrics, environment=describe_environment(threads),
                     warnings=warnings, llm=llm, notes=list(loaded.metadata.get("notes") or []))


def _llm_warnings(llm) -> list[str]:
    out = []
    if llm.perplexity is not None and llm.perplexity.truncated:
        p = llm.perplexity
        out.append(f"perplexity is on the first {p.text_tokens:,} tokens of the {p.split} split only (max_tokens "
                   f"{p.max_tokens:,}), not the whole split: compare it only with numbers cut the same way")
    busy = [f"generation at batch {g.batch_size}" for g in llm.generation
            if machine_busy(g.other_load_cores, llm.threads)]
    if llm.bandwidth and machine_busy(llm.bandwidth.other_load_cores, llm.threads):
        busy.append("the read-bandwidth measurement")
    if busy:
        out.append(f"other processes used the CPU while sizewise timed {' and '.join(busy)}: tokens/s, or the "
                   f"bandwidth behind the roofline, are too low; rerun on an idle machine")
    return out
