#!/usr/bin/env bash
# The image-identity check of issue 11: a refactoring must not change one byte of what `cryo dump` writes.
#
#   scripts/image-identity.sh OLD_CRYO [NEW_CRYO]
#   scripts/image-identity.sh --rev REV [NEW_CRYO]     (builds REV's cryo first: scripts/build-baseline.sh)
#
# Starts real test programs (crates/engine/tests/progs: memory patterns, threads, pipes and FIFOs with
# data, eventfd/timerfd/signalfd/inotify/epoll, file locks, memfds, ghost files, ptys, a non-root user's
# credentials, sigactions, timers, rlimits, threads asleep in system calls), each in a fresh PID and mount
# namespace, pinned to one CPU, and dumps each live process with --leave-running: once with OLD_CRYO
# (thrown away), then with OLD_CRYO and with NEW_CRYO (default: this tree's debug build). The two image
# sets are compared file by file, byte for byte; a difference is reported with the file, the first
# differing byte (for pages, the page and its address) and a diff of crit's JSON of both images.
# What two dumps of one live process may legitimately differ in (dump timings in stats-dump, the run id
# in inventory.img, the clocks in timens-*.img, the time left on armed timers and timerfds) is masked,
# field by field; the list and the reasons are in crates/engine/tests/restore/identity.rs.
#
# Environment: CRYO_IDENTITY_CASES=state,fdkinds,... runs only those programs; CRYO_IDENTITY_KEEP=DIR keeps
# both image sets of every program under DIR. Needs root (namespaces, dumps). Exit status 0: identical.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-}" = --rev ]; then
	[ $# -ge 2 ] || { echo "usage: $0 --rev REV [NEW_CRYO]" >&2; exit 2; }
	old=$("$repo/scripts/build-baseline.sh" "$2")
	shift 2
else
	[ $# -ge 1 ] || { echo "usage: $0 OLD_CRYO [NEW_CRYO] | --rev REV [NEW_CRYO]" >&2; exit 2; }
	old=$1
	shift
fi
old=$(realpath "$old")
args=()
if [ $# -ge 1 ]; then
	args=(CRYO_NEW="$(realpath "$1")")
fi
cd "$repo"
exec env CRYO_BASELINE="$old" "${args[@]}" cargo test -q -p cryo-engine --test restore identity_against_baseline \
	-- --ignored --exact identity::identity_against_baseline --nocapture
