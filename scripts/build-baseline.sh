#!/usr/bin/env bash
# Build cryo (and crit) of a git revision, as a baseline for scripts/image-identity.sh.
#
#   scripts/build-baseline.sh REV [OUT_DIR]
#
# The revision is checked out with `git worktree add --detach` in a temporary directory (removed again
# afterwards), built with `cargo build --release -p cryo-engine -p cryo-crit` in a target directory of its
# own (BASELINE_TARGET, default /var/tmp/cryo-baseline-target: kept between runs, so the next baseline
# build only rebuilds what changed), and OUT_DIR (default /var/tmp/cryo-baseline-REV) gets the binaries
# `cryo` and `crit`. Prints the path of the baseline cryo on stdout.
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: $0 REV [OUT_DIR]" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/.." && pwd)
rev=$(git -C "$repo" rev-parse --verify "$1^{commit}")
short=$(git -C "$repo" rev-parse --short "$rev")
out=${2:-/var/tmp/cryo-baseline-$short}
target=${BASELINE_TARGET:-/var/tmp/cryo-baseline-target}
triple=x86_64-unknown-linux-gnu

wt=$(mktemp -d /var/tmp/cryo-baseline-src.XXXXXX)
cleanup() { git -C "$repo" worktree remove --force "$wt" >/dev/null 2>&1 || rm -rf "$wt"; git -C "$repo" worktree prune; }
trap cleanup EXIT
git -C "$repo" worktree add --detach --quiet "$wt" "$rev"
(cd "$wt" && cargo build --release --quiet --target-dir "$target" -p cryo-engine -p cryo-crit) >&2
mkdir -p "$out"
cp "$target/$triple/release/cryo" "$target/$triple/release/crit" "$out/"
echo "$rev" > "$out/REVISION"
echo "$out/cryo"
