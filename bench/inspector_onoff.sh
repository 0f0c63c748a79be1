#!/usr/bin/env bash
# Proxied req/s and the agent's CPU per request with the agent's request inspector on (the
# default, default caps) and off (`--inspect=false`), in alternating rounds on bench/rig.sh
# (nginx origin, 612-byte page, one tunnel-agent over TLS; wrk -t2). Issue 20's target: under
# 10% slower with it on. Prints each round, then the medians and the difference.
#   bench/inspector_onoff.sh [ROUNDS] [CONNS] [SECONDS] [BIN_DIR]   (3 50 5 build/release/apps)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
rounds="${1:-3}" conns="${2:-50}" secs="${3:-5}" bin="${4:-$here/../build/release/apps}"
export RIG_DIR="${RIG_DIR:-/tmp/tunnel-rig-inspector}"
out="$(mktemp)"
trap '"$here/rig.sh" down >/dev/null 2>&1 || true; rm -f "$out"' EXIT
for round in $(seq "$rounds"); do
  for mode in on off; do
    flags="--inspect-addr 127.0.0.1:0"  # any free port: 4040 may be someone else's
    [ "$mode" = off ] && flags="--inspect=false"
    RIG_AGENT_ARGS="$flags" "$here/rig.sh" up "$bin" >/dev/null
    line="$("$here/rig.sh" load "$conns" "$secs" | tr '\n' ' ')"
    rps="$(grep -o '[0-9.]* req/s' <<<"$line" | cut -d' ' -f1)"
    cpu="$(grep -o 'agent *[0-9.]* us' <<<"$line" | awk '{print $2}')"
    printf '%s round %d: %s req/s, agent %s us CPU/request\n' "$mode" "$round" "$rps" "$cpu"
    echo "$mode $rps $cpu" >>"$out"
  done
done
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
on_rps="$(awk '$1 == "on" {print $2}' "$out" | median)"
off_rps="$(awk '$1 == "off" {print $2}' "$out" | median)"
on_cpu="$(awk '$1 == "on" {print $3}' "$out" | median)"
off_cpu="$(awk '$1 == "off" {print $3}' "$out" | median)"
awk -v a="$on_rps" -v b="$off_rps" -v c="$on_cpu" -v d="$off_cpu" 'BEGIN {
  printf "median: on %.0f req/s, off %.0f req/s (%+.1f%%); agent CPU/request on %.1f us, off %.1f us (%+.1f%%)\n",
         a, b, (a - b) * 100 / b, c, d, (c - d) * 100 / d }'
