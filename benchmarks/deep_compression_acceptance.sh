#!/usr/bin/env bash
# The Deep Compression issue's acceptance commands, exactly as written, from a run directory under /tmp.
# Usage: bash benchmarks/deep_compression_acceptance.sh > benchmarks/results/deep_compression_acceptance.txt 2>&1
# OMP_NUM_THREADS=1 keeps torch to one thread: on this shared 2-core VM a second busy process makes a 2-thread pool
# several times slower (see measure.md); the commands themselves are unchanged.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
MNIST="$REPO/../shared/data/mnist/mnist.npz"
WORK="${WORK:-/tmp/dc-acceptance}"
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK"
export COLUMNS=120 OMP_NUM_THREADS=1
source "$REPO/benchmarks/acceptance_lib.sh"
record_header "OMP_NUM_THREADS=$OMP_NUM_THREADS"
run sizewise train zoo:lenet-300-100 --data "$MNIST" --epochs 4 --out base
run sizewise compress base --recipe deep-compression --data "$MNIST" --out dc
run sizewise measure dc --data "$MNIST" --json measured.json
echo
python3 - <<'PY'
import json
card = json.load(open("dc/card.json"))
measured = json.load(open("measured.json"))
dense, packed = card["before"]["size"]["disk_bytes"], card["after"]["size"]["disk_bytes"]
before, after = card["before"]["metrics"]["accuracy"], card["after"]["metrics"]["accuracy"]
again = measured["metrics"]["accuracy"]
print(f"# dense artifact {dense:,} B -> compressed {packed:,} B: {dense / packed:.2f}x smaller (goal >= 35x): "
      f"{'MET' if dense / packed >= 35 else 'NOT MET'}")
print(f"# accuracy {before:.2%} -> {after:.2%}: {100 * (before - after):+.2f} pp lost (goal <= 0.3 pp): "
      f"{'MET' if before - after <= 0.003 else 'NOT MET'}")
print(f"# sizewise measure dc: {again:.2%}, {'exactly the same' if again == after else 'DIFFERENT'} accuracy")
PY
echo "# load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
