"""STS-B: all-MiniLM-L6-v2 distilled into a ``layers:3`` student by embedding KD on unlabeled sentences.

    .venv/bin/python benchmarks/distill_stsb.py [--epochs 1] [--sst2-sentences 10000] [--lr 1e-4]

The student keeps layers 2, 4 and 6 of the teacher (DistilBERT's initialisation) and learns to reproduce the teacher's
mean-pooled sentence embedding (MSE) on sentences whose scores it never sees: both sentences of every STS-B *train*
pair plus the first N SST-2 train sentences. Spearman x 100 on the STS-B test split before and after; latency of teacher
and student at batch 1, 128 tokens, 1 thread, timed call by call in alternation. Writes
benchmarks/results/distill_stsb.json (with its markdown section) and re-renders benchmarks/results/distill.md.
Run directory (checkpoint, resumable): /tmp/distill-bench/stsb.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, RESULTS, interleaved, log, md_table, parse_args, short_header  # noqa: E402
from distill_common import render  # noqa: E402

WORK = Path("/tmp/distill-bench/stsb")
GOAL = 81.0


def encoder_params(module) -> int:
    return sum(p.numel() for n, p in module.named_parameters() if "encoder.layer." in n)


def main() -> None:
    import torch

    import sizewise
    from sizewise.compress.distill import DistillConfig, build_student, distill

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--sst2-sentences", type=int, default=10000)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--continue-round", action="store_true",
                        help="Round 2: start from round 1's student (/tmp/distill-bench/stsb) with a fresh schedule; "
                             "round 1's numbers (results/distill_stsb.json) stay in the table.")
    args = parse_args(parser)
    work = WORK.with_name("stsb-round2") if args.continue_round else WORK
    previous = json.loads((RESULTS / "distill_stsb.json").read_text()) if args.continue_round else None
    torch.set_num_threads(1)
    stsb = sizewise.load_dataset(str(DATA / "stsb"))
    sst2 = sizewise.load_dataset(str(DATA / "sst2"))
    sentences = list(dict.fromkeys([s for pair in stsb.split("train").inputs for s in pair]
                                   + list(sst2.split("train").inputs[:args.sst2_sentences])))
    teacher = sizewise.load("minilm")
    student, info = build_student(teacher, "layers:3")
    if args.continue_round:
        student = sizewise.load(str(WORK))  # round 1's distilled student, saved by the first run
    log(f"teacher {encoder_params(teacher.module):,} encoder params, student {encoder_params(student.module):,}; "
        f"{len(sentences):,} unlabeled sentences")
    teacher_score = sizewise.evaluate(teacher, stsb)["spearman"]
    before = previous["student_before"] if previous else sizewise.evaluate(student, stsb)["spearman"]
    round1 = sizewise.evaluate(student, stsb)["spearman"] if previous else None
    log(f"Spearman: teacher {teacher_score:.2f}, student before KD {before:.2f}")
    started = time.time()
    result = distill(teacher, student, stsb, DistillConfig(), sizewise.TrainConfig(
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=0, threads=1), out=work, resume=True,
        unlabeled=sentences)
    seconds = time.time() - started
    sizewise.save_model(student, work / "model")
    after = sizewise.evaluate(sizewise.load(str(work)), stsb)["spearman"]
    log(f"student after KD {after:.2f} ({seconds / 60:.1f} min)")
    inputs = teacher.example_inputs(1, 128)
    timing = interleaved(teacher.module, student.module, inputs, pairs=60, seconds=30)
    speed = timing["ratio_median"]
    enc_t, enc_s = encoder_params(teacher.module), encoder_params(student.module)
    all_t = sum(p.numel() for p in teacher.module.parameters())
    all_s = sum(p.numel() for p in student.module.parameters())
    student_line = (
        f"student: teacher layers {[i + 1 for i in info['kept_layers']]} of 6 kept, initialised from the "
        f"teacher; trained {args.epochs} epoch(s) on {len(sentences):,} unlabeled sentences (both sides of the "
        f"STS-B train pairs + the first {args.sst2_sentences:,} SST-2 train sentences), MSE to the teacher's "
        f"mean-pooled embedding, AdamW lr {args.lr}, batch {args.batch_size}, 1 thread, {seconds / 60:.1f} min"
        + (f"; **round 2**: the same sentences again, starting from round 1's student with a fresh cosine "
           f"schedule (round 1: {previous['args']['epochs']} epoch at lr {previous['args']['lr']}, "
           f"{previous['seconds'] / 60:.1f} min, Spearman {round1:.2f})" if previous else ""))
    rows = [["teacher all-MiniLM-L6-v2", f"{enc_t:,}", f"{all_t:,}", f"{teacher_score:.2f}",
             f"{timing['before_p50_ms']:.2f}"],
            ["student layers:3, before KD", f"{enc_s:,}", f"{all_s:,}", f"{before:.2f}", ""]]
    if previous:
        rows.append([f"student after round 1 (1 epoch, lr {previous['args']['lr']}, {previous['seconds'] / 60:.1f} "
                     f"min)", f"{enc_s:,}", f"{all_s:,}", f"{round1:.2f}", ""])
    rows.append([f"**student layers:3, after KD{' round 2' if previous else ''}**", f"{enc_s:,}", f"{all_s:,}",
                 f"**{after:.2f}**", f"{timing['after_p50_ms']:.2f}"])
    lines = short_header("## STS-B: embedding distillation into `layers:3` (no labels)", student_line)
    lines += md_table(rows, "lrrrr", columns=["model", "encoder params", "all params", "STS-B test Spearman",
                                              "latency p50 ms (batch 1, 128 tokens)"])
    lines += ["",
              f"Measured speed-up {speed:.2f}x (95% interval {timing['ratio_ci95'][0]:.2f}-"
              f"{timing['ratio_ci95'][1]:.2f}, {timing['pairs']} alternating pairs, other processes used "
              f"{timing['other_cores']:.2f} cores meanwhile); {1 - enc_s / enc_t:.0%} fewer encoder parameters "
              f"({1 - all_s / all_t:.0%} of all: the 30,522-token embedding table is kept whole).", "",
              f"Goal: Spearman ≥ {GOAL} — **{'MET' if after >= GOAL else 'NOT MET'}** ({after:.2f}).", ""]
    lines += md_table([[e.epoch, f"{e.train_loss:.5f}", f"{e.seconds:.0f}"] for e in result.epochs], "rrr",
                      columns=["epoch", "loss (MSE)", "seconds"])
    payload = {"teacher_spearman": teacher_score, "student_before": before, "student_after": after,
               "round1": previous and {k: v for k, v in previous.items() if k != "markdown"},
               "encoder_params": [enc_t, enc_s], "params": [all_t, all_s], "timing": timing, "seconds": seconds,
               "sentences": len(sentences), "args": vars(args), "goal": GOAL, "met": after >= GOAL,
               "markdown": "\n".join(lines),
               "epochs": [{"epoch": e.epoch, "loss": e.train_loss, "seconds": e.seconds} for e in result.epochs]}
    (RESULTS / "distill_stsb.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    print(render().read_text())


if __name__ == "__main__":
    main()
