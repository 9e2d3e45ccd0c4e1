#!/usr/bin/env bash
# The pruning issue's acceptance commands, exactly as written, from a run directory under /tmp.
# Usage: bash benchmarks/prune_acceptance.sh > benchmarks/results/prune_acceptance.txt 2>&1
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
MNIST="$REPO/../shared/data/mnist/mnist.npz"
WORK="${WORK:-/tmp/prune-acceptance}"
# REUSE=1 keeps the trained base run directories of an earlier invocation (training is the slow part) and redoes the
# pruning commands; the record then says so.
if [ "${REUSE:-0}" = "1" ]; then rm -rf "$WORK/p" "$WORK/c"; else rm -rf "$WORK"; fi
mkdir -p "$WORK" && cd "$WORK"
export COLUMNS=120
source "$REPO/benchmarks/acceptance_lib.sh"
record_header
train() { local out="${@: -1}"; if [ "${REUSE:-0}" = "1" ] && [ -d "$out" ]; then echo; echo "# reusing $out from an earlier invocation of: sizewise train $*"; else run sizewise train "$@"; fi; }
train zoo:lenet-300-100 --data "$MNIST" --epochs 3 --out base
run sizewise prune base --data "$MNIST" --method magnitude --sparsity 0.9 --finetune-epochs 2 --out p
train zoo:lenet5 --data "$MNIST" --epochs 3 --out base5
run sizewise prune base5 --data "$MNIST" --method channel --sparsity 0.5 --threads 1 --out c
echo; echo "# load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
