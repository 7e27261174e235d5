#!/usr/bin/env bash
# The main job on a bundled sample: start a small program (fixtures/criu-4.2/loop_heap: a counter and a
# 256 KiB heap pattern), checkpoint it with `cryo dump`, look at the images with `crit`, restore it with
# `cryo restore` under the same PID, and let the program itself check that its heap survived.
# Needs root (ptrace, clone3 with set_tid), gcc and cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p cryo-engine -p cryo-crit
CRYO=$PWD/target/x86_64-unknown-linux-gnu/release/cryo
CRIT=$PWD/target/x86_64-unknown-linux-gnu/release/crit
work=$(mktemp -d /tmp/cryo-demo.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p /tmp/anchor "$work/images"
gcc -O2 -o "$work/loop_heap" fixtures/criu-4.2/loop_heap/src/loop_heap.c

# Started the way a daemon is started: in a session of its own (setsid), so that the restore does not
# need the session leader of the shell this script runs in (else: dump and restore with -j).
setsid "$work/loop_heap" </dev/null >/dev/null 2>&1 &
pid=$!
sleep 0.5
echo "== running:  $(cat /tmp/anchor/loop_heap.status)"

echo "== cryo dump -t $pid -D $work/images"
"$CRYO" dump -t "$pid" -D "$work/images"
wait "$pid" 2>/dev/null || true   # the dump killed it; reap it so its PID is free again

echo "== crit x $work/images ps / mems (first lines)"
"$CRIT" x "$work/images" ps
"$CRIT" x "$work/images" mems | head -6
"$CRIT" check "$work/images"

echo "== cryo restore -D $work/images -d"
"$CRYO" restore -D "$work/images" -d --pidfile "$work/pid"
echo "restored pid $(cat "$work/pid") (was $pid)"
rm -f /tmp/anchor/loop_heap.verify.status
kill -USR1 "$pid"
for _ in $(seq 50); do [ -s /tmp/anchor/loop_heap.verify.status ] && break; sleep 0.1; done
echo "== the program checks itself after restore: $(cat /tmp/anchor/loop_heap.verify.status)"
grep -q "heap=ok" /tmp/anchor/loop_heap.verify.status
