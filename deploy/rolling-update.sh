#!/usr/bin/env bash
# Upgrades several cores one at a time (issue 19; docs/operations.md, "Rolling updates").
#
#   deploy/rolling-update.sh [--command CMD] [--timeout SECONDS] [--settle SECONDS] NAME=ADMIN_URL...
#
# For each core in the order given: its /readyz must answer 200 first; then CMD runs with
# {name} replaced by NAME (default: ssh NAME sudo -u tunnel tunnel-core upgrade --config
# /etc/tunnel/core.yaml, which returns once the new process serves); then /readyz must answer
# 200 again within --timeout (60 s), and the script waits --settle seconds (5) for agents and
# the balancer before the next core. It stops at the first core that fails, naming it, so at
# most one core is ever out of service. Exit 0 = every core upgraded; 1 = one failed; 2 = usage.
#
# Example (two cores behind nginx, admin listeners on the private network):
#   deploy/rolling-update.sh core-a=http://10.0.0.11:9000 core-b=http://10.0.0.12:9000
set -euo pipefail

command='ssh {name} sudo -u tunnel tunnel-core upgrade --config /etc/tunnel/core.yaml'
timeout=60
settle=5
usage() {
  sed -n '4,6p' "$0" | sed 's/^# //' >&2
  exit 2
}
cores=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --command) command="${2:?}"; shift 2 ;;
    --timeout) timeout="${2:?}"; shift 2 ;;
    --settle) settle="${2:?}"; shift 2 ;;
    -h|--help) usage ;;
    *=*) cores+=("$1"); shift ;;
    *) echo "rolling-update: \"$1\" is not NAME=ADMIN_URL" >&2; usage ;;
  esac
done
[[ ${#cores[@]} -gt 0 ]] || usage
[[ "$timeout" =~ ^[0-9]+$ && "$settle" =~ ^[0-9]+(\.[0-9]+)?$ ]] || usage

ready() {  # ready URL: /readyz answers 200
  [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1/readyz")" == 200 ]]
}

wait_ready() {  # wait_ready NAME URL
  local deadline=$((SECONDS + timeout))
  until ready "$2"; do
    if ((SECONDS >= deadline)); then
      echo "rolling-update: $1: /readyz not 200 within ${timeout} s; stopping here" >&2
      return 1
    fi
    sleep 0.5
  done
}

for core in "${cores[@]}"; do
  name="${core%%=*}"
  url="${core#*=}"
  url="${url%/}"
  if ! ready "$url"; then
    echo "rolling-update: $name ($url) is not ready before its update; stopping here" >&2
    exit 1
  fi
  echo "rolling-update: $name: updating"
  if ! sh -c "${command//\{name\}/$name}"; then
    echo "rolling-update: $name: the update command failed; stopping here" >&2
    exit 1
  fi
  wait_ready "$name" "$url" || exit 1
  echo "rolling-update: $name: ready; waiting ${settle} s before the next core"
  sleep "$settle"
done
echo "rolling-update: ${#cores[@]} cores updated"
