#!/usr/bin/env bash
# A small manual rig for profiling the HTTP path by hand (docs/performance.md, "Profiling"):
# an origin nginx serving the suite's 612-byte page, a tunnel-core and one tunnel-agent (TLS
# between them), all on 127.0.0.1 on ports picked free at start. It keeps running between
# loads, so two builds can be compared in turns without the suite's set-up.
#
#   bench/rig.sh up [BIN_DIR]    start (or restart) with BIN_DIR's binaries
#                                (default build/release/apps; copied first)
#   bench/rig.sh load CONNS [SECONDS]
#                                wrk against the tunnel; prints req/s and, for core and agent,
#                                CPU microseconds, system calls and context switches per request
#                                (perf stat on each process while wrk runs)
#   bench/rig.sh perf CONNS [SECONDS] [ROLE]
#                                perf record of core (or agent) during a load; writes
#                                $RIG_DIR/perf-ROLE-CONNS.data
#   bench/rig.sh down            stop everything
# State and logs live in $RIG_DIR (default /tmp/tunnel-rig). $RIG_AGENT_ARGS adds flags to the
# agent's command line at `up` (`RIG_AGENT_ARGS=--inspect=false` turns the request inspector
# off; it is on by default, as for users).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
dir="${RIG_DIR:-/tmp/tunnel-rig}"
host="bench.localhost"

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pid_of() { cat "$dir/$1.pid" 2>/dev/null || true; }
need() { command -v "$1" >/dev/null || { echo "rig: $1 is missing (scripts/install-deps.sh)" >&2; exit 1; }; }

down() {
  for p in agent core origin; do
    local pid; pid="$(pid_of $p)"
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    rm -f "$dir/$p.pid"
  done
  sleep 0.3
}

up() {
  local bin="${1:-$repo/build/release/apps}"
  need nginx; need wrk; need curl
  [ -x "$bin/tunnel-core" ] && [ -x "$bin/tunnel-agent" ] ||
    { echo "rig: no tunnel-core/tunnel-agent in $bin (make build)" >&2; exit 1; }
  down
  mkdir -p "$dir/www" "$dir/nginx" "$dir/core-data" "$dir/agent-data"
  head -c 612 /dev/zero | tr '\0' 'x' >"$dir/www/index.html"
  cp "$bin/tunnel-core" "$bin/tunnel-agent" "$dir/"
  local origin http agent admin
  origin="$(free_port)" http="$(free_port)" agent="$(free_port)" admin="$(free_port)"
  cat >"$dir/nginx/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $dir/nginx/nginx.pid; error_log $dir/nginx/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$origin backlog=4096; root $dir/www; } }
EOF
  nginx -c "$dir/nginx/nginx.conf" -p "$dir/nginx" >"$dir/origin.log" 2>&1 &
  echo $! >"$dir/origin.pid"
  printf 'accounts:\n  - name: rig\n    tokens: ["rig-secret-token"]\n' >"$dir/core.yaml"
  "$dir/tunnel-core" --data-dir "$dir/core-data" --agent-addr "127.0.0.1:$agent" \
    --http-addr "127.0.0.1:$http" --admin-addr "127.0.0.1:$admin" --config "$dir/core.yaml" \
    --log-level warn >"$dir/core.log" 2>&1 &
  echo $! >"$dir/core.pid"
  for _ in $(seq 50); do [ -f "$dir/core-data/tls.crt" ] && break; sleep 0.1; done
  "$dir/tunnel-agent" --token rig-secret-token --data-dir "$dir/agent-data" --log-level warn \
    --server "127.0.0.1:$agent" --ca "$dir/core-data/tls.crt" ${RIG_AGENT_ARGS:-} \
    http "127.0.0.1:$origin" --subdomain bench >"$dir/agent.log" 2>&1 &
  echo $! >"$dir/agent.pid"
  echo "$http" >"$dir/http.port"
  local code=""
  for _ in $(seq 50); do
    code="$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $host" "http://127.0.0.1:$http/" || true)"
    [ "$code" = 200 ] && break
    sleep 0.1
  done
  [ "$code" = 200 ] || { echo "rig: the tunnel does not answer 200 (got $code); see $dir/*.log" >&2; exit 1; }
  echo "rig up: http://127.0.0.1:$http/ (Host: $host), binaries from $bin"
}

wrk_run() {  # CONNS SECONDS
  wrk -t2 -c"$1" -d"$2"s -H "Host: $host" "http://127.0.0.1:$(cat "$dir/http.port")/"
}

load() {
  local conns="${1:?load CONNS [SECONDS]}" secs="${2:-5}"
  need perf
  [ -n "$(pid_of core)" ] || { echo "rig: not up (bench/rig.sh up)" >&2; exit 1; }
  wrk_run "$conns" 1 >/dev/null  # warm-up
  local stats=()
  for p in core agent; do
    perf stat -x, -e raw_syscalls:sys_enter,context-switches,task-clock -o "$dir/stat-$p" \
      -p "$(pid_of $p)" &
    stats+=($!)
  done
  local out; out="$(wrk_run "$conns" "$secs")"
  kill -INT "${stats[@]}"; wait "${stats[@]}" 2>/dev/null || true
  local requests; requests="$(awk '/requests in/ {print $1}' <<<"$out")"
  for p in core agent; do
    awk -F, -v n="$requests" -v p="$p" '
      /sys_enter/ {s = $1} /context-switches/ {c = $1} /task-clock/ {t = $1}
      END {printf "%-5s %6.1f us CPU/request  %5.2f syscalls/request  %5.3f switches/request\n",
           p, t * 1000 / n, s / n, c / n}' "$dir/stat-$p"
  done
  awk -v c="$conns" '/Requests\/sec/ {printf "c=%d   %s req/s\n", c, $2}' <<<"$out"
}

record() {
  local conns="${1:?perf CONNS [SECONDS] [ROLE]}" secs="${2:-5}" role="${3:-core}"
  need perf
  wrk_run "$conns" 1 >/dev/null
  perf record -F 4999 -o "$dir/perf-$role-$conns.data" -p "$(pid_of "$role")" -- sleep "$secs" \
    >/dev/null 2>&1 &
  local rec=$!
  wrk_run "$conns" "$secs" | awk '/requests in/ {print $1 " requests"}'
  wait "$rec" || true
  echo "perf report -i $dir/perf-$role-$conns.data --no-children --sort sym"
}

case "${1:-}" in
  up) up "${2:-}" ;;
  load) load "${2:-}" "${3:-5}" ;;
  perf) record "${2:-}" "${3:-5}" "${4:-core}" ;;
  down) down ;;
  *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
