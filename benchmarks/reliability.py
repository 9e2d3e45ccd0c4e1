"""Killed at any moment, nothing lost: the long run of the kill harness (tests/reliability/kill_harness.py).

For each command (``sizewise train``, ``sizewise compress --recipe deep-compression``, ``sizewise shrink``, and an
LLM calibration: ``sizewise quantize --method int4-awq`` on a tiny Llama, which needs the llm and llamacpp extras) an
uninterrupted reference run is timed first; then output folders are SIGKILLed (whole process group) at moments drawn
uniformly from [0, that time) with seeds 1, 2, ..., ``--kills-per-episode`` times each (the later kills strike the
resumed run), run again to the end and checked: exit 0, no finished epoch/step/trial lost, changed or duplicated,
every model folder loads (checksums verified), and the result equal to the reference run where the command is
deterministic. Commands take turns, episode by episode, so a run stopped by ``--budget-min`` covers them all.

    .venv/bin/python benchmarks/reliability.py                      # >= 20 kills per command
    .venv/bin/python benchmarks/reliability.py --kills 5 --budget-min 10
    .venv/bin/python benchmarks/reliability.py --continue           # add to the committed results up to --kills

Writes benchmarks/results/reliability.json and .md after every episode.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "reliability"))
import _common as c  # noqa: E402
import kill_harness as kh  # noqa: E402

COMMANDS = ("train", "compress", "shrink", "llm")


SPLITS = ("Splits: the commands under test keep sizewise's discipline (shrink and the recipe decide on the validation "
          "split of `digits`, the LLM calibration reads the tiny text's train split and checks its budget on validation; the "
          "final cards are scored on test); this file reports no model quality, only whether "
          "killed runs lost, duplicated or changed anything relative to an uninterrupted run.")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=20, help="kills that struck a running process, per command")
    p.add_argument("--kills-per-episode", type=int, default=2, help="kills in one output folder before it is run "
                                                                   "to the end")
    p.add_argument("--commands", default=",".join(COMMANDS))
    p.add_argument("--epochs", type=int, default=20, help="train: epochs (more: more kills land mid-training)")
    p.add_argument("--trials", type=int, default=3, help="shrink: trials (2 from its initial design, then sampled)")
    p.add_argument("--budget-min", type=float, default=None, help="start no new episode after this many minutes")
    p.add_argument("--continue", dest="cont", action="store_true",
                   help="keep the episodes in the existing results and run only the missing kills")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one, removed)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    return p.parse_args()


def summarize(name: str, episodes: list[dict], window: float | None) -> dict:
    return {"command": name, "window_s": window, "episodes": len(episodes),
            "kills": sum(e["kills"] for e in episodes),
            "survived": sum(1 for e in episodes if e["survived"]),
            "lost": sum(len(e["lost"]) for e in episodes), "changed": sum(len(e["changed"]) for e in episodes),
            "duplicates": sum(len(e["duplicates"]) for e in episodes),
            "problems": sum(len(e["problems"]) for e in episodes),
            "differs_from_uninterrupted": sum(1 for e in episodes if e["differences"]),
            "known_issue_differences": sum(1 for e in episodes if e["known"]),
            "leftover_temporary_entries": sum(len(e["notes"]) for e in episodes)}


def write(meta: dict, settings: dict, argvs: dict, windows: dict, episodes: dict) -> None:
    meta = c.finish_meta(meta)
    summary = [summarize(n, episodes[n], windows.get(n)) for n in episodes]
    data = {"meta": meta, "settings": settings, "commands": argvs, "summary": summary, "known_issues": kh.KNOWN_ISSUES,
            "episodes": episodes}
    c.RESULTS.mkdir(parents=True, exist_ok=True)
    (c.RESULTS / "reliability.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    lines = ["# Killed at any moment, nothing lost", "", SPLITS, "", *c.header_lines(meta), ""]
    lines += [f"Each command was first run uninterrupted (the reference: its wall time is the kill window, its result "
              f"the one a resumed run must equal). Then output folders were SIGKILLed — the whole process group, at "
              f"moments drawn uniformly from [0, window) with seeds 1, 2, ... — up to "
              f"{settings['kills_per_episode']} times each (a later kill strikes the resumed run), run again with the "
              f"same command to the end, and "
              f"checked by `tests/reliability/kill_harness.py`. A drawn moment after the run had already finished "
              f"is not a kill and is not counted.", ""]
    rows = [{"command": s["command"], "window s": f"{s['window_s']:.1f}" if s["window_s"] else "",
             "episodes": s["episodes"], "kills": s["kills"], "survived": f"{s['survived']}/{s['episodes']}",
             "lost": s["lost"], "changed": s["changed"], "duplicated": s["duplicates"],
             "other failures": s["problems"], "differs from uninterrupted": s["differs_from_uninterrupted"],
             "explained by a known issue": s["known_issue_differences"],
             "leftover temp entries": s["leftover_temporary_entries"]} for s in summary]
    lines += [*c.md_table(rows, "lrrrrrrrrrrr"), ""]
    lines += ["Exact commands (OUT is a fresh folder per episode; the reference run used its own):", ""]
    lines += [f"- {n}: `{' '.join(a)}`" for n, a in argvs.items()]
    lines += ["", "## Failures and differences", ""]
    failures = [(n, e) for n in episodes for e in episodes[n] if e["survived"] is False or e["differences"]]
    if not failures:
        lines += ["None: every episode finished, nothing finished before a kill was lost, changed or duplicated, "
                  "every model folder loaded, and every result equalled the uninterrupted run's.", ""]
    for n, e in failures:
        what = [*e["problems"], *(f"lost {x}" for x in e["lost"]), *(f"changed {x}" for x in e["changed"]),
                *(f"duplicate {x}" for x in e["duplicates"]), *(f"differs: {x}" for x in e["differences"])]
        lines += [f"- {n} seed {e['seed']} (kills at {e['kill_times']} s; {'; '.join(e['at_kill'])}): "
                  + "; ".join(what)]
    known = [(n, e) for n in episodes for e in episodes[n] if e["known"]]
    lines += ["", "## Known issues", ""]
    lines += [f"- **{k}**: {v}" for k, v in kh.KNOWN_ISSUES.items()] or [
        "None open: the five the first long run of this harness found (a killed trial never run again, a live "
        "worker's trial failed by a starting one, --trials overshot by workers sharing a study, one sampler seed for "
        "all workers, train --seed not fixing the initial weights) were fixed before this run."]
    if known:
        lines += ["", "Episodes whose result differed from the uninterrupted run, explained by a known issue:", ""]
        lines += [f"- {n} seed {e['seed']}: {'; '.join(e['known'])}" for n, e in known]
    litter = [(n, e) for n in episodes for e in episodes[n] if e["notes"]]
    if litter:
        lines += ["", "Leftover temporary entries (hidden files/folders of writes a kill interrupted; harmless to "
                      "loading, they take disk space):", ""]
        lines += [f"- {n} seed {e['seed']}: {', '.join(e['notes'][:4])}{' ...' if len(e['notes']) > 4 else ''}"
                  for n, e in litter]
    lines += ["", "## Per episode", ""]
    rows = [{"command": n, "seed": e["seed"], "kill moments s": ", ".join(f"{t:.1f}" for t in e["kill_times"]),
             "kills": e["kills"], "folder at each kill": "; ".join(e["at_kill"]),
             "survived": "yes" if e["survived"] else "NO", "seconds": e["seconds"]}
            for n in episodes for e in episodes[n]]
    lines += c.md_table(rows, "lrlrllr") if rows else []
    (c.RESULTS / "reliability.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    args = parse()
    names = [n for n in args.commands.split(",") if n]
    meta = c.new_meta(("sizewise", "torch", "optuna", "onnxruntime", "numpy"))
    previous = json.loads((c.RESULTS / "reliability.json").read_text()) if args.cont and \
        (c.RESULTS / "reliability.json").is_file() else None
    episodes = {n: list((previous or {}).get("episodes", {}).get(n, [])) for n in names}
    if previous:
        kept = sum(map(len, episodes.values()))
        meta["resumed"] = f"continues a run of {previous['meta']['date']} ({kept} episodes kept)"
    settings = {"kills_per_command": args.kills, "kills_per_episode": args.kills_per_episode, "epochs": args.epochs,
                "trials": args.trials, "budget_min": args.budget_min, "threads": 1}
    work = args.work or Path(tempfile.mkdtemp(prefix="sizewise-reliability-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        init = kh.initial_model(work / "init")
        train = kh.train_command(init, args.epochs)
        c.log("reference run: train")
        windows = {"train": kh.reference_run(train, work / "train-ref", work)}
        base = work / "train-ref"  # the trained model compress and shrink start from
        commands = {"train": train, "compress": kh.compress_command(base),
                    "shrink": kh.shrink_command(base, args.trials)}
        if "llm" in names:
            commands["llm"] = kh.llm_command(*kh.tiny_causal_lm(work / "tiny-llm"))
        commands = {n: commands[n] for n in names}
        for n in names:
            if n != "train":
                c.log(f"reference run: {n}")
                windows[n] = kh.reference_run(commands[n], work / f"{n}-ref", work)
        argvs = {n: [a.replace(str(work), "WORK") for a in cmd.argv(Path("OUT"))] for n, cmd in commands.items()}
        argvs = {n: ["sizewise", *a[1:]] for n, a in argvs.items()}
        windows = {n: windows[n] for n in names}
        c.log(f"kill windows: {', '.join(f'{n} {w:.1f} s' for n, w in windows.items())}")
        write(meta, settings, argvs, windows, episodes)
        while True:
            todo = [n for n in names if sum(e["kills"] for e in episodes[n]) < args.kills]
            if not todo:
                break
            if args.budget_min and time.monotonic() - started > args.budget_min * 60:
                c.log(f"budget of {args.budget_min} min spent; run with --continue to do the rest")
                break
            for n in todo:
                seed = 1 + max((e["seed"] for e in episodes[n]), default=0)
                out = work / f"{n}-{seed}"
                ep = kh.run_episode(commands[n], out, windows[n], seed, kills=args.kills_per_episode,
                                    reference=work / f"{n}-ref", logs=work,
                                    shrink_trials=args.trials if n == "shrink" else None)
                record = ep.to_dict()
                if not ep.survived or ep.differences:
                    record["log_tail"] = kh.log_tail(Path(ep.log), 20)
                episodes[n].append(record)
                c.log(f"{n} seed {seed}: {ep.kills} kill(s) at {ep.kill_times} -> "
                      f"{'survived' if ep.survived else 'FAILED: ' + '; '.join(ep.failures())}"
                      f"{' (differs: ' + '; '.join(ep.differences) + ')' if ep.differences else ''}"
                      f"{' (known: ' + '; '.join(ep.known) + ')' if ep.known else ''}")
                shutil.rmtree(out, ignore_errors=True)
                write(meta, settings, argvs, windows, episodes)
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
