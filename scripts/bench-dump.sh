#!/bin/bash
# Benchmark `cryo dump` of a process with 1 GiB (or $MIB MiB) of non-zero
# anonymous memory, written to the page cache (no fsync of pages), against a
# reference write of the same size interleaved with it.
#
# Usage: scripts/bench-dump.sh [runs]   (default 9)
#   env MIB=1024            size of the target's memory
#       DIR=/tmp/cryo-bench  where images (and the reference file) go
#       READER=vmsplice|readv  how pages are read (cryo --page-reader)
#       CRYO_ARGS="..."      extra arguments for cryo dump (e.g. -v3: time per phase)
#       VERBOSE=1            print what cryo prints after its summary line
#       REF_BS=1M            block size of the reference dd (see below)
#
# Why a reference: on this VM, writing 1 GiB to the page cache takes from
# 0.25 s to over 3 s from one minute to the next: the guest's free memory
# is handed back to the host by free page reporting (blocks of order >= 9,
# 2 MiB), and the first touch of such a page faults on the host (perf shows
# the time in the copy into the new page-cache folios). A bare median of our
# total says little, so every run also times a `dd if=/dev/zero` of the same
# size into $DIR/ref while the target is alive (the memory state the dump
# sees), the order of the two alternating between runs. The reference writes
# 1 MiB at a time (REF_BS), as cryo does (one 1 MiB pipe per splice): with
# bs=4M the kernel allocates 2 MiB page-cache folios, which always come from
# reported (host-discarded) blocks, and dd takes 0.7-3.2 s where bs=1M takes
# 0.25-0.35 s at the same minute. Reported: medians of frozen, total and
# reference, the ratio of the medians and the median of per-run ratios
# total/reference.
# Each run starts with the previous images and reference file removed and
# `sync`ed (no dirty pages queued, else writeback throttles the page cache),
# and waits 1 s after starting the target and between dump and reference:
# right after a 1 GiB free or write, the frozen window and the page-table
# walks were up to 3x slower (free page reporting, writeback).
# Also prints the load average before and after: the machine is shared.
set -euo pipefail
RUNS=${1:-9}
MIB=${MIB:-1024}
DIR=${DIR:-/tmp/cryo-bench}
READER=${READER:-vmsplice}
REF_BS=${REF_BS:-1M}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release -q -p cryo-engine --manifest-path "$ROOT/Cargo.toml"
CRYO="$ROOT/target/x86_64-unknown-linux-gnu/release/cryo"
mkdir -p "$DIR"
gcc -O2 -o "$DIR/bigmem" "$ROOT/crates/engine/benches/bigmem.c"
ms_now() { date +%s%N; }
reference() {
  local s e
  s=$(ms_now)
  dd if=/dev/zero of="$DIR/ref" bs="$REF_BS" count=$((MIB * 1048576 / $(numfmt --from=iec "$REF_BS"))) status=none
  e=$(ms_now)
  rm -f "$DIR/ref"
  awk -v a="$s" -v b="$e" 'BEGIN {printf "%.1f", (b - a) / 1e6}'
}
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
totals=(); frozens=(); refs=(); ratios=()
for i in $(seq "$RUNS"); do
  rm -rf "$DIR/img" "$DIR/ref" && mkdir -p "$DIR/img"
  sync
  coproc BIG { exec "$DIR/bigmem" "$MIB"; }
  read -r _ <&"${BIG[0]}"
  pid=$BIG_PID
  sleep 1  # let the kernel settle after the target's start (and the last run's frees)
  if ((i % 2)); then r=$(reference); sleep 1; fi
  # shellcheck disable=SC2086
  out=$("$CRYO" dump -t "$pid" -D "$DIR/img" --page-reader "$READER" ${CRYO_ARGS:-})
  kill "$pid" 2>/dev/null || true  # still there with -R (--leave-running)
  wait "$pid" 2>/dev/null || true
  if ! ((i % 2)); then sleep 1; r=$(reference); fi
  f=$(head -1 <<<"$out" | sed -E 's/.*frozen ([0-9.]+) ms.*/\1/')
  t=$(head -1 <<<"$out" | sed -E 's/.*total ([0-9.]+) ms.*/\1/')
  [[ -n ${VERBOSE:-} ]] && tail -n +2 <<<"$out"
  q=$(awk -v a="$t" -v b="$r" 'BEGIN {printf "%.2f", a / b}')
  totals+=("$t"); frozens+=("$f"); refs+=("$r"); ratios+=("$q")
  echo "run $i: total ${t} ms, frozen ${f} ms, reference ${r} ms, ratio ${q} ($(du -sh "$DIR/img" | cut -f1))"
  sleep 0.5
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mt=$(median "${totals[@]}"); mr=$(median "${refs[@]}")
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "median of $RUNS: total $mt ms, frozen $(median "${frozens[@]}") ms, reference write $mr ms;" \
  "total/reference $(awk -v a="$mt" -v b="$mr" 'BEGIN {printf "%.2f", a / b}') (median per-run ratio $(median "${ratios[@]}"))" \
  "(${MIB} MiB, $READER, reference bs=$REF_BS, $DIR)"
