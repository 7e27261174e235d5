#!/usr/bin/env bash
# cross-criu-tcp.sh CRIU: an established TCP connection crosses between cryo and CRIU 4.2 both ways
# (e.g. the zdtm kit's /var/tmp/zdtm/criu/criu/criu). tests/progs/tcppair.c: the server (dumped) in
# network namespace A, its peer in B across a veth pair, data queued both ways at dump time; one
# engine dumps with --tcp-established, the other restores; both ends must then get every byte and
# exchange more, and no lock rule may be left. Runs in a fresh PID + mount namespace. Prints one line
# per direction; exits 1 if any failed. Needs root and gcc; builds cryo (release). Not part of CI (CI
# has no CRIU 4.2). LOCK=iptables|nftables picks the lock (default iptables: CRIU's default build).
set -euo pipefail
cd "$(dirname "$0")/.."
CRIU=${1:?usage: cross-criu-tcp.sh CRIU_BINARY}
LOCK=${LOCK:-iptables}
if [ -z "${CROSS_TCP_IN_NS:-}" ]; then
	cargo build --release -q -p cryo-engine
	exec env CROSS_TCP_IN_NS=1 unshare --pid --fork --mount --mount-proc --propagation private "$0" "$@"
fi
CRYO=$PWD/target/x86_64-unknown-linux-gnu/release/cryo
d=/tmp/anchor
mkdir -p $d
mount -t tmpfs cross $d
gcc -O2 -I crates/engine/tests/progs -o $d/tcppair crates/engine/tests/progs/tcppair.c
fails=0
for way in "cryo:criu" "criu:cryo"; do
	dumper=${way%%:*} restorer=${way##*:}
	rm -rf $d/run; mkdir -p $d/run/img
	export CRYO CRIU LOCK dumper restorer
	unshare --net bash -c '
		set -u; r=/tmp/anchor/run
		ip link set lo up; : > $r/srv.ready.tmp.in
		unshare --net sh -c "echo \$\$ > $r/b.pid; ip link set lo up; while [ ! -e $r/b.go ]; do sleep 0.02; done;
			ip addr add 10.77.0.2/24 dev vb; ip link set vb up; exec /tmp/anchor/tcppair peer $r 10.77.0.1 7001" \
			>$r/peer.out 2>&1 &
		while [ ! -s $r/b.pid ]; do sleep 0.02; done
		ip link add va type veth peer name vb netns $(cat $r/b.pid)
		ip addr add 10.77.0.1/24 dev va; ip link set va up
		setsid /tmp/anchor/tcppair server $r 10.77.0.1 7001 <$r/srv.ready.tmp.in >$r/srv.out 2>&1 10>&- & P=$!
		while [ ! -e $r/srv.listening ]; do sleep 0.02; done; touch $r/b.go
		while [ ! -s $r/srv.ready ]; do sleep 0.02; done
		if [ $dumper = cryo ]; then $CRYO dump --tcp-established --network-lock $LOCK -t $P -D $r/img 2>$r/err || exit 3
		else $CRIU dump --tcp-established --network-lock $LOCK -t $P -D $r/img -o dump.log || exit 3; fi
		wait $P 2>/dev/null
		if [ $restorer = cryo ]; then $CRYO restore --tcp-established -D $r/img -d 2>>$r/err || exit 4
		else $CRIU restore --tcp-established -D $r/img -d -o restore.log || exit 4; fi
		touch $r/go
		for i in $(seq 300); do [ -s $r/srv.result ] && [ -s $r/peer.result ] && break; sleep 0.05; done
		left=$( (nft list ruleset; iptables -S) 2>/dev/null | grep -ci "criu\|0xc114" || true)
		echo "server: $(cat $r/srv.result 2>/dev/null) peer: $(cat $r/peer.result 2>/dev/null) rules left: $left"
		kill -9 $(cat $r/b.pid) $P 2>/dev/null
		[ "$(cat $r/srv.result 2>/dev/null)" = ok ] && [ "$(cat $r/peer.result 2>/dev/null)" = ok ] && [ "$left" = 0 ]
	' >$d/run/out 2>&1 && res=ok || { res="FAILED ($(tail -3 $d/run/out | tr '\n' ' ') $(tail -3 $d/run/img/*.log 2>/dev/null | tr '\n' ' ' || true) $(cat $d/run/err 2>/dev/null || true))"; fails=1; }
	echo "$dumper dump -> $restorer restore ($LOCK): $res $(tail -1 $d/run/out)" || true
done
exit $fails
