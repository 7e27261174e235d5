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
#  3. lazy restore of $MIB MiB (restore --lazy-pages + lazy-pages): the time
#     to the tree running (the restore's "resumed" stage, CRYO_TIMING) and
#     to every page in (the daemon's exit), against an eager restore, reading
#     the pages file into fresh memory (one pread, the baseline), and CRIU 4.2
#     (restore --lazy-pages of the same images with its own daemon).
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
gcc -O2 -I"$P" -o "$DIR/lazymem" "$P/lazymem.c"
# The baseline of 3.: the pages file read into fresh anonymous memory.
cat >"$DIR/readpages.c" <<'C'
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
int main(int c, char **v) {
	int fd = open(v[1], O_RDONLY); struct stat st; fstat(fd, &st);
	struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a);
	char *m = mmap(0, st.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (off_t o = 0; o < st.st_size;) { ssize_t n = pread(fd, m + o, st.st_size - o, o); if (n <= 0) return 1; o += n; }
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("%.1f\n", (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6);
	return 0;
}
C
gcc -O2 -o "$DIR/readpages" "$DIR/readpages.c"
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

echo "== 3. lazy restore of $MIB MiB"
rm -f "$DIR"/lazymem.*
setsid "$DIR/lazymem" "$MIB" "$DIR" read </dev/null >/dev/null 2>&1 &
while ! grep -qs ready "$DIR/lazymem.status"; do sleep 0.05; done
pid=$(sed -nE 's/.*pid=([0-9]+).*/\1/p' "$DIR/lazymem.status")
rm -rf "$DIR/lz" && mkdir "$DIR/lz"
"$CRYO" dump -t "$pid" -D "$DIR/lz" >/dev/null
while [ -e "/proc/$pid" ]; do sleep 0.05; done
resumed() { sed -nE 's/cryo restore: resumed at ([0-9.]+) ms/\1/p' <<<"$1"; }
gone() { while [ -e "/proc/$1" ]; do sleep 0.002; done; }
base=(); eager=(); lzrun=(); lzall=(); crun=(); call=(); cerr=""
for i in $(seq "$RUNS"); do
  base+=("$("$DIR/readpages" "$DIR"/lz/pages-1.img)")
  out=$(CRYO_TIMING=1 "$CRYO" restore -D "$DIR/lz" -d 2>&1 >/dev/null); eager+=("$(resumed "$out")")
  stop
  rm -f "$DIR/lz/lp.pid"
  "$CRYO" lazy-pages -D "$DIR/lz" -d --pidfile "$DIR/lz/lp.pid" -o lazy.log
  lp=$(cat "$DIR/lz/lp.pid"); t0=$(now)
  out=$(CRYO_TIMING=1 "$CRYO" restore --lazy-pages -D "$DIR/lz" -d 2>&1 >/dev/null); lzrun+=("$(resumed "$out")")
  gone "$lp"; t1=$(now); lzall+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", (b - a) / 1e6}')")
  rm -f "$DIR/lazymem.verify"; kill -USR1 "$pid"
  while ! grep -qs . "$DIR/lazymem.verify"; do sleep 0.01; done
  v=$(cat "$DIR/lazymem.verify"); stop
  if [ -x "$CRIU" ]; then
    # CRIU 4.2 on the same images: its daemon, then its lazy restore.
    rm -f "$DIR/lz/clp.pid" "$DIR/lz/criu-lp.log" "$DIR/lz/criu-rst.log"
    if "$CRIU" lazy-pages -D "$DIR/lz" -d --pidfile "$DIR/lz/clp.pid" -o criu-lp.log >/dev/null 2>&1; then
      clp=$(cat "$DIR/lz/clp.pid"); t0=$(now)
      if "$CRIU" restore --lazy-pages -D "$DIR/lz" -d -o criu-rst.log >/dev/null 2>&1; then
        t1=$(now); gone "$clp"; t2=$(now)
        crun+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", (b - a) / 1e6}')")
        call+=("$(awk -v a="$t0" -v b="$t2" 'BEGIN {printf "%.1f", (b - a) / 1e6}')")
        stop
      else
        cerr="criu restore --lazy-pages failed: $(grep -m1 -i error "$DIR/lz/criu-rst.log" || tail -1 "$DIR/lz/criu-rst.log")"
        kill -9 "$clp" 2>/dev/null || true
      fi
    else
      cerr="criu lazy-pages failed: $(tail -1 "$DIR/lz/criu-lp.log")"
    fi
  fi
  echo "run $i: pread baseline ${base[-1]} ms; eager restore running at ${eager[-1]} ms; lazy running at ${lzrun[-1]} ms, all in at ${lzall[-1]} ms ($v); criu lazy ${crun[-1]:-n/a} / ${call[-1]:-n/a} ms"
done
mb=$(median "${base[@]}"); me=$(median "${eager[@]}"); mr=$(median "${lzrun[@]}"); ma=$(median "${lzall[@]}")
echo "median of $RUNS: lazy restore running at $mr ms (eager $me ms, ratio $(ratio "$me" "$mr")); all pages in at $ma ms"
echo "  = $(ratio "$ma" "$mb") x reading the pages file into fresh memory ($mb ms); eager restore $(ratio "$me" "$mb") x"
if ((${#crun[@]})); then echo "  criu 4.2 lazy: restore returned at $(median "${crun[@]}") ms, its daemon done at $(median "${call[@]}") ms"; fi
[ -n "$cerr" ] && echo "  $cerr"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
rm -rf "$DIR/img" "$DIR/pre" "$DIR/lz"
