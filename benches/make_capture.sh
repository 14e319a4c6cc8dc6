#!/usr/bin/env bash
# Makes the benchmark capture and builds the libpcap read floor, using the read-only kit in
# ../shared/bench (relative to the repo root):
#   bench-data/api_bench.pcap        ~900 MB of real HTTP/1.1 JSON API traffic (nginx + wrk)
#   bench-data/api_bench_50M.pcap    its first 50 MB, for quick runs
#   bench-data/api_bench.truth.txt   request/response counts read independently from the packets
#   bench-data/pcapcount             the libpcap read floor (pcap_next_ex, nothing else)
# Needs root (it creates two network namespaces and removes them at exit); about a minute.
# DUR and CONNS are passed through to the kit. bench-data/ is gitignored: never commit captures.
set -euo pipefail
top=$(git rev-parse --show-toplevel)
kit=$top/../shared/bench
if [ ! -x "$kit/make_bench_pcap.sh" ] || [ ! -f "$kit/pcapcount.c" ]; then
  echo "make_capture.sh: benchmark kit not found at $kit (expected make_bench_pcap.sh and pcapcount.c)" >&2
  exit 2
fi
[ "$(id -u)" -eq 0 ] || { echo "make_capture.sh: needs root (network namespaces, tcpdump)" >&2; exit 2; }

need=()
command -v ip >/dev/null       || need+=(iproute2)
command -v tcpdump >/dev/null  || need+=(tcpdump)
command -v wrk >/dev/null      || need+=(wrk)
command -v nginx >/dev/null    || need+=(nginx-light)
command -v ethtool >/dev/null  || need+=(ethtool)
[ -x /usr/bin/time ]           || need+=(time)
[ -f /usr/include/pcap/pcap.h ] || need+=(libpcap-dev)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"
fi

out=$top/bench-data
mkdir -p "$out"
gcc -O2 "$kit/pcapcount.c" -lpcap -o "$out/pcapcount"
"$kit/make_bench_pcap.sh" "$out"
ls -l "$out"/api_bench.pcap "$out"/api_bench_50M.pcap "$out"/api_bench.truth.txt "$out"/pcapcount
