#!/bin/sh
# Restore benchmark (run as root): medians of N restores of
#  - "big":   a process with 1 GiB of non-zero anonymous memory (tests/progs/bigmem.c)
#  - "small": the CRIU 4.2 loop_heap fixture (< 5 MiB)
# Each restore runs in a fresh PID namespace; the time is from the start of
# `cryo restore -d` to its return, when every thread has gone back to its
# registers (rt_sigreturn) and the program runs. The big image is made by
# `cryo dump` once per run. Usage: restore.sh [N] (default 7).
set -eu
N=${1:-7}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
cargo build --release -p cryo-engine --manifest-path "$ROOT/Cargo.toml" >/dev/null 2>&1
CRYO=$ROOT/target/x86_64-unknown-linux-gnu/release/cryo
W=$(mktemp -d /tmp/cryo-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
gcc -O2 -o "$W/bigmem" "$ROOT/crates/engine/tests/progs/bigmem.c"
mkdir -p /tmp/cryo-fx/bin
F="$ROOT/fixtures/criu-4.2/loop_heap"
[ -f /tmp/cryo-fx/bin/loop_heap ] || gcc -O2 -o /tmp/cryo-fx/bin/loop_heap "$F/src/loop_heap.c"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

unshare --pid --fork --mount --mount-proc --propagation private sh -c "
  mkdir -p /tmp/anchor; mount -t tmpfs bench /tmp/anchor
  mkdir -p $W/img $W/run; cd $W/run
  $W/bigmem 1024 $W/run >/dev/null 2>&1 </dev/null & P=\$!
  while [ ! -s $W/run/bigmem.ready ]; do sleep 0.05; done
  $CRYO dump -t \$P -D $W/img >/dev/null; wait \$P
  for i in \$(seq $N); do
    t0=\$(date +%s%N); $CRYO restore -D $W/img -d; t1=\$(date +%s%N)
    echo big \$(( (t1 - t0) / 1000 ))
    kill -USR1 \$P; while [ ! -s $W/run/bigmem.verify ]; do sleep 0.01; done
    grep -q ok $W/run/bigmem.verify || echo 'big: restored memory is wrong' >&2
    rm -f $W/run/bigmem.verify; kill -9 \$P; while kill -0 \$P 2>/dev/null; do sleep 0.01; done
  done
  for i in \$(seq $N); do
    t0=\$(date +%s%N); $CRYO restore -D $F/images -d; t1=\$(date +%s%N)
    echo small \$(( (t1 - t0) / 1000 ))
    kill -9 9217; while kill -0 9217 2>/dev/null; do sleep 0.01; done
  done
" 2>/dev/null > "$W/times"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for k in big small; do
  printf '%s: median %s us over %s runs (all: %s)\n' "$k" \
    "$(grep "^$k " "$W/times" | cut -d' ' -f2 | median)" "$N" "$(grep "^$k " "$W/times" | cut -d' ' -f2 | tr '\n' ' ')"
done
