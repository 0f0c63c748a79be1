#!/usr/bin/env bash
# Proxied req/s with OpenTelemetry tracing on at a sampling ratio (default 1%) and off, in
# alternating rounds on bench/rig.sh (nginx origin, 612-byte page, one tunnel-agent over TLS;
# wrk -t2). Tracing on: the core and the agent export to an OTLP/HTTP sink on loopback (a small
# Python server that answers 200). Issue 18's target: under 3% slower at 1%. Prints each round,
# then the medians and the difference.
#   bench/tracing_onoff.sh [ROUNDS] [CONNS] [SECONDS] [RATIO] [BIN_DIR]   (3 50 5 1% build/release/apps)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
rounds="${1:-3}" conns="${2:-50}" secs="${3:-5}" ratio="${4:-1%}"
bin="${5:-$here/../build/release/apps}"
export RIG_DIR="${RIG_DIR:-/tmp/tunnel-rig-tracing}"
out="$(mktemp)"
sink_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
python3 - "$sink_port" <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
sink=$!
trap '"$here/rig.sh" down >/dev/null 2>&1 || true; kill "$sink" 2>/dev/null || true; rm -f "$out"' EXIT
for round in $(seq "$rounds"); do
  for mode in on off; do
    if [ "$mode" = on ]; then
      export TUNNEL_OTLP_ENDPOINT="http://127.0.0.1:$sink_port" TUNNEL_TRACE_SAMPLE_RATIO="$ratio"
    else
      unset TUNNEL_OTLP_ENDPOINT TUNNEL_TRACE_SAMPLE_RATIO
    fi
    "$here/rig.sh" up "$bin" >/dev/null
    line="$("$here/rig.sh" load "$conns" "$secs" | tr '\n' ' ')"
    rps="$(grep -o '[0-9.]* req/s' <<<"$line" | cut -d' ' -f1)"
    printf '%s round %d: %s req/s\n' "$mode" "$round" "$rps"
    echo "$mode $rps" >>"$out"
  done
done
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
on_rps="$(awk '$1 == "on" {print $2}' "$out" | median)"
off_rps="$(awk '$1 == "off" {print $2}' "$out" | median)"
awk -v a="$on_rps" -v b="$off_rps" -v r="$ratio" 'BEGIN {
  printf "median: tracing on (%s) %.0f req/s, off %.0f req/s (%+.1f%%)\n", r, a, b, (a - b) * 100 / b }'
