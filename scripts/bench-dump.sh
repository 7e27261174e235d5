#!/bin/bash
# Benchmark `cryo dump` of a process with 1 GiB (or $MIB MiB) of non-zero
# anonymous memory, written to the page cache (no fsync of pages).
# Usage: scripts/bench-dump.sh [runs] ; env MIB=1024 DIR=/tmp/cryo-bench
#        READER=vmsplice|readv (how pages are read, default vmsplice)
# Reports the median total and frozen time over the runs (default 5).
set -euo pipefail
RUNS=${1:-5}
MIB=${MIB:-1024}
DIR=${DIR:-/tmp/cryo-bench}
READER=${READER:-vmsplice}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release -q -p cryo-engine --manifest-path "$ROOT/Cargo.toml"
CRYO="$ROOT/target/x86_64-unknown-linux-gnu/release/cryo"
mkdir -p "$DIR"
gcc -O2 -o "$DIR/bigmem" "$ROOT/crates/engine/benches/bigmem.c"
totals=(); frozens=()
for i in $(seq "$RUNS"); do
  rm -rf "$DIR/img" && mkdir -p "$DIR/img"
  sync  # start every run with no dirty pages queued (else writeback throttles the page cache)
  coproc BIG { exec "$DIR/bigmem" "$MIB"; }
  read -r line <&"${BIG[0]}"
  pid=$BIG_PID
  out=$("$CRYO" dump -t "$pid" -D "$DIR/img" --page-reader "$READER")
  wait "$pid" 2>/dev/null || true
  f=$(sed -E 's/.*frozen ([0-9.]+) ms.*/\1/' <<<"$out")
  t=$(sed -E 's/.*total ([0-9.]+) ms.*/\1/' <<<"$out")
  totals+=("$t"); frozens+=("$f")
  echo "run $i: total ${t} ms, frozen ${f} ms ($(du -sh "$DIR/img" | cut -f1))"
  sleep 0.5
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "median of $RUNS: total $(median "${totals[@]}") ms, frozen $(median "${frozens[@]}") ms  (${MIB} MiB, $READER, $DIR)"
