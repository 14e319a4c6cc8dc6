#!/usr/bin/env bash
# End-to-end throughput of `apiscope replay` against the libpcap read floor, on the same file
# in the same sitting: whole process, RUNS runs each, median wall time, peak RSS.
#
#   benches/replay_bench.sh [CAPTURE]      (default bench-data/api_bench.pcap;
#                                           make it with benches/make_capture.sh)
#   RUNS=5 THREADS="1 2" EXTRA="--calls /tmp/calls.jsonl" benches/replay_bench.sh
set -euo pipefail
top=$(git rev-parse --show-toplevel)
cap=${1:-$top/bench-data/api_bench.pcap}
runs=${RUNS:-5}
threads=${THREADS:-1 2}
bin=$top/target/release/apiscope
floor=$top/bench-data/pcapcount
[ -f "$cap" ] || { echo "no capture at $cap: run benches/make_capture.sh" >&2; exit 2; }
[ -x "$bin" ] || cargo build --release --manifest-path "$top/Cargo.toml"
if [ ! -x "$floor" ]; then
  gcc -O2 "$top/../shared/bench/pcapcount.c" -lpcap -o "$floor"
fi
size=$(stat -c %s "$cap")
cat "$cap" > /dev/null   # warm the page cache

# Runs "$@" RUNS times; prints "median_wall_s max_rss_kib".
measure() {
  local walls=() rss=0 out tmp
  tmp=$(mktemp)
  for _ in $(seq "$runs"); do
    /usr/bin/time -f "%e %M" -o "$tmp" "$@" > /dev/null 2>&1
    out=$(tail -1 "$tmp")
    walls+=("${out% *}")
    [ "${out#* }" -gt "$rss" ] && rss=${out#* }
  done
  rm -f "$tmp"
  printf '%s %s\n' "$(printf '%s\n' "${walls[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")" "$rss"
}

printf '%-34s %8s %9s %9s %8s\n' program "wall s" "MB/s" "RSS MiB" "x floor"
read -r fw frss < <(measure "$floor" "$cap")
row() { awk -v n="$1" -v w="$2" -v r="$3" -v s="$size" -v f="$fw" \
  'BEGIN { printf "%-34s %8.2f %9.0f %9.1f %8.2f\n", n, w, s/1e6/w, r/1024, w/f }'; }
row "libpcap floor (pcapcount)" "$fw" "$frss"
for t in $threads; do
  # shellcheck disable=SC2086
  read -r w r < <(measure "$bin" replay --threads "$t" ${EXTRA:-} "$cap")
  row "apiscope replay --threads $t" "$w" "$r"
done
