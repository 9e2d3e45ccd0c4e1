#!/usr/bin/env bash
# The distillation issue's acceptance commands, exactly as written, from a run directory under /tmp.
# Usage: bash benchmarks/distill_acceptance.sh > benchmarks/results/distill_acceptance.txt 2>&1
# OMP_NUM_THREADS=1 keeps torch to one thread on this shared 2-core VM (see measure.md); commands are unchanged.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
MNIST="$REPO/../shared/data/mnist/mnist.npz"
WORK="${WORK:-/tmp/distill-acceptance}"
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK"
export COLUMNS=120 OMP_NUM_THREADS=1
source "$REPO/benchmarks/acceptance_lib.sh"
record_header "OMP_NUM_THREADS=$OMP_NUM_THREADS"
run sizewise train zoo:lenet-300-100 --data "$MNIST" --epochs 3 --out teacher
run sizewise distill teacher --student width:0.25 --data "$MNIST" --epochs 3 --out student
echo
python3 - <<'PY'
import json
card = json.load(open("student/card.json"))  # the run record: before = the teacher, after = the student
assert card["roles"] == {"before": "teacher", "after": "student"}, card["roles"]
t, s = card["before"], card["after"]
kept = s["metrics"]["accuracy"] / t["metrics"]["accuracy"]
ratio = s["params"]["total"] / t["params"]["total"]
print(f"# teacher {t['metrics']['accuracy']:.2%}, student {s['metrics']['accuracy']:.2%}: keeps {kept:.2%} "
      f"(goal >= 99%): {'MET' if kept >= 0.99 else 'NOT MET'}")
print(f"# student parameters {s['params']['total']:,} / {t['params']['total']:,} = {ratio:.1%} (goal <= 30%): "
      f"{'MET' if ratio <= 0.30 else 'NOT MET'}")
PY
echo "# load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
