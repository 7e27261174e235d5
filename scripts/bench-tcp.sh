#!/bin/bash
# Benchmark dump + restore of a process holding N (default 1000) established
# TCP connections, each with 3000 bytes in its receive queue (the peer's,
# unread) — the peer is another process, not dumped. cryo and, when it is
# built here, CRIU 4.2 side by side, with the same network lock method.
#
# Usage: scripts/bench-tcp.sh [runs]   (default 5)
#   env N=1000                 connections
#       LOCK=nftables|iptables the network lock (both tools)
#       CRYO=path              cryo binary (default target/.../release/cryo)
#       CRIU=path              CRIU 4.2 (default /var/tmp/zdtm/criu/criu/criu; NOCRIU=1 skips it)
#
# Everything runs in a fresh network + PID + mount namespace (loopback
# only). After each restore both processes are told to read and check
# every connection's data (and the server answers on each), so a run counts
# only if all N connections came back intact. Reported: the median over the
# runs of dump, restore and their sum, and the sum per connection.
set -euo pipefail
RUNS=${1:-5}
N=${N:-1000}
LOCK=${LOCK:-nftables}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CRYO=${CRYO:-$ROOT/target/x86_64-unknown-linux-gnu/release/cryo}
CRIU=${CRIU:-/var/tmp/zdtm/criu/criu/criu}
if [ -z "${BENCH_TCP_IN_NS:-}" ]; then
	exec env BENCH_TCP_IN_NS=1 unshare --net --pid --fork --mount --mount-proc --propagation private "$0" "$@"
fi
ip link set lo up
W=$(mktemp -d /tmp/cryo-bench-tcp.XXXXXX)
mount -t tmpfs bench "$W"
trap 'umount -l "$W" 2>/dev/null; rmdir "$W" 2>/dev/null || true' EXIT
gcc -O2 -I "$ROOT/crates/engine/tests/progs" -o "$W/tcpmany" "$ROOT/crates/engine/tests/progs/tcpmany.c"
ulimit -n $((N * 4 + 256)) # the program: 2 per connection; the dumper holds each connection in repair mode as well
now() { date +%s%N; }
wait_file() { local i=0; while [ ! -s "$1" ]; do sleep 0.01; i=$((i + 1)); [ $i -lt 6000 ] || { echo "timeout: $1" >&2; return 1; }; done; }

# one TOOL PORT: prints "dump_ms restore_ms"
one() {
	local tool=$1 port=$2 d="$W/run"
	rm -rf "$d"; mkdir -p "$d/img"
	setsid "$W/tcpmany" server "$d" "$N" "$port" </dev/null >/dev/null 2>&1 10>&- &
	local s=$!
	wait_file "$d/many.listening"
	"$W/tcpmany" peer "$d" "$N" "$port" </dev/null >/dev/null 2>&1 &
	local p=$!
	wait_file "$d/many.ready"
	local t0 t1 t2
	t0=$(now)
	if [ "$tool" = cryo ]; then
		"$CRYO" dump -v0 --tcp-established --network-lock "$LOCK" -t "$s" -D "$d/img" 2>"$d/dump.err" \
			|| { cat "$d/dump.err" >&2; return 1; }
	else
		"$CRIU" dump --tcp-established --network-lock "$LOCK" -t "$s" -D "$d/img" -o dump.log \
			|| { tail -5 "$d/img/dump.log" >&2; return 1; }
	fi
	t1=$(now)
	wait "$s" 2>/dev/null || true
	if [ "$tool" = cryo ]; then
		"$CRYO" restore --tcp-established -D "$d/img" -d 2>"$d/rst.err" || { cat "$d/rst.err" >&2; return 1; }
	else
		"$CRIU" restore --tcp-established -D "$d/img" -d -o rst.log || { tail -5 "$d/img/rst.log" >&2; return 1; }
	fi
	t2=$(now)
	kill -USR1 "$s" "$p"
	wait_file "$d/many.verify"; wait_file "$d/peer.verify"
	local v pv
	v=$(cat "$d/many.verify"); pv=$(cat "$d/peer.verify")
	kill -9 "$s" "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
	[ "$v" = "ok $N" ] && [ "$pv" = "ok $N" ] || { echo "$tool: server: $v, peer: $pv" >&2; return 1; }
	if nft list ruleset | grep -q CRIU || iptables -S | grep -qi 0xc114; then
		echo "$tool: a network lock rule was left behind" >&2; return 1
	fi
	echo "$(( (t1 - t0) / 1000000 )) $(( (t2 - t1) / 1000000 ))"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

tools=(cryo)
if [ -z "${NOCRIU:-}" ] && [ -x "$CRIU" ]; then tools+=(criu); fi
port=20000
echo "N=$N connections, 3000 bytes queued each, lock=$LOCK, $RUNS runs; load: $(cut -d' ' -f1-3 /proc/loadavg)"
for tool in "${tools[@]}"; do
	: > "$W/$tool.times"
	for r in $(seq "$RUNS"); do
		port=$((port + 1))
		one "$tool" "$port" >> "$W/$tool.times"
	done
	d=$(cut -d' ' -f1 "$W/$tool.times" | median)
	rs=$(cut -d' ' -f2 "$W/$tool.times" | median)
	sum=$(awk '{print $1 + $2}' "$W/$tool.times" | median)
	printf '%-5s dump %6s ms  restore %6s ms  total %6s ms  per connection %s us   (runs: %s)\n' \
		"$tool" "$d" "$rs" "$sum" "$(awk -v s="$sum" -v n="$N" 'BEGIN {printf "%.0f", s * 1000 / n}')" \
		"$(tr '\n' ',' < "$W/$tool.times" | sed 's/,$//')"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
