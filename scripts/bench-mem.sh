#!/bin/bash
# Benchmarks of issue 14 (memory over time), with CRIU 4.2 side by side where it can:
#  1. `dump --leave-running` of a process with $MIB MiB (default 1024) of
#     non-zero anonymous memory: the time the tree is stopped, live
#     (copy-before-write, the default) against --frozen-copy and CRIU 4.2
#     (which keeps the tree frozen for the whole dump); and the program's
#     write throughput while the live copy is written (stamper, steps/s
#     during the dump against idle).
#  2. pre-dump of 10 MiB (1%) dirty out of $MIB MiB: the time stopped, for
#     a chain of pre-dumps (CRIU 4.2 cannot pre-dump here: no soft-dirty;
#     its answer is printed).
# Reports medians of $RUNS runs and the ratios of the medians.
#
# Usage: scripts/bench-mem.sh [runs]   (default 7)
#   env MIB=1024  DIR=/tmp/cryo-bench-mem  CRIU=/var/tmp/zdtm/criu/criu/criu
set -euo pipefail
RUNS=${1:-7}
MIB=${MIB:-1024}
DIR=${DIR:-/tmp/cryo-bench-mem}
CRIU=${CRIU:-/var/tmp/zdtm/criu/criu/criu}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release -q -p cryo-engine -p cryo-crit --manifest-path "$ROOT/Cargo.toml"
BIN="$ROOT/target/x86_64-unknown-linux-gnu/release"
CRYO="$BIN/cryo"
mkdir -p "$DIR"
P="$ROOT/crates/engine/tests/progs"
gcc -O2 -I"$P" -o "$DIR/dirty" "$P/dirty.c"
gcc -O2 -I"$P" -o "$DIR/stamper" "$P/stamper.c"
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
frozen_of() { sed -nE '1s/.*frozen ([0-9.]+) ms.*/\1/p' <<<"$1"; }
# frozen_time (us) of an image set's stats-dump, in ms
stats_frozen() {
  "$BIN/crit" show "$1/stats-dump" | tr -d ' \n' | sed -nE 's/.*"frozen_time":([0-9]+).*/\1/p' |
    awk '{printf "%.1f", $1 / 1000}'
}
start() { # start PROG: the target in its own session; sets pid
  rm -f "$DIR"/*.status "$DIR"/*.verify
  setsid "$DIR/$1" "$MIB" "$DIR" </dev/null >/dev/null 2>&1 &
  while ! grep -qs ready "$DIR/$1.status"; do sleep 0.05; done
  pid=$(sed -nE 's/.*pid=([0-9]+).*/\1/p' "$DIR/$1.status")
  sleep 1
}
stop() { kill -9 "$pid" 2>/dev/null || true; while [ -e "/proc/$pid" ]; do sleep 0.05; done; }
ask() { # the stamper's step count now
  rm -f "$DIR/stamper.verify"; kill -USR1 "$pid"
  while ! grep -qs . "$DIR/stamper.verify"; do sleep 0.001; done
  sed -nE 's/ok c=([0-9]+)/\1/p' "$DIR/stamper.verify"
}
now() { date +%s%N; }
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== 1. dump --leave-running of $MIB MiB"
live=(); frozen=(); criu=(); thr=()
for i in $(seq "$RUNS"); do
  start dirty
  rm -rf "$DIR/img" && mkdir "$DIR/img"
  out=$("$CRYO" dump -R -t "$pid" -D "$DIR/img"); live+=("$(frozen_of "$out")")
  rm -rf "$DIR/img" && mkdir "$DIR/img"
  out=$("$CRYO" dump -R --frozen-copy -t "$pid" -D "$DIR/img"); frozen+=("$(frozen_of "$out")")
  if [ -x "$CRIU" ]; then
    rm -rf "$DIR/img" && mkdir "$DIR/img"
    if "$CRIU" dump -R -t "$pid" -D "$DIR/img" -o dump.log >/dev/null 2>&1; then
      criu+=("$(stats_frozen "$DIR/img")")
    else
      echo "criu dump failed: $(tail -2 "$DIR/img/dump.log")"
    fi
  fi
  stop
  # Throughput of a writer while its live copy is written.
  start stamper
  rm -rf "$DIR/img" && mkdir "$DIR/img"
  c0=$(ask); t0=$(now)
  "$CRYO" dump -R -t "$pid" -D "$DIR/img" >/dev/null
  c1=$(ask); t1=$(now)
  sleep "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b - a) / 1e9}')"
  c2=$(ask); t2=$(now)
  during=$(awk -v c="$((c1 - c0))" -v a="$t0" -v b="$t1" 'BEGIN {print c / ((b - a) / 1e9)}')
  idle=$(awk -v c="$((c2 - c1))" -v a="$t1" -v b="$t2" 'BEGIN {print c / ((b - a) / 1e9)}')
  thr+=("$(ratio "$during" "$idle")")
  stop
  echo "run $i: stopped live ${live[-1]} ms, frozen copy ${frozen[-1]} ms, criu ${criu[-1]:-n/a} ms; writer throughput during the live copy ${thr[-1]} of idle"
done
ml=$(median "${live[@]}"); mf=$(median "${frozen[@]}")
echo "median of $RUNS: stopped live $ml ms, frozen copy $mf ms (ratio $(ratio "$mf" "$ml"))"
if ((${#criu[@]})); then mc=$(median "${criu[@]}"); echo "  criu 4.2 frozen $mc ms (criu/cryo live $(ratio "$mc" "$ml"))"; fi
echo "  writer throughput during the live copy: $(median "${thr[@]}") of idle (median)"

echo "== 2. pre-dump of 1% dirty ($((MIB / 100)) MiB) of $MIB MiB"
start dirty
rm -rf "$DIR"/pre && mkdir -p "$DIR/pre/0"
first=$("$CRYO" pre-dump -t "$pid" -D "$DIR/pre/0")
echo "first pre-dump (all pages): stopped $(frozen_of "$first") ms"
pre=(); pages=()
for i in $(seq "$RUNS"); do
  g=$(sed -nE 's/.*gen=([0-9]+).*/\1/p' "$DIR/dirty.status")
  kill -USR1 "$pid"
  while ! grep -qs "gen=$((g + 1))$" "$DIR/dirty.status"; do sleep 0.01; done
  mkdir "$DIR/pre/$i"
  out=$("$CRYO" pre-dump -t "$pid" -D "$DIR/pre/$i" --prev-images-dir "../$((i - 1))")
  pre+=("$(frozen_of "$out")")
  pages+=("$(sed -nE '1s/.* ([0-9]+) page\(s\).*/\1/p' <<<"$out")")
  echo "pre-dump $i: stopped ${pre[-1]} ms, ${pages[-1]} pages"
done
mkdir "$DIR/pre/final"
out=$("$CRYO" dump -t "$pid" -D "$DIR/pre/final" --track-mem --prev-images-dir "../$RUNS")
echo "final dump of the chain: stopped $(frozen_of "$out") ms"
if [ -x "$CRIU" ]; then
  # CRIU 4.2 restores cryo's chain.
  while [ -e "/proc/$pid" ]; do sleep 0.05; done
  if "$CRIU" restore -D "$DIR/pre/final" -d -o restore.log >/dev/null 2>&1; then
    rm -f "$DIR/dirty.verify"; kill -USR2 "$pid"
    while ! grep -qs . "$DIR/dirty.verify"; do sleep 0.05; done
    echo "criu 4.2 restored cryo's chain: $(cat "$DIR/dirty.verify")"
  else
    echo "criu 4.2 restore of the chain failed: $(tail -2 "$DIR/pre/final/restore.log")"
  fi
  stop
  start dirty
  mkdir -p "$DIR/pre/criu"
  "$CRIU" pre-dump -t "$pid" -D "$DIR/pre/criu" -o pre.log >/dev/null 2>&1 &&
    echo "criu pre-dump worked" || echo "criu 4.2 pre-dump: $(grep -m1 -i 'error' "$DIR/pre/criu/pre.log" || tail -1 "$DIR/pre/criu/pre.log")"
fi
stop
echo "median of $RUNS pre-dumps: stopped $(median "${pre[@]}") ms, $(median "${pages[@]}") pages"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
rm -rf "$DIR/img" "$DIR/pre"
