"""`sizewise measure` on the zoo and MiniLM, and FLOP/param counts beside fvcore, ptflops and thop on the same inputs.

    .venv/bin/python benchmarks/measure.py        # writes benchmarks/results/measure.md and measure.json

Three parts, all in one run on one machine:

1. ``sizewise.measure`` at batch 1 (MiniLM at seq-len 128) with the default latency settings and memory measurement
   on, for every zoo model and MiniLM, and MiniLM once more on onnxruntime; then torch eager vs onnxruntime timed
   call by call, interleaved, so their ratio does not depend on what the shared machine was doing between the two
   ``measure`` calls.
2. FLOPs and parameters from fvcore, ptflops (both backends), thop, torch's own ``FlopCounterMode`` and sizewise's ONNX
   graph counter on the exported graph, each fed exactly the tensors ``sizewise.measure`` uses. Those tools print
   multiply-accumulates (fvcore calls them "flops"); the tables show the raw number and 2 x that number as FLOP.
3. Every disagreement reconciled: each tool's raw number is rebuilt, to the unit, from terms measured on the model
   itself during one forward pass (matmul/conv MACs, bias adds, norm and activation elements, attention MACs), using
   the rule that tool applies; a non-zero residual would mean the explanation is wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import math
import os
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, MachineLoad, log, machine, md_table, now_utc, ratio_summary, time_modules  # noqa: E402
from _common import versions as _versions  # noqa: E402

SEQ_LEN = 128
AB_PAIRS = 40  # interleaved torch/onnxruntime call pairs (or AB_SECONDS, whichever comes first)
AB_SECONDS = 20.0
# Counted by hand from the architectures (see the result file): FLOPs of one forward pass at batch 1, and parameters.
HAND_FLOPS = {"lenet-300-100": 532_400, "lenet5": 4_586_000, "resnet20": 81_102_080, "minilm": 2_869_198_848}
HAND_PARAMS = {"resnet20": 269_722, "resnet56": 853_018, "minilm": 22_713_216}
VERSIONED = ("sizewise", "torch", "transformers", "onnxruntime", "onnx", "fvcore", "ptflops", "thop", "numpy")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160] if text else ''}"


def _load(name: str):
    import sizewise

    return sizewise.load(name if name == "minilm" else f"zoo:{name}")


def _seq(name: str) -> int | None:
    return SEQ_LEN if name == "minilm" else None


# --------------------------------------------------------------------------------------------------- 1. measure


def measure_cards(names: list[str]) -> list[dict[str, Any]]:
    import sizewise
    from sizewise.measure.latency import measure_latency

    rows = []
    plan = [(n, "torch") for n in names] + [("minilm", "onnxruntime")]
    for name, runtime in plan:
        log(f"sizewise.measure {name} on {runtime}")
        loaded = _load(name)
        config = sizewise.MeasureConfig(batch_size=1, seq_len=_seq(name), runtime=runtime)
        with MachineLoad() as load:
            card = sizewise.measure(loaded, config)
        row = {"model": name, "runtime": runtime, "card": card, "seconds": load.wall_s, "load": load.as_dict()}
        if runtime == "torch":  # contention check: the same timer at 1 thread, right after
            with MachineLoad() as load1:
                one = measure_latency(loaded.module, lambda b: loaded.example_inputs(b, _seq(name)), batch_size=1,
                                      threads=1, runtime="torch", sweep=(1,))
            row["one_thread"] = {"p50_ms": one.p50_ms, "p90_ms": one.p90_ms, "ci95_median_ms": one.ci95_median_ms,
                                 "runs": one.runs, "noisy": one.noisy, "load": load1.as_dict()}
        rows.append(row)
    return rows


def interleaved_torch_vs_ort(thread_counts: list[int]) -> list[dict[str, Any]]:
    """Time torch eager and onnxruntime call by call (ABBA order) on the same inputs; ratio per pair."""
    import numpy as np
    import torch

    from sizewise.measure.latency import torch_threads
    from sizewise.models.convert import to_onnx
    from sizewise.models.onnx_module import OnnxModule

    loaded = _load("minilm")
    inputs = loaded.example_inputs(1, SEQ_LEN)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        ort = OnnxModule(to_onnx(loaded, Path(tmp) / "model.onnx", seq_len=SEQ_LEN))
        onnx_bytes = ort.file_bytes()
        for threads in thread_counts:
            log(f"torch eager vs onnxruntime, interleaved, {threads} thread(s)")
            ort.set_threads(threads)
            with MachineLoad() as load:
                with torch_threads(threads), torch.inference_mode():
                    eager = loaded.module(**inputs).last_hidden_state
                    max_abs_diff = float((eager - ort(**inputs)).abs().max())
                times, _ = time_modules({"torch": loaded.module, "ort": ort}, inputs, threads=threads,
                                        rounds=AB_PAIRS, seconds=AB_SECONDS, min_rounds=20, load=load)
            a, b = times["torch"], times["ort"]
            median, ci = ratio_summary(a, b)
            results.append({
                "threads": threads, "pairs": len(a), "torch_p50_ms": float(np.median(a)),
                "ort_p50_ms": float(np.median(b)), "ratio_median": median, "ratio_ci95": ci,
                "max_abs_diff_last_hidden_state": max_abs_diff, "onnx_file_bytes": onnx_bytes,
                "load": load.as_dict(),
                "torch_ms": [round(x, 3) for x in a.tolist()], "ort_ms": [round(x, 3) for x in b.tolist()]})
    return results


# ------------------------------------------------------------------------------------------ 2. other counters


def _positional(module, names: list[str]):
    """fvcore and thop call ``model(*inputs)``: adapt the keyword-input models. Both outputs of a BertModel are
    returned, so a tracing tool cannot prune the pooler that every other counter sees run."""
    from torch import nn

    class Positional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = module

        def forward(self, *args):
            out = self.module(**dict(zip(names, args, strict=True)))
            if hasattr(out, "last_hidden_state"):
                return (out.last_hidden_state,) + ((out.pooler_output,) if out.pooler_output is not None else ())
            return out

    return Positional().eval()


def ledger(module, inputs: dict) -> dict[str, Any]:
    """One forward pass recording the quantities every counter's rule is made of, from the model's own shapes."""
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.overrides import TorchFunctionMode

    terms: Counter = Counter()
    per_module: dict[str, int] = {}

    def hook(name):
        def on_forward(m, args, out):
            x = args[0]
            if isinstance(m, nn.Linear):
                mac = out.numel() * m.in_features
                terms["linear_mac"] += mac
                per_module[name] = per_module.get(name, 0) + mac
                terms["bias"] += out.numel() if m.bias is not None else 0
            elif isinstance(m, nn.modules.conv._ConvNd):
                mac = out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)
                terms["conv_mac"] += mac
                per_module[name] = per_module.get(name, 0) + mac
                terms["bias"] += out.numel() if m.bias is not None else 0
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                terms["bn_affine" if m.affine else "bn_plain"] += x.numel()
            elif isinstance(m, nn.LayerNorm):
                terms["ln_affine" if m.elementwise_affine else "ln_plain"] += x.numel()
        return on_forward

    class Calls(TorchFunctionMode):  # sees the top-level torch function a model calls, and through which name
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            where = getattr(func, "__module__", "") or ""
            name = getattr(func, "__name__", "")
            if func is F.scaled_dot_product_attention:
                q, k, v = (list(args) + [kwargs.get(n) for n in ("query", "key", "value")])[:3]
                terms["sdpa_mac"] += q.shape[:-1].numel() * k.shape[-2] * (q.shape[-1] + v.shape[-1])
                terms["sdpa_calls"] += 1
            elif func is F.relu:
                terms["F.relu_out"] += out.numel()
            elif func is torch.relu:
                terms["torch.relu_out"] += out.numel()
            elif func is F.gelu:  # F.gelu is a C builtin: called via the attribute or a stored reference, alike
                terms["gelu_out"] += out.numel()
            elif where == "torch.nn.functional" and name in ("max_pool2d", "adaptive_avg_pool2d"):
                terms[f"F.{name}_in"] += args[0].numel()
            elif func is torch.max_pool2d:
                terms["torch.max_pool2d_in"] += args[0].numel()
            return out

    handles = [m.register_forward_hook(hook(n)) for n, m in module.named_modules()
               if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.LayerNorm))]
    try:
        with torch.no_grad(), Calls():
            module(**inputs)
    finally:
        for h in handles:
            h.remove()
    embedding = {id(p): p.numel() for m in module.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    terms["embedding_params"] = sum(embedding.values())
    terms["pooler_mac"] = sum(v for k, v in per_module.items() if k.split(".")[0] == "pooler")
    terms["mm_conv_mac"] = terms["linear_mac"] + terms["conv_mac"]
    return dict(terms)


def _quiet():
    stack = contextlib.ExitStack()
    buf = io.StringIO()
    stack.enter_context(contextlib.redirect_stdout(buf))
    stack.enter_context(contextlib.redirect_stderr(buf))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack, buf


def run_counters(name: str, module, inputs: dict) -> list[dict[str, Any]]:
    """Each tool on a deep copy (ptflops and thop leave attributes/buffers behind), same input tensors."""
    import torch

    names, args = list(inputs), tuple(inputs.values())
    results = []

    def attempt(tool: str, unit: str, fn) -> None:
        start = time.perf_counter()
        stack, buf = _quiet()
        entry: dict[str, Any] = {"tool": tool, "unit": unit}
        try:
            with stack:
                entry.update(fn())
        except Exception as exc:  # a crash is a finding: record it
            entry["error"] = _one_line(exc)
        if entry.get("raw") is None and "error" not in entry:
            # ptflops catches its own exceptions, prints them and returns None
            lines = [ln for ln in buf.getvalue().splitlines() if "Error" in ln or "exception" in ln.lower()]
            entry["error"] = (lines[-1] if lines else "returned None")[:200]
        entry["seconds"] = time.perf_counter() - start
        results.append(entry)

    def fvcore():
        from fvcore.nn import FlopCountAnalysis, parameter_count

        model = _positional(copy.deepcopy(module), names)
        fa = FlopCountAnalysis(model, args)
        fa.unsupported_ops_warnings(False)
        fa.uncalled_modules_warnings(False)
        total = fa.total()
        return {"raw": total, "mac": total, "params": parameter_count(model)[""],
                "by_operator": dict(fa.by_operator()), "skipped_ops": dict(fa.unsupported_ops())}

    def ptflops(backend: str):
        def run():
            from ptflops import get_model_complexity_info

            model = copy.deepcopy(module)
            macs, params = get_model_complexity_info(
                model, tuple(args[0].shape[1:]), as_strings=False, print_per_layer_stat=False,
                input_constructor=lambda _res: dict(inputs), backend=backend)
            return {"raw": macs, "mac": macs, "params": params}
        return run

    def thop():
        import thop as thop_lib

        model = _positional(copy.deepcopy(module), names)
        macs, params = thop_lib.profile(model, inputs=args, verbose=False)
        leftover = [k for k in model.module.state_dict() if k.endswith(("total_ops", "total_params"))]
        return {"raw": macs, "mac": int(macs), "params": int(params), "leftover_buffers": len(leftover)}

    def torch_flop_counter():
        from torch.utils.flop_counter import FlopCounterMode

        model = copy.deepcopy(module)
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(**inputs)
        return {"raw": counter.get_total_flops(), "flop": counter.get_total_flops(),
                "by_operator": {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}}

    def onnx_graph():
        from sizewise.measure.onnx_flops import count_onnx_flops
        from sizewise.models.convert import to_onnx

        loaded = _load(name)
        with tempfile.TemporaryDirectory() as tmp:
            path = to_onnx(loaded, Path(tmp) / "model.onnx", seq_len=_seq(name))
            stats = count_onnx_flops(str(path), inputs)
        return {"raw": stats.total, "flop": stats.total, "by_operator": {o.op: o.flops for o in stats.by_op}}

    attempt("fvcore", "fvcore \"flops\" (= MACs)", fvcore)
    attempt("ptflops (pytorch)", "MACs", ptflops("pytorch"))
    attempt("ptflops (aten)", "MACs", ptflops("aten"))
    attempt("thop", "MACs", thop)
    attempt("torch FlopCounterMode", "FLOPs", torch_flop_counter)
    attempt("sizewise, exported ONNX graph", "FLOPs", onnx_graph)
    for entry in results:
        if "mac" in entry and entry["mac"] is not None:
            entry["flop"] = 2 * int(entry["mac"])
    return results


# -------------------------------------------------------------------------------------------- 3. reconcile

# What each counter's raw number should be, as (label, value) terms computed from the ledger; "missed" is what it
# leaves out of the matmul/conv/attention arithmetic sizewise counts (in MACs).

def expected_terms(tool: str, t: dict[str, int]) -> tuple[list[tuple[str, int]], int, list[str]]:
    g = t.get
    mm = ("matmul/conv MACs", t["mm_conv_mac"])
    attn = g("sdpa_mac", 0)
    if tool == "sizewise":
        return [("2 x matmul/conv MACs", 2 * t["mm_conv_mac"]), ("2 x attention QK^T+AV MACs", 2 * attn)], 0, []
    if tool == "fvcore":
        terms = [mm, ("BatchNorm 2/elem", 2 * g("bn_affine", 0) + g("bn_plain", 0)),
                 ("LayerNorm 5/elem", 5 * g("ln_affine", 0) + 4 * g("ln_plain", 0)),
                 ("adaptive_avg_pool2d 1/input elem", g("F.adaptive_avg_pool2d_in", 0))]
        notes = ["skips aten::scaled_dot_product_attention (no handle)"] if attn else []
        return terms, attn, notes
    if tool == "ptflops (pytorch)":
        terms = [mm, ("bias adds", g("bias", 0)), ("BatchNorm 2/elem", 2 * g("bn_affine", 0) + g("bn_plain", 0)),
                 ("LayerNorm 1/elem", g("ln_affine", 0) + g("ln_plain", 0)), ("F.relu 1/out elem", g("F.relu_out", 0)),
                 ("F.max_pool2d 1/input elem", g("F.max_pool2d_in", 0)),
                 ("F.adaptive_avg_pool2d 1/input elem", g("F.adaptive_avg_pool2d_in", 0))]
        notes = []
        if g("torch.relu_out") or g("torch.max_pool2d_in"):
            notes.append("torch.relu/torch.max_pool2d not seen (only F.* is patched)")
        if g("gelu_out"):
            notes.append(f"GELU {g('gelu_out'):,} elems not seen (transformers keeps a reference to F.gelu)")
        if attn:
            notes.append("F.scaled_dot_product_attention is not patched")
        return terms, attn, notes
    if tool == "ptflops (aten)":
        notes = ["aten::_scaled_dot_product_flash_attention_for_cpu not in its op table"] if attn else []
        return [mm, ("bias adds", g("bias", 0))], attn, notes
    if tool == "thop":
        terms = [mm, ("BatchNorm 4/elem", 4 * g("bn_affine", 0) + 2 * g("bn_plain", 0)),
                 ("LayerNorm 4/elem", 4 * g("ln_affine", 0) + 2 * g("ln_plain", 0))]
        notes = ["hooks nn.Module types only: BertSelfAttention has no rule and its SDPA call is a function"] if attn else []
        return terms, attn, notes
    if tool == "torch FlopCounterMode":
        notes = ["aten::_scaled_dot_product_flash_attention_for_cpu has no formula (counted 0)"] if attn else []
        return [("2 x matmul/conv MACs", 2 * t["mm_conv_mac"])], attn, notes
    if tool == "sizewise, exported ONNX graph":
        terms = [("2 x matmul/conv MACs", 2 * t["mm_conv_mac"]), ("2 x attention MACs", 2 * attn)]
        notes = []
        if g("pooler_mac"):
            terms.append(("- 2 x pooler MACs (pruned: the export returns last_hidden_state)", -2 * g("pooler_mac")))
        return terms, 0, notes
    raise KeyError(tool)


def reconcile(tool: str, raw: float | int | None, t: dict[str, int]) -> dict[str, Any]:
    terms, missed, notes = expected_terms(tool, t)
    expected = sum(v for _, v in terms)
    out = {"terms": [(k, v) for k, v in terms if v], "expected": expected, "missed_attention_mac": missed,
           "notes": notes}
    if raw is not None:
        out["residual"] = int(round(float(raw))) - expected
    return out


# -------------------------------------------------------------------------------------------- report


def _ms(x: float) -> str:
    return f"{x:,.2f}" if x < 100 else f"{x:,.1f}"


def _bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n / 2**10:,.1f} KiB"


def threads_of(cards) -> int:
    return cards[0]["card"].latency.threads


def render(meta, cards, ab, counts) -> str:
    env = cards[0]["card"].environment
    flags = env.get("cpu_flags", {})
    flag_text = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in flags.items())
    int8_dot = any(flags.get(k) for k in ("avx512_vnni", "avx_vnni", "amx_int8"))
    energy0 = cards[0]["card"].energy
    noisy = [f"{r['model']} ({r['runtime']})" for r in cards if r["card"].latency.noisy]
    others = [r["load"]["others_cores"] for r in cards]
    has_load = getattr(cards[0]["card"].latency, "other_load_cores", None) is not None
    L = [
        "# `sizewise measure`: the zoo and MiniLM, and FLOP/param counts beside fvcore, ptflops and thop",
        "",
        f"- date: {meta['date']}",
        f"- machine: {meta['machine']}; {env.get('physical_cores')} physical / {env.get('logical_cores')} logical "
        f"cores, virtual machine: {'yes' if env.get('virtual_machine') else 'no'}, "
        f"RAPL energy counter: {'yes' if env.get('rapl') else 'no'}",
        f"- CPU features (from /proc/cpuinfo): {flag_text}. " + (
            "This CPU has int8 dot-product instructions (VNNI and/or AMX), so int8 speed-ups measured here do not "
            "transfer to AVX2-only machines, or the reverse." if int8_dot else
            "This CPU has AVX2 (and FMA) but no AVX-512 and no VNNI (neither AVX512-VNNI nor AVX-VNNI) or AMX: no "
            "int8 dot-product instructions, so int8 speed-ups measured here do not transfer to VNNI/AMX machines, or "
            "the reverse." if not flags.get("avx512f") else
            "This CPU has AVX-512 but no VNNI or AMX: no int8 dot-product instructions, so int8 speed-ups measured "
            "here do not transfer to VNNI/AMX machines, or the reverse."),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        f"- produced by: `{meta['command']}` (run from the repository root; {meta['seconds']:.0f} s in all)",
        f"- load average (1 min) before / after the run: {meta['load_before']:.2f} / {meta['load_after']:.2f} on "
        f"{os.cpu_count()} cores",
        "",
        "**Latency on this shared 2-core VM is noisy**: other work runs beside it (other processes used "
        f"{min(others):.2f} to {max(others):.2f} of the 2 cores during the `measure()` calls of this run), so the "
        "latencies, and the energy estimated from them, are inflated. sizewise flags a row as noisy when p90 is more "
        "than 25% above the median" + (", or when other processes used more than 0.3 cores while it timed "
        "(`latency.other_load_cores`)" if has_load else "") + f". Flagged in this run: "
        f"{', '.join(noisy) if noisy else 'none'}. The contention check under the table measures other processes' "
        "CPU use independently and times each torch model again at 1 thread. Compare latencies only within this "
        "file.",
        "",
        f"**Energy is an estimate** (method `{energy0.method}`): there is no RAPL/NVML counter on this VM, so sizewise "
        f"uses its stated power model, {energy0.assumptions.get('model')}, with "
        f"{energy0.assumptions.get('watts_per_core')} W per busy core x {energy0.assumptions.get('threads')} threads "
        f"= {energy0.power_w:g} W and PUE {energy0.pue:g} (source: {energy0.assumptions.get('watts_per_core_source')})."
        " Because it multiplies by the *mean* latency, a busy machine inflates it along with the mean.",
        "",
        "## 1. `sizewise.measure` at batch 1 (MiniLM: seq-len 128)",
        "",
        "`sizewise.measure(loaded, sizewise.MeasureConfig(batch_size=1, seq_len=...))`, default latency settings "
        "(3 warm-up calls, every call timed, at least 20 calls and 1 s; throughput sweep 1/8/32), memory measured in a "
        "child process. The last row is the same MiniLM with `runtime=\"onnxruntime\"`.",
        "",
    ]
    rows = []
    for r in cards:
        c = r["card"]
        lat, mem, en = c.latency, c.memory, c.energy
        lo, hi = lat.ci95_median_ms
        rows.append([r["model"], lat.runtime, f"{c.params.total:,}", f"{c.size.disk_bytes:,}", f"{c.flops.total:,}",
                     f"{c.flops.coverage:.2%}", _ms(lat.p50_ms), _ms(lat.p90_ms), f"{_ms(lo)} - {_ms(hi)}", lat.runs,
                     lat.threads, "**yes**" if lat.noisy else "no",
                     _bytes(mem.peak_rss_delta_bytes) if mem else "n/a", f"{en.joules_per_1k:,.1f} ({en.method})",
                     f"{r['seconds']:.1f}"])
    L += md_table(rows, "llrrrrrrlrrlrlr", columns=[
        "model", "runtime", "params", "disk bytes", "FLOPs", "coverage", "p50 ms", "p90 ms", "95% CI of median (ms)",
        "runs", "threads", "noisy", "peak RSS delta", "energy J/1k inferences", "measure() s"])
    libs = env.get("libraries", {})
    L += [
        "",
        f"Environment (identical on every card): {env.get('cpu')}, {env.get('threads')} threads, "
        f"{env.get('physical_cores')} physical / {env.get('logical_cores')} logical cores, "
        f"{env.get('memory_bytes', 0) / 2**30:.1f} GiB, {env.get('os')}, Python {env.get('python')}, "
        f"VM {'yes' if env.get('virtual_machine') else 'no'}, RAPL {'yes' if env.get('rapl') else 'no'}, GPU "
        f"{env.get('gpu') or 'none'}; " + ", ".join(f"{k} {v}" for k, v in libs.items()) + ".",
        "",
        "Disk bytes are the artifact sizewise saves (`" + cards[-1]["card"].size.artifact + "` for MiniLM, "
        "`model.safetensors` for the zoo); the onnxruntime card reports the same safetensors bytes, not the `.onnx` "
        f"file an onnxruntime deployment would ship ({ab[0]['onnx_file_bytes']:,} bytes). Peak RSS delta is the child process's high-water mark during 3 inferences "
        "minus its resident size before them. Coverage is counted FLOPs / (counted + 1 per output element of every "
        "arithmetic op without a formula): BatchNorm, ReLU, residual adds, LayerNorm, GELU, pooling.",
        "",
    ]
    # ---- contention
    L += [
        "### Was the machine shared while each row was timed?",
        "",
        "Other processes' CPU use is measured here from `/proc/stat` over each whole `measure()` call (all CPU time "
        "of the machine minus this process and its children), in cores out of "
        f"{os.cpu_count()}" + ("; sizewise's own figure, taken over its timed calls only, is the card's "
        "`latency.other_load_cores`" if has_load else "") + ". Right after each torch card, the same sizewise timer "
        "(`measure_latency`, 1 s, no sweep) runs the model at 1 thread: on an idle machine 2 threads are never much "
        "slower than 1, so a card slower than its 1-thread check means its threads were fighting other processes "
        "for the cores.",
        "",
    ]
    slow, rows = [], []
    for r in cards:
        lat, load = r["card"].latency, r["load"]
        own = getattr(lat, "other_load_cores", None)
        one = r.get("one_thread")
        if one:
            ratio = lat.p50_ms / one["p50_ms"]
            if ratio > 1.5:
                slow.append((r["model"], ratio, lat.noisy, lat.spread > 0.25))
            check = [f"{_ms(one['p50_ms'])} ({_ms(one['ci95_median_ms'][0])} - {_ms(one['ci95_median_ms'][1])})",
                     f"{one['load']['others_cores']:.2f}", "yes" if one["noisy"] else "no", f"{ratio:.2f}x"]
        else:
            check = ["-"] * 4
        rows.append([r["model"], lat.runtime, f"{load['others_cores']:.2f}", "-" if own is None else f"{own:.2f}",
                     f"{load['steal_cores']:.2f}", f"{_ms(lat.p50_ms)} ({lat.threads})", f"{lat.spread:.1%}", *check])
    L += md_table(rows, "llrrrrrrrlr", columns=[
        "model", "runtime", "other processes during measure() (cores)", "card `other_load_cores`",
        "hypervisor steal (cores)", "card p50 ms (threads)", "spread (p90-p50)/p50",
        "1-thread p50 ms right after (95% CI)", "other processes then (cores)", "1-thread flagged noisy",
        "card / 1-thread"])
    if slow:
        flagged = sum(1 for s_ in slow if s_[2])
        by_spread = sum(1 for s_ in slow if s_[3])
        L += ["", f"**{len(slow)} of {len(cards) - 1} torch cards ran more than 1.5x slower at {threads_of(cards)} "
              f"threads than at 1** ({', '.join(f'{s_[0]} {s_[1]:.1f}x' for s_ in slow)}). When another process "
              "holds one of the two cores, torch's OpenMP threads wait at every parallel region for the descheduled "
              "one, so every call is slow by about the same amount: the median and its interval move, the p90/p50 "
              f"spread need not. By the spread alone {by_spread} of these {len(slow)} would be flagged; sizewise "
              f"flagged {flagged}" + (", thanks to its other-process load measurement" if has_load and
                                      flagged > by_spread else "") + ". These p50s measure the contention, not the "
              "model; the 1-thread column is the better estimate of the model's own latency on this VM."]
        if has_load and any(r.get("one_thread", {}).get("noisy") for r in cards):
            ones = [r["one_thread"]["load"]["others_cores"] for r in cards if r.get("one_thread")]
            L += ["", f"The 1-thread checks are flagged noisy too (other processes then: {min(ones):.2f} to "
                  f"{max(ones):.2f} cores). Above 1.0 that is fair, since even one thread then shares a core; but "
                  "sizewise's busy-machine rule is a fixed 0.3 cores whatever the thread count, so a 1-thread "
                  "measurement beside a process that takes exactly one of the two cores, which has a core to itself, "
                  "is still flagged \"inflated\", and following the warning's own advice (\"pass --threads to leave "
                  "their cores free\") does not clear it."]
    else:
        L += ["", "No torch card was more than 1.5x slower than its 1-thread check: the thread count did not "
              "collide with other work in this run."]
    L.append("")
    # ---- torch vs onnxruntime
    torch_row = next(r for r in cards if r["model"] == "minilm" and r["runtime"] == "torch")["card"].latency
    ort_row = next(r for r in cards if r["runtime"] == "onnxruntime")["card"].latency
    ratio = torch_row.p50_ms / ort_row.p50_ms
    cons = (torch_row.ci95_median_ms[0] / ort_row.ci95_median_ms[1],
            torch_row.ci95_median_ms[1] / ort_row.ci95_median_ms[0])
    L += [
        "### MiniLM: torch eager vs onnxruntime, same run",
        "",
    ]
    rows = [["the two `measure()` cards above (run one after the other)", torch_row.threads, _ms(torch_row.p50_ms),
             _ms(ort_row.p50_ms), f"{ratio:.2f}x",
             f"{cons[0]:.2f}x - {cons[1]:.2f}x (conservative: from the two medians' CIs)",
             " / ".join(f"{r['load']['others_cores']:.2f}" for r in cards if r["model"] == "minilm")]]
    rows += [[f"interleaved, {a['pairs']} call pairs in ABBA order, same inputs", a["threads"], _ms(a["torch_p50_ms"]),
              _ms(a["ort_p50_ms"]), f"{a['ratio_median']:.2f}x (median of per-pair ratios)",
              f"{a['ratio_ci95'][0]:.2f}x - {a['ratio_ci95'][1]:.2f}x (order statistics)",
              f"{a['load']['others_cores']:.2f}"] for a in ab]
    L += md_table(rows, "lrrrrlr", columns=["comparison", "threads", "torch eager p50 ms", "onnxruntime p50 ms",
                                            "torch / onnxruntime", "95% interval", "other processes (cores)"])
    L += [
        "",
        f"Both run the same weights on the same 1 x {SEQ_LEN} inputs; the largest absolute difference of "
        f"`last_hidden_state` between them is {ab[0]['max_abs_diff_last_hidden_state']:.2e}. The interleaved rows are "
        "the ones to quote: a load change on the shared machine between the two `measure()` calls moves the first "
        "row, not them. " + (
            "Other processes held about one core throughout, so the 2-thread rows measure how each runtime's thread "
            "pool copes with a stolen core (onnxruntime's far better than torch's OpenMP) and the 1-thread row is "
            "the runtime-vs-runtime comparison. " if min(a["load"]["others_cores"] for a in ab) > 0.5 else "")
        + "The ONNX graph (exported by `sizewise.models.convert.to_onnx`, "
        f"TorchScript exporter, opset 17, {ab[0]['onnx_file_bytes']:,} bytes) returns `last_hidden_state` only, so "
        "it skips the pooler (0.3 MFLOP, 0.01% of the work) that eager BertModel also runs.",
        "",
    ]
    # ---- references
    by_model = {r["model"]: r["card"] for r in cards if r["runtime"] == "torch"}
    hand = [(m, "FLOPs", ref, by_model[m].flops.total) for m, ref in HAND_FLOPS.items()]
    hand += [(m, "params", ref, by_model[m].params.total) for m, ref in HAND_PARAMS.items()]
    L += ["## 2. sizewise against the hand-derived counts", ""]
    L += md_table([[m, q, f"{ref:,}", f"{got:,}", "yes" if got == ref else "**NO**"] for m, q, ref, got in hand],
                  "llrrl", columns=["model", "quantity", "hand-derived", "sizewise", "match"])
    L += [
        "",
        "MiniLM by hand, 6 layers x 128 tokens: Q, K, V, O projections 4 x 384 x 384 MACs and the MLP 2 x 384 x 1536 "
        "MACs per token = 1,358,954,496 MACs; the pooler (one token) 384 x 384 = 147,456 MACs; attention QK^T and AV "
        "2 x 128 x 128 x 384 MACs per layer = 75,497,472 MACs; total 1,434,599,424 MACs = 2,869,198,848 FLOPs.",
        "",
    ]
    # ---- counters
    L += [
        "## 3. FLOPs and parameters from other counters, same models, same input tensors",
        "",
        "Every tool is given the tensors `sizewise.measure` used (zoo: the seeded random image batch of 1; MiniLM: the "
        "tokenized `input_ids`, `token_type_ids`, `attention_mask` of shape 1 x 128, all ones in the mask). fvcore and "
        "thop call `model(*inputs)`, so they get a thin `nn.Module` taking positional tensors and returning "
        "`(last_hidden_state, pooler_output)`; ptflops gets the model itself through `input_constructor`. Each tool "
        "runs on its own deep copy of the model. **raw** is exactly what the tool returned; fvcore, ptflops and thop "
        "count multiply-accumulates (fvcore's docs: \"We count one fused multiply-add as one flop\"), so the FLOP "
        "column is 2 x raw for them; torch's FlopCounterMode and sizewise already report FLOP = 2 x MAC.",
        "",
    ]
    for name, info in counts.items():
        card = by_model[name]
        rows = []
        for e in info["tools"]:
            if "error" in e:
                rows.append([e["tool"], f"crashed: `{e['error']}`", e["unit"], "-", "-", "-", "-", f"{e['seconds']:.1f}"])
                continue
            params = e.get("params")
            rows.append([e["tool"], repr(e["raw"]), e["unit"], f"{e['flop']:,}",
                         f"{(e['flop'] - card.flops.total) / card.flops.total:+.3%}",
                         "-" if params is None else f"{params:,}",
                         "-" if params is None else f"{(params - card.params.total) / card.params.total:+.2%}",
                         f"{e['seconds']:.1f}"])
        L += [f"### {name} (sizewise: {card.flops.total:,} FLOPs, {card.params.total:,} params)", ""]
        L += md_table(rows, "lrlrrrrr", columns=["counter", "raw (as returned)", "unit it reports", "FLOP",
                                                 "FLOP vs sizewise", "params", "params vs sizewise", "s"])
        L.append("")
    # ---- why
    L += [
        "## 4. Where and why they disagree",
        "",
        "Each raw number below is rebuilt from terms measured on the model during one forward pass (forward hooks on "
        "Linear/Conv/BatchNorm/LayerNorm for shapes, and a `TorchFunctionMode` that records which function the model "
        "called: `F.relu` vs `torch.relu`, `F.max_pool2d` vs `torch.max_pool2d`, and the q/k/v shapes of every "
        "`scaled_dot_product_attention`), using the rule the tool applies (read from its source). Residual = raw - "
        "rebuilt; 0 means the explanation accounts for every unit. The last column adds back the attention MACs "
        "the tool never saw: 2 x (matmul/conv MACs it counted + attention it missed) = sizewise's total in every "
        "row, i.e. on matmul/conv arithmetic all tools agree with sizewise exactly; they differ only in what else "
        "they add and in what they cannot see.",
        "",
    ]
    rows = []
    for name, info in counts.items():
        t = info["ledger"]
        total = by_model[name].flops.total
        for e in info["tools"]:
            rec = e.get("reconcile")
            if rec is None:
                continue
            terms = " + ".join(f"{k} {v:,}" for k, v in rec["terms"]).replace("+ -", "- ")
            if rec["notes"]:
                terms += "; " + "; ".join(rec["notes"])
            if e["tool"] in ("sizewise, exported ONNX graph",):
                check = "n/a (a different graph)"
            elif e["tool"] == "sizewise":
                check = "yes" if rec["expected"] == total else f"**no** ({rec['expected']:,})"
            else:
                back = 2 * (t["mm_conv_mac"] + rec["missed_attention_mac"])
                missed = (f" (adds {2 * rec['missed_attention_mac']:,} attention FLOPs)"
                          if rec["missed_attention_mac"] else "")
                check = ("yes" if back == total else f"**no** ({back:,})") + missed
            residual = rec.get("residual")
            rows.append([name, e["tool"], repr(e.get("raw", "crashed")), terms,
                         "-" if residual is None else f"{residual:,}", check])
    L += md_table(rows, "llrlrl", columns=["model", "counter", "raw", "rebuilt from", "residual",
                                           "2 x (matmul/conv MACs + missed attention) = sizewise?"])
    mini = counts.get("minilm", {}).get("ledger", {})
    thop_mini = next((e for e in counts.get("minilm", {}).get("tools", []) if e["tool"] == "thop"), {})
    leftovers = sorted({e.get("leftover_buffers", 0) for info in counts.values() for e in info["tools"]
                        if e["tool"] == "thop"})
    L += [
        "",
        "### The causes, one by one",
        "",
        "1. **MAC vs FLOP (all three tools).** fvcore, ptflops and thop report multiply-accumulates; fvcore names them "
        "\"flops\". Doubling them is required before any comparison: on the LeNets and digits-cnn, fvcore and thop "
        "x 2 equal sizewise to the unit.",
        f"2. **Attention computed by `F.scaled_dot_product_attention` is invisible to every other counter** "
        f"(MiniLM: {mini.get('sdpa_calls', 0)} calls, {mini.get('sdpa_mac', 0):,} MACs = "
        f"{2 * mini.get('sdpa_mac', 0):,} FLOPs = 6 layers x 2 matmuls x 2 x 128 x 128 x 384, "
        f"{2 * mini.get('sdpa_mac', 0) / max(by_model['minilm'].flops.total, 1):.2%} of the model). thop and ptflops' "
        "pytorch backend hook `nn.Module` types and patched `F.*` functions, and transformers' `BertSelfAttention` "
        "hands the product to `sdpa_attention_forward`, which calls `torch.nn.functional.scaled_dot_product_attention`; fvcore's JIT trace sees `aten::scaled_dot_product_attention` and lists it as unsupported; "
        "ptflops' aten backend and torch's own `FlopCounterMode` see the CPU kernel "
        "`aten::_scaled_dot_product_flash_attention_for_cpu`, which neither has a formula for (torch's registry covers "
        "the flash, memory-efficient, cuDNN and flex attention kernels, not this CPU one). sizewise registers torch's `sdpa_flop_count` for the CPU "
        "kernel (`sizewise/measure/flops.py`), which is the whole difference to `FlopCounterMode`. The table above "
        "shows that each tool's matmul MACs plus these missing MACs, doubled, is sizewise's total exactly.",
        "3. **Bias adds counted as MACs (ptflops, both backends).** ptflops adds one per output element of every "
        "Linear/Conv with a bias (`linear_flops_counter_hook`, aten `addmm_flop`/`conv_flop_count(bias=True)`); "
        "sizewise, fvcore, thop and torch count a bias add as part of the output, i.e. not at all. LeNet-5: "
        "15,230 bias adds; resnet20/56 have bias-free convolutions, so only the final Linear's 10.",
        "4. **Normalisation, activation and pooling counted (fvcore, ptflops-pytorch, thop), each with its own rule.** "
        "BatchNorm: fvcore 2 per element in eval mode with affine, ptflops 2 (its hook tests `module.affine`), thop 4 "
        "(`calculate_norm` = 2 per element, doubled again for affine). LayerNorm: fvcore 5 per element "
        "(\"5 is just a rough estimate\"), thop 4, ptflops 1 (it reuses its BatchNorm hook, and LayerNorm has "
        "`elementwise_affine`, not `affine`). ptflops also adds ReLU output elements and pooling *input* elements, "
        "but only for calls through the patched `F.relu`/`F.max_pool2d`/`F.adaptive_avg_pool2d` attributes: LeNet-5 "
        "calls `torch.relu` and `torch.max_pool2d` and gets none, digits-cnn and the ResNets call `F.*` and get them. "
        "fvcore counts `adaptive_avg_pool2d` (1 per input element) but skips `max_pool2d`, `add` and `pad` as "
        "unsupported. sizewise counts none of these as FLOPs (its definition: elementwise ops are not counted) and "
        "lists them instead under `flops.uncounted` with 1 FLOP per output element, which is what its coverage "
        "figure is made of; BatchNorm is foldable into the preceding convolution at inference, and the ONNX export "
        "does fold it (the exported resnet graph has Conv nodes only).",
        "5. **GELU is dropped by ptflops even though it patches `F.gelu`.** transformers' `GELUActivation` stores "
        "`nn.functional.gelu` in `self.act` when the model is built, so ptflops' monkey-patch of the attribute, made "
        f"later, never sees the call ({mini.get('gelu_out', 0):,} elements). A counter that depends on the attribute "
        "lookup at call time undercounts any model that bound the function earlier.",
        f"6. **thop drops the embedding parameters.** thop sums parameters only over modules it has a rule for, and "
        f"has none for `nn.Embedding`: MiniLM {thop_mini.get('params', 0):,} params = 22,713,216 - "
        f"{mini.get('embedding_params', 0):,} (word 30,522 x 384 + position 512 x 384 + token type 2 x 384), "
        "i.e. it misses 52% of the model. fvcore (`parameter_count`) and ptflops (all `requires_grad` parameters) "
        "agree with sizewise on every model.",
        "7. **Embedding lookups and tied weights** cause no disagreement here: no tool counts FLOPs for an embedding "
        "lookup (a gather; fvcore lists `aten::embedding` as unsupported, sizewise as no arithmetic), and none of "
        "these models ties weights (MiniLM is a `BertModel` without an LM head; sizewise's card reports "
        f"`params.tied` = {by_model['minilm'].params.tied}), so no counter has a weight to count twice.",
        "8. **The exported ONNX graph is not the eager graph.** sizewise's own ONNX counter on "
        "`to_onnx(...)` output gives 2 x 147,456 = 294,912 FLOPs less on MiniLM because the export returns "
        "`last_hidden_state` only and the tracer prunes the pooler; on the CNNs it matches, BatchNorm folded away. "
        "The same pruning would hit fvcore (it traces with `torch.jit.trace`) if its wrapper returned only "
        "`last_hidden_state`; that is why the wrapper here returns the pooler output too.",
        "",
        "Side effects observed on the tools (they are why each ran on a deep copy): ptflops binds "
        "`start_flops_count`/`compute_average_flops_cost` methods onto the model; thop.profile registers `total_ops`/"
        "`total_params` buffers on every module and removes them only from modules it had a rule for, leaving "
        f"{', '.join(str(n) for n in leftovers)} extra `state_dict()` keys in the profiled models (depending on the "
        "model), which would break a strict `load_state_dict` of a model saved afterwards. ptflops' pytorch "
        "backend also warns \"No positional inputs found for a module, assuming batch size is 1\" when inputs come "
        "as keywords: it divides its total by a batch counter taken from positional inputs, so at batch > 1 with "
        "keyword inputs it would report the whole batch as one example.",
        "",
        "Full cards, counters and the interleaved timings: `benchmarks/results/measure.json`.",
        "",
    ]
    return "\n".join(L)


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    start = time.perf_counter()
    load_before = os.getloadavg()[0]
    import torch

    import sizewise  # noqa: F401
    from sizewise.models.zoo import ZOO

    names = list(ZOO.names()) + ["minilm"]
    cards = measure_cards(names)
    threads = cards[0]["card"].latency.threads
    ab = interleaved_torch_vs_ort(sorted({threads, 1}, reverse=True))

    counts: dict[str, Any] = {}
    for name in names:
        log(f"other counters on {name}")
        loaded = _load(name)
        inputs = loaded.example_inputs(1, _seq(name))
        card = next(r["card"] for r in cards if r["model"] == name and r["runtime"] == "torch")
        assert card.flops.input_shape == {k: list(v.shape) for k, v in inputs.items()}, "inputs differ from measure()"
        t = ledger(loaded.module, inputs)
        tools = [{"tool": "sizewise", "unit": "FLOPs", "raw": card.flops.total, "flop": card.flops.total,
                  "params": card.params.total, "seconds": 0.0}]
        tools += run_counters(name, loaded.module, inputs)
        for e in tools:
            if "error" not in e:
                e["reconcile"] = reconcile(e["tool"], e["raw"], t)
        counts[name] = {"ledger": t, "tools": tools}

    versions = _versions(VERSIONED)
    versions["torch"] = torch.__version__
    meta = {
        "date": now_utc(),
        "machine": machine(),
        "versions": versions,
        "command": ".venv/bin/python benchmarks/measure.py",
        "seconds": time.perf_counter() - start,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }
    text = render(meta, cards, ab, counts)
    out = RESULTS / "measure.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    data = {"meta": meta,
            "cards": [{"model": r["model"], "runtime": r["runtime"], "measure_seconds": r["seconds"],
                       "machine_load": r["load"], "one_thread_check": r.get("one_thread"),
                       "card": r["card"].to_dict()} for r in cards],
            "torch_vs_onnxruntime_interleaved": ab,
            "counters": counts}
    (out.parent / "measure.json").write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    print(text)
    print(f"wrote {out} and {out.parent / 'measure.json'}")


if __name__ == "__main__":  # required: sizewise measures memory in a spawned child process, which re-imports __main__
    main()
