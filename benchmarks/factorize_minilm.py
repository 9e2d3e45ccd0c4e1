"""Low-rank factorization of all-MiniLM-L6-v2's FFN layers against structured FFN pruning at the same parameter count.

    .venv/bin/python benchmarks/factorize_minilm.py            # ~25-40 min on a 2-core VM, 1 thread
    .venv/bin/python benchmarks/factorize_minilm.py --quick    # smoke test: 100 train / 100 dev / 200 test pairs
    .venv/bin/python benchmarks/factorize_minilm.py --render   # rebuild the markdown from the saved JSON

Writes benchmarks/results/factorize_minilm.json (numbers + a "markdown" section that
``benchmarks/deep_compression.py`` appends to deep_compression.md). ``--quick`` writes under /tmp/factorize-bench/quick
only. Intermediate run directories live under /tmp/factorize-bench/{full,quick}; a finished piece (a compressed
variant, a recovery, the dense control) is reused when the script is run again.

1. Factorized: ``Factorize(target_params=0.5, layers=PATTERN)`` where PATTERN matches both FFN Linear layers of every
   block (``encoder.layer.N.intermediate.dense`` 384->1536 and ``encoder.layer.N.output.dense`` 1536->384) and not
   ``attention.output.dense``; one global singular-value-energy threshold spends the budget over all 12 layers.
2. Pruned: ``HeadPrune(s, heads=False, ffn=True)``: FFN neurons only (the same fraction in every block). ``s`` is the
   one whose FFN parameter count is closest to the factorized model's, found from parameter counts alone (candidate
   widths around the analytic one, each checked by actually pruning a fresh copy), never from a score.
3. Both run as one-step plans through the executor (``prune_common.run_variant``: card before = dense, card after
   = the reloaded artifact, STS-B test Spearman right after compression), then the same recovery (``sizewise.train``,
   one ``TrainConfig``) on the STS-B train split, are saved, reloaded and measured again.
4. Latency at batch 1, seq-len 128, torch at 1 thread: each recovered model interleaved (ABBA, call by call) with
   the dense model, plus factorized vs pruned head to head. The dense model fine-tuned with the same recipe is the
   control for the after-recovery Spearman (``--no-dense-control`` skips it).

Split discipline: STS-B's dev file is the validation split (per-epoch validation Spearman of the recoveries and the
control); every reported Spearman, and the paired bootstrap, is on the test split. The committed result
(results/factorize_minilm.json) PREDATES this: its per-epoch validation was a 10% slice held out of STS-B *train* by
the training loop, so its recoveries saw 90% of the train pairs; a re-run trains on all of them and validates on dev,
so its numbers can differ.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import prune_common as pc  # noqa: E402
from _common import DATA, RESULTS, cached, log, md_table  # noqa: E402

SEQ = 128
WORK = Path("/tmp/factorize-bench")
TARGET = 0.5  # fraction of the FFN layers' parameters the factorization keeps
# fnmatch has no alternation: "[io][nu]t*" takes "intermediate" and "output"; "layer.?." pins the block index so that
# "encoder.layer.0.attention.output.dense" cannot match (a leading "*" would swallow "0.attention").
# plan_factorized() checks the matched names at run time.
PATTERN = "encoder.layer.?.[io][nu]t*.dense"
FFN_PARAM = re.compile(r"(^|\.)layer\.\d+\.(intermediate|output)\.dense\.")  # not attention.output.dense
TITLE = "Low-rank factorization vs structured pruning: MiniLM FFN layers on STS-B"
STSB_BASELINE = 82.03  # shared/data/README.md: all-MiniLM-L6-v2 on this STS-B test split


def ffn_params(module) -> int:
    return sum(p.numel() for name, p in module.named_parameters() if FFN_PARAM.search(name))


def factorize_config():
    from sizewise.compress.factorize import Factorize

    return Factorize(target_params=TARGET, layers=PATTERN)


def plan_factorized() -> dict:
    """Apply the factorization to a fresh copy (SVD only, < 2 s) to know its exact FFN parameter count."""
    import sizewise
    from sizewise.compress.factorize import eligible_layers, factorize
    from sizewise.compress.registry import StepContext

    loaded = sizewise.load("minilm")
    config = factorize_config()
    chosen = [name for name, _ in eligible_layers(loaded.module, config)[0]]
    expected = [f"encoder.layer.{i}.{kind}.dense" for i in range(6) for kind in ("intermediate", "output")]
    if chosen != expected:
        raise SystemExit(f"pattern {PATTERN!r} matched {chosen}, expected exactly {expected}")
    before = ffn_params(loaded.module)
    details = factorize(loaded, config, StepContext())
    after = ffn_params(loaded.module)
    if (details["params_before"], details["params_after"]) != (before, after):
        raise SystemExit(f"factorize reports {details['params_before']:,} -> {details['params_after']:,} FFN params, "
                         f"the module has {before:,} -> {after:,}")
    return {"layers_matched": chosen, "ffn_before": before, "ffn_after": after,
            "ranks": {n: v["rank"] for n, v in details["layers"].items()},
            "energy_kept": {n: v["energy_kept"] for n, v in details["layers"].items()}}


def match_sparsity(target_ffn: int) -> tuple[float, list[dict]]:
    """The FFN-only ``HeadPrune`` sparsity whose FFN parameter count is closest to ``target_ffn``."""
    import sizewise
    from sizewise.compress.prune import HeadPrune
    from sizewise.compress.prune.transformer import heads
    from sizewise.compress.registry import StepContext

    cfg = sizewise.load("minilm").module.config
    hidden, inter, blocks = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    # per block, width w: intermediate (hidden*w + w) + output (w*hidden + hidden)
    width = (target_ffn / blocks - hidden) / (2 * hidden + 1)
    tried = []
    for w in range(round(width) - 2, round(width) + 3):
        s = (inter - w) / inter
        loaded = sizewise.load("minilm")
        details = heads(loaded, HeadPrune(s, heads=False, ffn=True), StepContext())
        got = ffn_params(loaded.module)
        tried.append({"sparsity": s, "intermediate_size": details["intermediate_size"], "ffn_params": got,
                      "diff": got - target_ffn, "heads_per_layer": sorted(set(details["heads_after"].values()))})
        log(f"HeadPrune({s:.5f}, heads=False): FFN width {details['intermediate_size']}, {got:,} FFN params "
            f"({got - target_ffn:+,} vs factorized)")
    best = min(tried, key=lambda t: (abs(t["diff"]), t["sparsity"]))
    return best["sparsity"], tried


def quick_dataset(dataset):
    splits = {"train": dataset.split("train").head(100), "validation": dataset.split("validation").head(100),
              "test": dataset.split("test").head(200)}
    return dataclasses.replace(dataset, splits=splits,
                               notes=dataset.notes + ["--quick: 100 train / 100 dev / 200 test pairs"])


def recover(src: Path, out: Path, dataset, ft_cfg, mc) -> dict:
    """``sizewise.train`` on the compressed run directory, saved to ``out/model``, reloaded and measured."""
    return cached(out / "bench.json", lambda: _recover(src, out, dataset, ft_cfg, mc))


def _recover(src: Path, out: Path, dataset, ft_cfg, mc) -> dict:
    import sizewise
    from sizewise.measure import measure
    from sizewise.models.lowrank import lowrank_ranks

    log(f"{out.name}: recovery fine-tuning of {src}: {ft_cfg}")
    loaded = sizewise.load(str(src))
    t0 = time.perf_counter()
    result = sizewise.train(loaded, dataset, ft_cfg, out=out, resume=True, bar=True)
    sizewise.save_model(loaded, out / "model")
    seconds = time.perf_counter() - t0
    reloaded = sizewise.load(str(out))
    card = pc.card_summary(measure(reloaded, mc, dataset=dataset))
    res = {"config": dataclasses.asdict(ft_cfg), "history": pc.history(result),
           "resumed_from_epoch": result.resumed_from_epoch, "this_run_seconds": seconds, "card": card,
           "ffn_params": ffn_params(reloaded.module), "lowrank_ranks": lowrank_ranks(reloaded.module),
           "model_dir": str(out)}
    log(f"{out.name}: {card['metrics']} ({seconds / 60:.1f} min)")
    return res


def dense_control(out: Path, dataset, ft_cfg) -> dict:
    def run() -> dict:
        import sizewise

        log("dense control: the unpruned model, same fine-tuning")
        dense = sizewise.load("minilm")
        t0 = time.perf_counter()
        result = sizewise.train(dense, dataset, ft_cfg, out=out, resume=True, bar=True)
        res = {"history": pc.history(result), "this_run_seconds": time.perf_counter() - t0,
               "metrics": sizewise.evaluate(dense, dataset)}
        log(f"dense control: {res['metrics']}")
        return res

    return cached(out / "bench.json", run)


def paired_bootstrap(fact_dir: Path, prune_dir: Path, dataset, out: Path, resamples: int = 2000) -> dict:
    """95% interval of Spearman(factorized) - Spearman(pruned) over test pairs resampled with replacement (paired:
    both models scored on the same resample). It covers the test-set sampling only, not the training seed."""
    return cached(out / "bootstrap.json", lambda: _bootstrap(fact_dir, prune_dir, dataset, resamples))


def _bootstrap(fact_dir: Path, prune_dir: Path, dataset, resamples: int) -> dict:
    import numpy as np
    from scipy.stats import spearmanr

    import sizewise
    from sizewise.data.dataset import Split
    from sizewise.tasks.evaluate import model_outputs

    test = dataset.split("test")

    def cosines(ref: Path) -> np.ndarray:
        loaded = sizewise.load(str(ref))
        left = model_outputs(loaded, Split([a for a, _ in test.inputs], test.labels))
        right = model_outputs(loaded, Split([b for _, b in test.inputs], test.labels))
        return (left * right).sum(-1)

    cf, cp, y = cosines(fact_dir), cosines(prune_dir), test.labels
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(resamples):
        idx = rng.integers(0, len(y), len(y))
        diffs.append(100 * (spearmanr(cf[idx], y[idx]).statistic - spearmanr(cp[idx], y[idx]).statistic))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    res = {"resamples": resamples, "seed": 0, "spearman_factorized": 100 * spearmanr(cf, y).statistic,
           "spearman_pruned": 100 * spearmanr(cp, y).statistic, "diff_ci95": [float(lo), float(hi)],
           "share_factorized_better": float(np.mean(np.asarray(diffs) > 0))}
    log(f"paired bootstrap, factorized - pruned Spearman: 95% interval {lo:+.2f} to {hi:+.2f}")
    return res


def latencies(fact_dir: Path, prune_dir: Path, quick: bool) -> dict:
    """Interleaved timings at batch 1, seq-len 128, 1 thread: dense vs each variant, and factorized vs pruned."""
    import sizewise

    dense, fact, pruned = (sizewise.load(ref) for ref in ("minilm", str(fact_dir), str(prune_dir)))
    inputs = dense.example_inputs(1, SEQ)
    kw = {"pairs": 10, "seconds": 3.0} if quick else {}
    out = {}
    for key, a, b in (("dense_vs_factorized", dense, fact), ("dense_vs_pruned", dense, pruned),
                      ("pruned_vs_factorized", pruned, fact)):
        out[key] = pc.interleaved(a.module.eval(), b.module.eval(), inputs, **kw)
        r = out[key]
        log(f"  interleaved {key}: {r['ratio_median']:.3f}x ({r['before_p50_ms']:.2f} -> {r['after_p50_ms']:.2f} ms, "
            f"others {r['other_cores']:.2f} cores)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 100 train / 100 dev / 200 test pairs, short timings")
    parser.add_argument("--no-dense-control", action="store_true", help="skip fine-tuning the dense model")
    parser.add_argument("--render", action="store_true", help="only rebuild the markdown from the saved JSON")
    args = pc.parse_args(parser)
    result_path = (WORK / "quick" if args.quick else RESULTS) / "factorize_minilm.json"
    if args.render:
        payload = json.loads(result_path.read_text())
        payload["markdown"] = markdown(payload)
        result_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(payload["markdown"])
        return

    import torch

    import sizewise
    from sizewise.compress.prune import HeadPrune

    torch.set_num_threads(1)  # training, evaluation and timing: the machine has 2 shared cores
    meta = pc.new_meta()
    work = WORK / ("quick" if args.quick else "full")
    dataset = sizewise.load_dataset(str(DATA / "stsb"))
    if args.quick:
        dataset = quick_dataset(dataset)

    plan = plan_factorized()
    log(f"factorized plan: FFN {plan['ffn_before']:,} -> {plan['ffn_after']:,} params "
        f"({plan['ffn_after'] / plan['ffn_before']:.4%}), ranks {sorted(plan['ranks'].values())}")
    sparsity, tried = match_sparsity(plan["ffn_after"])
    fcfg, pcfg = factorize_config(), HeadPrune(sparsity, heads=False, ffn=True)

    factorized = pc.run_variant("factorized", "minilm", fcfg, dataset, None, work / "factorized", 1,
                                seq_len=SEQ, latency=False)
    pruned = pc.run_variant("ffn-pruned", "minilm", pcfg, dataset, None, work / "pruned", 1,
                            seq_len=SEQ, latency=False)

    ft_cfg = sizewise.TrainConfig(epochs=1, lr=2e-5, batch_size=16, optimizer="adamw", weight_decay=0.01,
                                  schedule="cosine", threads=1, seed=0)  # as prune_minilm.py
    mc = pc.measure_cfg(1, SEQ)
    rec_f = recover(work / "factorized", work / "factorized-recovered", dataset, ft_cfg, mc)
    rec_p = recover(work / "pruned", work / "pruned-recovered", dataset, ft_cfg, mc)
    if rec_f["ffn_params"] != plan["ffn_after"] or len(rec_f["lowrank_ranks"]) != 12:
        raise SystemExit(f"the recovered factorized artifact reloads with {rec_f['ffn_params']:,} FFN params and "
                         f"{len(rec_f['lowrank_ranks'])} low-rank layers, expected {plan['ffn_after']:,} and 12")
    log("latency, interleaved, batch 1, 1 thread")
    lat = latencies(work / "factorized-recovered", work / "pruned-recovered", args.quick)
    control = None if args.no_dense_control else dense_control(work / "dense-control", dataset, ft_cfg)
    boot = paired_bootstrap(work / "factorized-recovered", work / "pruned-recovered", dataset, work)

    meta = pc.finish_meta(meta)
    reused = [name for name, piece in (("factorized", factorized), ("pruned", pruned), ("factorized recovery", rec_f),
                                       ("pruned recovery", rec_p), ("dense control", control or {}))
              if piece.get("reused")]
    if reused:
        meta["resumed"] = f"reused finished pieces of an earlier run (not in the wall time): {', '.join(reused)}"
        if result_path.exists():  # the run that computed those pieces (carried forward through later re-runs)
            old = json.loads(result_path.read_text())["meta"]
            first = old.get("pieces_from") or {k: old[k] for k in ("date", "git", "wall_s", "command")}
            meta["pieces_from"] = first
            meta["resumed"] += (f"; they come from the run started {first['date']} at git {first['git']}, which took "
                                f"{first['wall_s'] / 60:.1f} min")
    payload = {"benchmark": "factorize_minilm", "quick": args.quick, "meta": meta,
               "dataset": {"name": dataset.name, "train_pairs": len(dataset.split("train")),
                           "validation_pairs": len(dataset.split("validation")),
                           "validation_source": dataset.validation_source,
                           "test_pairs": len(dataset.split("test")), "notes": dataset.notes},
               "factorize_config": dataclasses.asdict(fcfg), "prune_config": dataclasses.asdict(pcfg),
               "factorized_plan": plan, "sparsity_search": tried, "recovery_config": dataclasses.asdict(ft_cfg),
               "dense": {"card": factorized["before"], "card_again": pruned["before"],
                         "ffn_params": plan["ffn_before"]},
               "factorized": {"compress": factorized, "recovered": rec_f},
               "pruned": {"compress": pruned, "recovered": rec_p,
                          "ffn_params": next(t["ffn_params"] for t in tried if t["sparsity"] == sparsity)},
               "latency": lat, "dense_control": control, "bootstrap_after_recovery": boot}
    payload["markdown"] = markdown(payload)
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    log(f"wrote {result_path} ({meta['wall_s'] / 60:.1f} min)")
    print(payload["markdown"])


# --------------------------------------------------------------------------------------------- markdown


def sp(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def ab(r: dict) -> str:
    lo, hi = r["ratio_ci95"]
    return f"{pc.ratio(r['ratio_median'])} [{pc.ratio(lo)}-{pc.ratio(hi)}]"


def markdown(p: dict) -> str:
    meta, dense, lat, ctl = p["meta"], p["dense"], p["latency"], p["dense_control"]
    fc, fr = p["factorized"]["compress"], p["factorized"]["recovered"]
    pcmp, prc = p["pruned"]["compress"], p["pruned"]["recovered"]
    plan, ft = p["factorized_plan"], p["recovery_config"]
    d_ffn, f_ffn, p_ffn = dense["ffn_params"], fr["ffn_params"], p["pruned"]["ffn_params"]
    d_card = dense["card"]
    s_dense = d_card["metrics"]["spearman"]
    s_fb, s_fa = fc["after"]["metrics"]["spearman"], fr["card"]["metrics"]["spearman"]
    s_pb, s_pa = pcmp["after"]["metrics"]["spearman"], prc["card"]["metrics"]["spearman"]
    df, dp, pf = lat["dense_vs_factorized"], lat["dense_vs_pruned"], lat["pruned_vs_factorized"]
    width = next(t["intermediate_size"] for t in p["sparsity_search"] if t["sparsity"] == p["prune_config"]["sparsity"])
    ranks = sorted(plan["ranks"].values())
    energy = sorted(plan["energy_kept"].values())
    n_test, n_train = p["dataset"]["test_pairs"], p["dataset"]["train_pairs"]
    n_val = p["dataset"].get("validation_pairs")  # absent: a run from before the dev file was the validation split
    val_words = (f"the {n_val:,} STS-B dev pairs ({p['dataset'].get('validation_source') or 'validation split'})"
                 if n_val else "the held-out 10% of STS-B train")

    lines = [f"## {TITLE}", ""]
    if p.get("quick"):
        lines += [f"**QUICK SMOKE RUN ({n_train} train / {n_val or 0} dev / {n_test} test pairs): not a result.**",
                  ""]
    lines += pc.meta_lines(meta) + [
        "- raw numbers: `benchmarks/results/factorize_minilm.json`",
        "",
        f"Both methods start from all-MiniLM-L6-v2 and touch only the FFN of its 6 blocks (`intermediate.dense` "
        f"384->1536 and `output.dense` 1536->384, {d_ffn:,} parameters with biases; attention, embeddings and "
        f"LayerNorms are untouched). **Factorized**: "
        f"`Factorize(target_params={p['factorize_config']['target_params']}, "
        f"layers=\"{p['factorize_config']['layers']}\")`, truncated SVD of all 12 FFN weights with one global "
        f"singular-value-energy threshold; ranks {ranks[0]}-{ranks[-1]} (of 384), keeping "
        f"{energy[0]:.1%}-{energy[-1]:.1%} of each layer's energy; FFN {d_ffn:,} -> {f_ffn:,} parameters "
        f"({f_ffn / d_ffn:.2%}). **Pruned**: `HeadPrune({p['prune_config']['sparsity']:.5g}, heads=False, ffn=True)`, "
        f"L1-magnitude FFN neurons, width 1536 -> {width} in every block; FFN {p_ffn:,} parameters "
        f"({p_ffn / d_ffn:.2%}, {p_ffn - f_ffn:+,} vs factorized). The sparsity was chosen from parameter counts "
        f"alone (closest FFN count among widths "
        + ", ".join(str(w) for w in sorted({t["intermediate_size"] for t in p["sparsity_search"]}))
        + "), never from a score.", "",
        f"Spearman x 100 on the STS-B **test** split ({n_test:,} pairs; reference 82.03). \"Before recovery\" is the "
        f"compressed artifact reloaded from disk with no training; \"after\" is after the same recovery for both: "
        f"`sizewise.train`, sentence-similarity objective (MSE of cosine vs score/5), {pc.schedule_line(ft)}, on "
        f"the STS-B train split. Latency: batch 1, seq-len {SEQ}, torch eager at 1 thread, each model timed "
        f"**interleaved** with the dense model (ABBA, call by call, same inputs); the p50s are from that run, the "
        f"speed-up is the median of per-pair ratios with its 95% interval. FLOPs: `sizewise.measure` `flops.total` "
        f"(2 x MACs) at batch 1, seq-len {SEQ}.", "",
        *md_table([
            ["dense all-MiniLM-L6-v2", f"{d_ffn:,}", f"{d_card['params']:,}", f"{d_card['flops']:,}", sp(s_dense),
             f"{sp(ctl['metrics']['spearman'])} (control: same fine-tuning)" if ctl else "-", "-", "1.00x", "-"],
            [f"factorized, FFN rank {ranks[0]}-{ranks[-1]}", f"{f_ffn:,} ({f_ffn / d_ffn:.1%})",
             f"{fr['card']['params']:,}", f"{fr['card']['flops']:,}", sp(s_fb), sp(s_fa),
             f"{pc.ms(df['after_p50_ms'])} / {pc.ms(df['before_p50_ms'])}", ab(df),
             f"other processes {df['other_cores']:.2f} cores"],
            [f"FFN-pruned, width {width}", f"{p_ffn:,} ({p_ffn / d_ffn:.1%})", f"{prc['card']['params']:,}",
             f"{prc['card']['flops']:,}", sp(s_pb), sp(s_pa), f"{pc.ms(dp['after_p50_ms'])} / "
             f"{pc.ms(dp['before_p50_ms'])}", ab(dp), f"other processes {dp['other_cores']:.2f} cores"]],
            "lrrrrrrrl", columns=["variant", "FFN params", "total params", "FLOPs", "Spearman before recovery",
                                  "Spearman after recovery", "p50 ms (variant / dense, interleaved)",
                                  "speed-up vs dense, interleaved [95% CI]", "other load"]), "",
        (f"Head to head (interleaved, same run): pruned {pc.ms(pf['before_p50_ms'])} ms vs factorized "
         f"{pc.ms(pf['after_p50_ms'])} ms p50; pruned/factorized time ratio {pf['ratio_median']:.2f} (95% interval "
         f"{pf['ratio_ci95'][0]:.2f}-{pf['ratio_ci95'][1]:.2f}; below 1 = pruned faster), others "
         f"{pf['other_cores']:.2f} cores."),
    ]
    hist_f, hist_p = fr["history"], prc["history"]
    lines += ["",
              f"Recovery wall time (1 thread): factorized {sum(e['seconds'] for e in hist_f) / 60:.1f} min, pruned "
              f"{sum(e['seconds'] for e in hist_p) / 60:.1f} min (validation Spearman on {val_words}: "
              f"{', '.join(sp(e['val_metric']) for e in hist_f)} / "
              f"{', '.join(sp(e['val_metric']) for e in hist_p)})"
              + (f"; dense control {sum(e['seconds'] for e in ctl['history']) / 60:.1f} min." if ctl else ".")
              + f" Disk bytes of the saved artifacts: dense {d_card['disk_bytes']:,}, factorized "
              f"{fr['card']['disk_bytes']:,}, pruned {prc['card']['disk_bytes']:,}. Card p50s measured separately "
              f"(not interleaved, minutes apart): dense {pc.ms(d_card['latency']['p50_ms'])}, factorized "
              f"{pc.ms(fr['card']['latency']['p50_ms'])}, pruned {pc.ms(prc['card']['latency']['p50_ms'])} ms.", "",
              "Reading: " + reading(p, s_dense, s_fb, s_fa, s_pb, s_pa, df, dp, pf, ctl)]
    return "\n".join(lines) + "\n"


def reading(p, s_dense, s_fb, s_fa, s_pb, s_pa, df, dp, pf, ctl) -> str:
    """3-5 sentences generated from the numbers, so a re-run cannot leave a stale verdict behind."""
    winner_after = "factorized" if s_fa > s_pa else "pruned"
    gap_after, gap_before = s_fa - s_pa, s_fb - s_pb
    faster = "pruned" if pf["ratio_median"] < 1 else "factorized"  # ratio = pruned time / factorized time
    ci = pf["ratio_ci95"]
    speed_clear = ci[1] < 1 or ci[0] > 1
    boot = p.get("bootstrap_after_recovery")
    winner_before = "factorized" if s_fb > s_pb else "pruned"
    if boot is None:
        sep = ""
    elif boot["diff_ci95"][0] <= 0 <= boot["diff_ci95"][1]:
        sep = (f", but the paired-bootstrap 95% interval of that difference over the test pairs "
               f"({boot['diff_ci95'][0]:+.2f} to {boot['diff_ci95'][1]:+.2f}) includes 0, so after recovery this "
               "single-seed run does not separate them")
    else:
        sep = (f", and the paired-bootstrap 95% interval over the test pairs ({boot['diff_ci95'][0]:+.2f} to "
               f"{boot['diff_ci95'][1]:+.2f}) excludes 0 (test-set sampling only; the training seed was not varied)")
    kept_width = next(t["intermediate_size"] for t in p["sparsity_search"]
                      if t["sparsity"] == p["prune_config"]["sparsity"])
    apart = abs(p["pruned"]["ffn_params"] - p["factorized"]["recovered"]["ffn_params"])
    out = [f"At equal FFN parameters (within {apart:,}) "
           f"the **{winner_after}** model scores higher after recovery ({sp(s_fa)} factorized vs {sp(s_pa)} pruned, "
           f"{gap_after:+.2f} for factorization){sep}; right after compression the {winner_before} model was ahead by "
           f"{abs(gap_before):.2f} ({sp(s_fb)} factorized vs {sp(s_pb)} pruned)."]
    e_lo, e_hi = min(p["factorized_plan"]["energy_kept"].values()), max(p["factorized_plan"]["energy_kept"].values())
    out.append(
        f"Why, as far as these numbers show: at half the parameters each FFN weight keeps rank ~40% of 384 and only "
        f"{e_lo:.1%}-{e_hi:.1%} of its singular-value energy, so the factored weights differ from the originals by "
        f"about {(1 - e_hi) ** 0.5:.0%} in relative Frobenius norm, an error spread over all 1,536 GELU neurons, while "
        f"pruning leaves {kept_width} "
        "neurons exact and drops the half with the smallest L1 weights"
        + ("; recovery reverses the order" if (gap_before > 0) != (gap_after > 0) else
           f"; recovery {'widens' if abs(gap_after) > abs(gap_before) else 'narrows'} the gap "
           f"({gap_before:+.2f} -> {gap_after:+.2f})") + ".")
    out.append(
        (f"On speed the **{faster}** model is faster head to head" if speed_clear else
         f"On speed neither is clearly faster head to head, the {faster} model only by the median")
        + f" (pruned/factorized time ratio {pf['ratio_median']:.2f}, 95% interval {ci[0]:.2f}-{ci[1]:.2f}), with the "
        "same FLOPs: the factorized FFN runs four thinner matmuls per block (384->r->1536->r->384) instead of two, "
        "each with its own overhead at batch 1" + (", the likely cost" if faster == "pruned" else "") + ".")
    if ctl:
        c = ctl["metrics"]["spearman"]
        out.append(f"The dense model given the same epoch of STS-B training reaches {sp(c)} (from {sp(s_dense)}), "
                   + ("so part of each recovery is in-domain training, not repair: read the compressed models against "
                      "that control as well as against the untouched dense score." if c > s_dense else
                      "so this recipe does not improve the uncompressed model: what the compressed models gain in "
                      "recovery is repair of compression damage."))
    out.append(
        f"Caveats: one seed and one recovery recipe; latency is from a shared 2-core VM (other processes used "
        f"{df['other_cores']:.2f}/{dp['other_cores']:.2f}/{pf['other_cores']:.2f} cores during the three interleaved "
        "runs), which is why only interleaved ratios are quoted; eager PyTorch at 1 thread, no ONNX Runtime.")
    return " ".join(out)


if __name__ == "__main__":
    main()
