#!/usr/bin/env bash
# cross-criu.sh CRIU: images cross between cryo and a real CRIU (4.2, e.g. the zdtm kit's
# /var/tmp/zdtm/criu/criu/criu) both ways. A program with threads inside interrupted system calls
# (tests/progs/joiners.c) is dumped by one engine and restored by the other; it must finish every
# thread's work with that thread's own result. Prints one line per direction; exits 1 if any failed.
# Needs root and gcc; builds cryo (release). Not part of CI (CI has no CRIU 4.2).
set -euo pipefail
cd "$(dirname "$0")/.."
CRIU=${1:?usage: cross-criu.sh CRIU_BINARY}
cargo build --release -q -p cryo-engine
CRYO=$PWD/target/x86_64-unknown-linux-gnu/release/cryo
work=$(mktemp -d /tmp/cryo-cross.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
gcc -O2 -pthread -o "$work/joiners" crates/engine/tests/progs/joiners.c
status() { cat "$work/joiners.status" 2>/dev/null || true; }
wait_for() { for _ in $(seq 100); do status | grep -q "$1" && return 0; sleep 0.1; done; return 1; }
fails=0
for way in "cryo:criu" "criu:cryo"; do
	dumper=${way%%:*} restorer=${way##*:}
	rm -rf "$work/img" "$work/joiners.status"; mkdir "$work/img"
	setsid "$work/joiners" "$work" </dev/null >/dev/null 2>&1 &
	pid=$!
	wait_for ready
	sleep 0.3   # every thread inside its call
	if [ "$dumper" = cryo ]; then "$CRYO" dump -t "$pid" -D "$work/img" >/dev/null
	else "$CRIU" dump -t "$pid" -D "$work/img" -o dump.log; fi
	wait "$pid" 2>/dev/null || true
	if [ "$restorer" = cryo ]; then "$CRYO" restore -D "$work/img" -d
	else "$CRIU" restore -D "$work/img" -d -o restore.log; fi
	kill -USR1 "$pid"
	if wait_for "joined=" && status | grep -qx "joined=100,101,102"; then
		kill -USR1 "$pid"
		wait_for done && r=ok || r="no 'done' after the second SIGUSR1"
	else
		r="threads returned: $(status)"
	fi
	kill -9 "$pid" 2>/dev/null || true
	pid=
	echo "dumped by $dumper, restored by $restorer: $r"
	[ "$r" = ok ] || fails=$((fails + 1))
	sleep 1   # the pid is free again once init has reaped it
done
exit $((fails > 0))
