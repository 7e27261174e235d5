#!/usr/bin/env bash
# Benchmark: decode every CRIU 4.2 fixture image (plain and --pretty) with our crit and with Debian's
# Python crit (/usr/bin/crit from the `criu` package). Prints the median wall time of RUNS runs of the
# whole sweep for each tool, and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
cargo build --release -q -p cryo-crit
OURS=target/x86_64-unknown-linux-gnu/release/crit
PY=${PY_CRIT:-/usr/bin/crit}
[ -x "$PY" ] || { echo "no Python crit at $PY (apt-get install criu)"; exit 1; }
mapfile -t IMGS < <(find fixtures/criu-4.2 -path '*/images/*' -type f ! -name 'pages-*' | sort)
echo "images: ${#IMGS[@]} (each decoded plain and --pretty), runs: $RUNS"

sweep() { # $1 = crit binary
	for f in "${IMGS[@]}"; do
		"$1" decode -i "$f" >/dev/null
		"$1" decode --pretty -i "$f" >/dev/null
	done
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
measure() { # $1 = crit binary -> median seconds
	for _ in $(seq "$RUNS"); do
		s=$(date +%s.%N); sweep "$1"; e=$(date +%s.%N)
		echo "$e - $s" | bc -l
	done | median
}
ours=$(measure "$OURS")
py=$(measure "$PY")
printf 'ours   (%s): median %.3f s per sweep, %.2f ms per decode\n' "$OURS" "$ours" "$(echo "$ours*1000/(2*${#IMGS[@]})" | bc -l)"
printf 'python (%s): median %.3f s per sweep, %.2f ms per decode\n' "$PY" "$py" "$(echo "$py*1000/(2*${#IMGS[@]})" | bc -l)"
printf 'ratio: %.1fx faster\n' "$(echo "$py/$ours" | bc -l)"

# In-process: the same work without process start-up, our library vs Python's pycriu.
cargo bench -q -p cryo-image --bench decode 2>/dev/null | grep in-process
/usr/bin/python3 - "${IMGS[@]}" <<'PY'
import sys, time, json
import pycriu
imgs = [open(p, 'rb').read() for p in sys.argv[1:]]
import io
times = []
for _ in range(5):
    t = time.perf_counter()
    for d in imgs:
        for pretty in (False, True):
            json.dumps(pycriu.images.load(io.BytesIO(d), pretty), indent=4 if pretty else None)
    times.append(time.perf_counter() - t)
times.sort()
m = times[len(times) // 2]
print("python in-process: %d images x (plain + pretty): median %.2f ms per sweep, %.1f us per decode" % (len(imgs), m * 1e3, m * 1e6 / (2 * len(imgs))))
PY
