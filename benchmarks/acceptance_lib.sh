# Sourced by the *_acceptance.sh scripts: the header every record starts with, and a command runner that echoes the
# command and its wall time. Expects REPO to be set. The CPU features are those sizewise's cards record
# (sizewise/measure/environment.py): int8 and bf16 speed-ups depend on them.
record_header() {  # $1: anything else the record should state (e.g. the thread setting)
  echo "# date: $(date -Iseconds)"
  echo "# machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc --all) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# CPU features: $(grep -m1 -o -w -E 'avx2|fma|avx512f|avx512_vnni|avx_vnni|avx512_bf16|amx_tile|amx_int8|amx_bf16' /proc/cpuinfo | sort -u | paste -sd' ')"
  echo "# sizewise at $(git -C "$REPO" rev-parse --short HEAD)${1:+; $1}"
}
run() { echo; echo "\$ $*"; /usr/bin/time -f "# wall %e s" "$@"; }
