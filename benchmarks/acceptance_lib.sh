# Sourced by the *_acceptance.sh scripts: the header every record starts with, and a command runner that echoes the
# command and its wall time. Expects REPO to be set.
record_header() {  # $1: anything else the record should state (e.g. the thread setting)
  echo "# date: $(date -Iseconds)"
  echo "# machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc --all) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# sizewise at $(git -C "$REPO" rev-parse --short HEAD)${1:+; $1}"
}
run() { echo; echo "\$ $*"; /usr/bin/time -f "# wall %e s" "$@"; }
