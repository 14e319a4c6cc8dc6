#!/usr/bin/env bash
# Load test of the live sensor, `apiscope run`, on a veth pair (root; needs tcpreplay, curl).
#
#   benches/live_load.sh [rates]     replays CAPTURE into a veth at each rate of RATES, for each
#                                    worker count of THREADS, one fresh sensor per run
#   benches/live_load.sh memory      replays the synthetic captures of benches/gen_synthetic.py
#                                    (made if missing) at top speed into the veth, and through
#                                    `apiscope replay`, under the flow and reassembly caps of
#                                    MEM_CONFIGS; reports peak RSS and the eviction counters
#
# Two network namespaces made here and deleted at exit (even on failure): apl-tx-PID holds
# one end of a veth pair, where tcpreplay sends; apl-rx-PID holds the other end, captured by
# `apiscope run --interface aplrxPID --listen 127.0.0.1:PORT`, whose /metrics is read from
# inside that namespace. Neither end has an address and IPv6 is off on both, so the only
# frames on the link are tcpreplay's. After each replay the sensor is left to drain (until
# /metrics stops changing with empty queues), its peak RSS (VmHWM) and CPU time are read,
# then it gets SIGTERM.
#
# Environment (defaults in brackets):
#   CAPTURE      pcap to replay in `rates` mode [bench-data/api_bench.pcap]
#   TRUTH        request counts of CAPTURE [CAPTURE without .pcap + .truth.txt, if present]
#   THREADS      worker counts (--threads) ["1 2"]
#   RATES        rates: N = --mbps=N, Npps = --pps=N, top = --topspeed ["200 400 800 1600 top"]
#   RUNS         runs of each (threads, rate) [1]
#   TIMER        tcpreplay --timer: nano sleeps between packets; gtod (tcpreplay's default)
#                busy-waits, which takes a whole core from the sensor at any rate [nano]
#   LOOP         tcpreplay --loop: the capture is sent LOOP times in a row, for a load longer
#                than the buffers hold (calls are then compared with LOOP x the truth) [1]
#   BUFFER_BYTES capture.live.buffer_bytes of the generated config [67108864]
#   CONFIG       use this configuration file instead of the generated one
#   SENSOR_ARGS  extra `apiscope run` arguments ["--calls /dev/null"]
#   MEM_CONFIGS  `memory` mode: names of the cap sets below ["flows mem"]
#   MEM_CAPTURES `memory` mode: synthetic captures ["syn_flood flows_1m ooo_flows"]
#   MEM_MODES    `memory` mode: "live" (veth) and/or "replay" ["live replay"]
#   MEM_RATE     `memory` mode: the rate of the live replays, as in RATES [top]
#   OUT          results, tab-separated, appended [bench-data/live_load.tsv]
#   PORT         port of the sensor's query API inside the namespace [19770]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/target/release/apiscope
mode=${1:-rates}
cap=${CAPTURE:-$top/bench-data/api_bench.pcap}
threads=${THREADS:-1 2}
rates=${RATES:-200 400 800 1600 top}
runs=${RUNS:-1}
buffer=${BUFFER_BYTES:-67108864}
sensor_args=${SENSOR_ARGS:---calls /dev/null}
port=${PORT:-19770}
out=${OUT:-$top/bench-data/live_load.tsv}
drain_max=${DRAIN_MAX:-300}
loop=${LOOP:-1}
timer=${TIMER:-nano}

[ "$(id -u)" = 0 ] || { echo "live_load.sh: needs root (network namespaces, raw capture)" >&2; exit 2; }
for t in tcpreplay curl ip; do
  command -v "$t" > /dev/null || { echo "live_load.sh: $t is missing (apt-get install -y tcpreplay curl iproute2)" >&2; exit 2; }
done
[ -x "$bin" ] || cargo build --release -p apiscope-sensor --manifest-path "$top/Cargo.toml"
tck=$(getconf CLK_TCK)

id=$$
tx=apl-tx-$id rx=apl-rx-$id
va=apltx$id vb=aplrx$id
work=$(mktemp -d /tmp/apiscope-live-load.XXXXXX)
sensor_pid='' replay_pid='' poll_pid=''

cleanup() {
  local p ns
  for p in $poll_pid $replay_pid $sensor_pid; do
    kill -KILL "$p" 2> /dev/null || true
  done
  # Whatever still runs inside our namespaces was started here (tcpreplay under time(1)).
  for ns in "$tx" "$rx"; do
    for p in $(ip netns pids "$ns" 2> /dev/null); do
      kill -KILL "$p" 2> /dev/null || true
    done
  done
  ip netns del "$tx" 2> /dev/null || true
  ip netns del "$rx" 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the link ---------------------------------------------------------------------------
ip netns add "$tx"
ip netns add "$rx"
for ns in "$tx" "$rx"; do
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip link add "$va" netns "$tx" type veth peer name "$vb" netns "$rx"
ip -n "$tx" link set "$va" up
ip -n "$rx" link set "$vb" up
ip -n "$rx" link set lo up

in_rx() { ip netns exec "$rx" "$@"; }
metrics() { in_rx curl -sf --max-time 5 "http://127.0.0.1:$port/metrics" || true; }
# metric NAME [TEXT]: the value of sample NAME (exactly as printed, labels included), 0 if absent.
metric() { awk -v m="$1" '$1 == m { v = $2 } END { printf "%.0f\n", v + 0 }' <<< "$2"; }
# The sum of every sample of a metric family, whatever the labels.
metric_sum() { awk -v m="$1" 'index($1, m "{") == 1 || $1 == m { s += $2 } END { printf "%.0f\n", s + 0 }' <<< "$2"; }
# CPU seconds the whole machine spent busy (not idle, not waiting for I/O) since boot.
busy_cpu() { awk -v t="$tck" '$1 == "cpu" { printf "%.2f\n", ($2 + $3 + $4 + $7 + $8 + $9) / t }' /proc/stat; }
# CPU/s the machine spends busy over 2 s while we are idle: anything above ~0.1 is another
# load on the VM (or the host taking the vCPUs), and the run beside it is not clean.
background() {
  local a b
  a=$(busy_cpu)
  sleep 2
  b=$(busy_cpu)
  awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f\n", (b - a) / 2 }'
}
# The machine's CPU seconds since boot: user, system, softirq, steal.
cpu_split() { awk -v t="$tck" '$1 == "cpu" { printf "%.2f %.2f %.2f %.2f\n", ($2 + $3) / t, $4 / t, $8 / t, $9 / t }' /proc/stat; }
# Frames the kernel dropped from its per-CPU input backlogs (all CPUs, all namespaces).
softnet_drops() {
  local s=0 _a b _rest
  while read -r _a b _rest; do s=$((s + 16#$b)); done < /proc/net/softnet_stat
  echo "$s"
}
# The receiving veth end's "packets dropped" counters (ip -s link).
veth_rx() { ip -n "$rx" -s link show "$vb" | awk '/RX:/ { getline; print $2, $4 }'; }
src() { printf '%s{source="%s"}' "$1" "$vb"; }
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2> /dev/null || echo 0; }
cpu_s() { awk -v t="$tck" '{ printf "%.2f\n", ($14 + $15) / t }' "/proc/$1/stat"; }
# CPU seconds by thread name (capture-0, worker-N, sink, ...), one "name=s" per thread.
thread_cpu() {
  local f
  for f in /proc/"$1"/task/*/stat; do
    awk -v t="$tck" '{ c = $0; sub(/^[^(]*\(/, "", c); n = c; sub(/\).*$/, "", n); sub(/^.*\) /, "", c);
      split(c, a, " "); printf "%s=%.2f ", n, (a[12] + a[13]) / t }' "$f"
  done
  echo
}

# start_sensor THREADS CONFIG LOG: starts `apiscope run` in the rx namespace, waits for /metrics.
start_sensor() {
  # `ip netns exec` execs the command: $! is the sensor's pid.
  # shellcheck disable=SC2086
  ip netns exec "$rx" "$bin" run --interface "$vb" --threads "$1" --config "$2" \
    --listen "127.0.0.1:$port" $sensor_args 2> "$3" &
  sensor_pid=$!
  local i
  for i in $(seq 100); do
    if ! kill -0 "$sensor_pid" 2> /dev/null; then
      echo "live_load.sh: the sensor exited at start:" >&2; cat "$3" >&2; exit 1
    fi
    [ -n "$(metrics)" ] && return 0
    sleep 0.2
  done
  echo "live_load.sh: no /metrics after 20 s" >&2; cat "$3" >&2; exit 1
}

# Samples the sensor every second while a replay runs, one line per sample: seconds since
# the start, VmRSS (KiB), estimated memory (bytes), deepest worker queue, sink queue depth,
# frames captured, own drops, frames processed, calls, busy CPU seconds of the whole machine,
# its user, system, softirq and steal CPU seconds, and the connections tracked.
poll_start() {
  : > "$work/poll"
  (
    t0=$(date +%s%N)
    while kill -0 "$sensor_pid" 2> /dev/null; do
      m=$(metrics)
      printf '%s %s %s %s\n' "$(( ($(date +%s%N) - t0) / 1000000 ))" "$(status_kib "$sensor_pid" VmRSS)" \
        "$(metric_sum apiscope_memory_bytes "$m")" \
        "$(awk -v c="$(src apiscope_capture_packets_total)" -v d="$(src apiscope_capture_queue_drops_total)" '
            $1 ~ /^apiscope_queue_depth\{queue="worker-/ && $2 > w { w = $2 }
            $1 ~ /^apiscope_queue_depth\{queue="sink"/ { s = $2 }
            $1 == c { cap = $2 } $1 == d { drop = $2 } $1 == "apiscope_packets_total" { p = $2 }
            $1 == "apiscope_calls_total" { k = $2 }
            END { printf "%d %d %d %d %d %d", w, s, cap, drop, p, k }' <<< "$m") $(busy_cpu) $(cpu_split) $(metric apiscope_flows_active "$m")" >> "$work/poll"
      sleep 1
    done
  ) &
  poll_pid=$!
}
poll_stop() {
  kill "$poll_pid" 2> /dev/null || true
  wait "$poll_pid" 2> /dev/null || true
  poll_pid=''
}

# Waits until the capture and worker counters and the calls stop moving with empty queues.
drain() {
  local prev='' stable=0 m now i
  for i in $(seq "$drain_max"); do
    m=$(metrics)
    now="$(metric "$(src apiscope_capture_packets_total)" "$m") $(metric apiscope_packets_total "$m") $(metric apiscope_calls_total "$m") $(metric apiscope_calls_released_total "$m")"
    local depth
    depth=$(awk '$1 ~ /^apiscope_queue_depth/ { s += $2 } END { print s + 0 }' <<< "$m")
    if [ "$now" = "$prev" ] && [ "$depth" = 0 ]; then
      stable=$((stable + 1))
      [ "$stable" -ge 3 ] && { echo "$i"; return 0; }
    else
      stable=0
    fi
    prev=$now
    sleep 1
  done
  echo "live_load.sh: warning: still moving after ${drain_max} s" >&2
  echo "$drain_max"
}

stop_sensor() {
  kill -TERM "$sensor_pid"
  local rc=0
  wait "$sensor_pid" || rc=$?
  sensor_pid=''
  [ "$rc" = 0 ] || echo "live_load.sh: warning: the sensor exited with status $rc" >&2
}

# tcpreplay's own report: "sent failed mbps pps seconds".
tcpreplay_report() {
  awk '/Actual:/ { sent = $2; secs = $(NF - 1) }
       /Rated:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^Mbps/) mbps = $(i - 1); if ($i ~ /^pps/) pps = $(i - 1) } }
       /Failed packets:/ { failed = $NF }
       END { gsub(",", "", mbps); gsub(",", "", pps); printf "%s %s %s %s %s\n", sent, failed + 0, mbps, pps, secs }' "$1"
}

rate_flag() {
  case $1 in
    top) echo --topspeed ;;
    *pps) echo "--pps=${1%pps}" ;;
    *) echo "--mbps=$1" ;;
  esac
}

# live_run THREADS RATE CONFIG CAPTURE LABEL: one fresh sensor, one replay; appends a TSV row.
# Prints "sent captured kdrop ifdrop qdrop calls hwm_mib cpu ..." for the caller.
live_run() {
  local n=$1 rate=$2 cfg=$3 pcap=$4 label=$5
  local log=$work/sensor.log
  start_sensor "$n" "$cfg" "$log"
  local base_rss base_cpu m0 bg0 bg1
  bg0=$(background)
  base_rss=$(status_kib "$sensor_pid" VmRSS)
  base_cpu=$(cpu_s "$sensor_pid")
  m0=$(metrics)
  [ "$(metric "$(src apiscope_capture_packets_total)" "$m0")" = 0 ] ||
    echo "live_load.sh: warning: frames on the link before the replay" >&2
  local sn0 rx0 busy0 busy1 t0 t1
  sn0=$(softnet_drops)
  rx0=$(veth_rx)
  poll_start
  # shellcheck disable=SC2046
  ip netns exec "$tx" /usr/bin/time -f '%e %U %S' -o "$work/tr.time" \
    tcpreplay -i "$va" --loop="$loop" --timer="$timer" $(rate_flag "$rate") "$pcap" > "$work/tr.out" 2>&1 &
  replay_pid=$!
  busy0=$(busy_cpu) t0=$(date +%s%N)
  wait "$replay_pid" || { echo "live_load.sh: tcpreplay failed:" >&2; cat "$work/tr.out" >&2; exit 1; }
  busy1=$(busy_cpu) t1=$(date +%s%N)
  local cpu_at_end
  cpu_at_end=$(cpu_s "$sensor_pid")
  replay_pid=''
  local drained
  drained=$(drain)
  poll_stop
  bg1=$(background)
  local m hwm rss cpu threads_cpu sn1
  m=$(metrics)
  hwm=$(status_kib "$sensor_pid" VmHWM)
  rss=$(status_kib "$sensor_pid" VmRSS)
  cpu=$(cpu_s "$sensor_pid")
  threads_cpu=$(thread_cpu "$sensor_pid")
  sn1=$(softnet_drops)
  local vstats
  vstats=$(veth_rx | awk -v p0="${rx0% *}" -v d0="${rx0#* }" '{ print "rx_packets=" $1 - p0 " rx_dropped=" $2 - d0 }')
  stop_sensor
  local sent failed mbps pps secs tr_wall tr_user tr_sys
  read -r sent failed mbps pps secs < <(tcpreplay_report "$work/tr.out")
  read -r tr_wall tr_user tr_sys < "$work/tr.time"
  local captured kdrop ifdrop qdrop calls proc created active evc evm idle ooomem peak_rss peak_est peak_q
  captured=$(metric "$(src apiscope_capture_packets_total)" "$m")
  kdrop=$(metric "$(src apiscope_capture_kernel_drops_total)" "$m")
  ifdrop=$(metric "$(src apiscope_capture_interface_drops_total)" "$m")
  qdrop=$(metric "$(src apiscope_capture_queue_drops_total)" "$m")
  calls=$(metric apiscope_calls_total "$m")
  proc=$(metric apiscope_packets_total "$m")
  created=$(metric apiscope_flows_created_total "$m")
  active=$(metric apiscope_flows_active "$m")
  evc=$(metric apiscope_flows_evicted_capacity_total "$m")
  evm=$(metric apiscope_flows_evicted_memcap_total "$m")
  idle=$(metric apiscope_flows_idle_timeout_total "$m")
  ooomem=$(metric apiscope_tcp_ooo_memcap_total "$m")
  local peak_flows
  read -r peak_rss peak_est peak_q peak_flows < <(awk '$2 > r { r = $2 } $3 > e { e = $3 } $4 > q { q = $4 } $15 > f { f = $15 }
    END { print r + 0, e + 0, q + 0, f + 0 }' "$work/poll")
  mkdir -p "$top/bench-data/live_load_series"
  cp "$work/poll" "$top/bench-data/live_load_series/$(date -u +%Y%m%dT%H%M%S)-${label//\//_}-t$n-$rate-x$loop.txt"
  local sensor_cpu rl tr_cpu busy_pct other_cpu
  busy_pct=$(awk -v a="$busy0" -v b="$busy1" -v t0="$t0" -v t1="$t1" -v n="$(nproc)" \
    'BEGIN { printf "%.0f", 100 * (b - a) / ((t1 - t0) / 1e9 * n) }')
  rl=$rate$([ "$loop" = 1 ] || echo "x$loop")
  tr_cpu=$(awk -v u="$tr_user" -v s="$tr_sys" 'BEGIN { printf "%.2f", u + s }')
  sensor_cpu=$(awk -v a="$cpu" -v b="$base_cpu" 'BEGIN { printf "%.2f", a - b }')
  # Busy CPU of the machine during the replay not spent by tcpreplay or the sensor: softirq
  # (the veth's receive path), the kernel's own threads, and any other process.
  other_cpu=$(awk -v a="$busy0" -v b="$busy1" -v t="$tr_cpu" -v s1="$cpu_at_end" -v s0="$base_cpu" \
    'BEGIN { printf "%.2f", (b - a) - t - (s1 - s0) }')
  [ -f "$out" ] || printf 'date\tlabel\tthreads\trate\tsent\tfailed\ttx_mbps\ttx_pps\ttx_s\ttcpreplay_cpu_s\tcaptured\tkernel_drops\tif_drops\tqueue_drops\tprocessed\tcalls\tflows_created\tflows_active\tevicted_capacity\tevicted_memcap\tidle_timeout\tooo_memcap\tbase_rss_kib\tpeak_rss_kib\thwm_kib\tpeak_mem_estimate\tpeak_queue_depth\tsensor_cpu_s\tdrain_s\tsoftnet_drops\tveth\tthreads_cpu\tmachine_busy_pct\tother_cpu_s\tbackground_before\tbackground_after\tpeak_flows_active\n' > "$out"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$(date -u +%FT%TZ)" "$label" "$n" "$rl" "$sent" "$failed" "$mbps" "$pps" "$secs" "$tr_cpu" \
    "$captured" "$kdrop" "$ifdrop" "$qdrop" "$proc" "$calls" "$created" "$active" "$evc" "$evm" "$idle" "$ooomem" \
    "$base_rss" "$peak_rss" "$hwm" "$peak_est" "$peak_q" "$sensor_cpu" "$drained" "$((sn1 - sn0))" "$vstats" "$threads_cpu" "$busy_pct" "$other_cpu" "$bg0" "$bg1" "$peak_flows" >> "$out"
  printf '%-14s %2s %7s %9s %9s %7.1f %9s %7s %8s %7s %8s %6s %6s %6s %6s %6s %9s\n' \
    "$label" "$n" "$rl" "$sent" "$captured" "$mbps" "$kdrop" "$ifdrop" "$qdrop" "$((sn1 - sn0))" "$calls" \
    "$((base_rss / 1024))" "$((hwm / 1024))" "$peak_q" "$sensor_cpu" "$tr_cpu" "$bg0/$bg1" >&2
  if awk -v a="$bg0" -v b="$bg1" 'BEGIN { exit !(a > 0.3 || b > 0.3) }'; then
    echo "   note: another load used the CPU around this run (before/after: $bg0/$bg1 CPU/s): not a clean run" >&2
  fi
  if [ "$sent" != "$((captured + kdrop + ifdrop))" ]; then
    echo "   note: sent $sent, captured+kernel drops+interface drops $((captured + kdrop + ifdrop)) ($vstats)" >&2
  fi
}

# rp_run THREADS CONFIG CAPTURE LABEL: `apiscope replay --stats` on the file; peak RSS from
# /usr/bin/time; a row in OUT with _replay before .tsv.
rp_run() {
  local n=$1 cfg=$2 f=$3 label=$4 rout=${out%.tsv}_replay.tsv wall maxrss
  # --calls and --findings: the same stages as `run` (inventory, detector, calls out).
  /usr/bin/time -f '%e %M' -o "$work/rp.time" "$bin" replay --config "$cfg" --threads "$n" \
    --calls /dev/null --findings /dev/null --stats "$f" > /dev/null 2> "$work/rp.err" ||
    { cat "$work/rp.err" >&2; exit 1; }
  read -r wall maxrss < "$work/rp.time"
  st() { awk -v k="$1" '$1 == k { v = $2 } END { print v + 0 }' "$work/rp.err"; }
  [ -f "$rout" ] || printf 'date\tlabel\tthreads\tpackets\tcalls\tflows_created\tevicted_capacity\tevicted_memcap\tidle_timeout\tooo_memcap\twall_s\tpeak_rss_kib\n' > "$rout"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$label" "$n" \
    "$(st packets)" "$(st calls)" "$(st flows_created)" "$(st flows_evicted_capacity)" \
    "$(st flows_evicted_memcap)" "$(st flows_idle_timeout)" "$(st tcp_ooo_memcap)" "$wall" "$maxrss" >> "$rout"
  echo "replay $label --threads $n: $(head -1 "$work/rp.err"); peak RSS $((maxrss / 1024)) MiB;" \
    "flows_created=$(st flows_created) evicted_capacity=$(st flows_evicted_capacity)" \
    "evicted_memcap=$(st flows_evicted_memcap) tcp_ooo_memcap=$(st tcp_ooo_memcap)" >&2
}

header() {
  printf '%-14s %2s %7s %9s %9s %7s %9s %7s %8s %7s %8s %6s %6s %6s %6s %6s %9s\n' \
    label thr rate sent captured "Mbit/s" "kern.drop" "if.drop" "own.drop" softnet calls "RSS0Mi" "HWM Mi" "peakQ" "cpu s" "tr.cpu" "bg cpu/s" >&2
}

config_rates() {
  if [ -n "${CONFIG:-}" ]; then
    echo "$CONFIG"
  else
    printf '[capture.live]\nbuffer_bytes = %s\n' "$buffer" > "$work/rates.toml"
    echo "$work/rates.toml"
  fi
}

# The caps of `memory` mode (per worker). "flows": the flow count binds; "mem": the memory
# estimate binds; both with a small reassembly memcap.
mem_config() {
  local f=$work/mem-$1.toml
  case $1 in
    flows)
      printf '[capture.live]\nbuffer_bytes = %s\n[flow]\nmax_flows = 100000\nmemcap_bytes = 268435456\n[reassembly]\nmemcap_bytes = 33554432\n' "$buffer" > "$f" ;;
    mem)
      printf '[capture.live]\nbuffer_bytes = %s\n[flow]\nmax_flows = 4000000\nmemcap_bytes = 67108864\n[reassembly]\nmemcap_bytes = 16777216\n' "$buffer" > "$f" ;;
    *) echo "live_load.sh: unknown MEM_CONFIGS entry $1 (flows, mem)" >&2; exit 2 ;;
  esac
  echo "$f"
}

machine() {
  echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) cores ($(lscpu | awk -F': *' '/Model name/ { print $2 }')), $(free -m | awk '/Mem:/ { print $2 }') MiB, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  echo "# $(tcpreplay --version 2>&1 | head -1); $("$bin" --version 2>/dev/null || echo apiscope)" >&2
}

case $mode in
  rates)
    [ -f "$cap" ] || { echo "no capture at $cap: run benches/make_capture.sh" >&2; exit 2; }
    truth=${TRUTH:-${cap%.pcap}.truth.txt}
    cfg=$(config_rates)
    machine
    echo "# capture $cap x$loop; tcpreplay --timer=$timer; config $cfg: $(tr '\n' ' ' < "$cfg")" >&2
    [ -f "$truth" ] && echo "# truth: $(grep -o '^requests=[0-9]*' "$truth")" >&2
    cat "$cap" > /dev/null
    header
    for n in $threads; do
      for r in $rates; do
        for _ in $(seq "$runs"); do
          live_run "$n" "$r" "$cfg" "$cap" "${LABEL:-$(basename "$cap" .pcap):$timer}"
        done
      done
    done
    ;;
  memory)
    machine
    for c in ${MEM_CAPTURES:-syn_flood flows_1m ooo_flows}; do
      f=$top/bench-data/$c.pcap
      if [ ! -f "$f" ]; then
        case $c in
          syn_flood) python3 "$top/benches/gen_synthetic.py" syn-flood --out "$f" ;;
          flows_1m) python3 "$top/benches/gen_synthetic.py" flows --out "$f" ;;
          ooo_flows) python3 "$top/benches/gen_synthetic.py" ooo --out "$f" ;;
          *) echo "no capture $f" >&2; exit 2 ;;
        esac
      fi
    done
    for k in ${MEM_CONFIGS:-flows mem}; do
      cfg=$(mem_config "$k")
      echo "# caps \"$k\" (per worker): $(tr '\n' ' ' < "$cfg")" >&2
      for c in ${MEM_CAPTURES:-syn_flood flows_1m ooo_flows}; do
        f=$top/bench-data/$c.pcap
        cat "$f" > /dev/null
        for n in $threads; do
          if [[ " ${MEM_MODES:-live replay} " == *" live "* ]]; then
            header
            live_run "$n" "${MEM_RATE:-top}" "$cfg" "$f" "$c/$k"
          fi
          if [[ " ${MEM_MODES:-live replay} " == *" replay "* ]]; then
            rp_run "$n" "$cfg" "$f" "$c/$k"
          fi
        done
      done
    done
    ;;
  *)
    echo "usage: benches/live_load.sh [rates|memory]" >&2
    exit 2
    ;;
esac
echo "# rows appended to $out" >&2
