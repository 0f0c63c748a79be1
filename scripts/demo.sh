#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to a page served through the tunnel:
# installs what is missing, builds, starts tunnel-core (embedded defaults, data in
# ./tunnel-data), a small local app and `tunnel-agent http <port> --subdomain demo`, waits
# until http://demo.localhost:8080/ answers through the tunnel, then stays in the
# foreground until Ctrl-C and stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

http_port=8080
url="http://demo.localhost:${http_port}/"
data_dir="$root/tunnel-data"
bin="$root/build/release/apps"

./scripts/install-deps.sh
./scripts/build.sh release

if (exec 3<>"/dev/tcp/127.0.0.1/${http_port}") 2>/dev/null; then
  echo "demo: port ${http_port} is already in use; stop whatever listens there and retry" >&2
  exit 1
fi

mkdir -p "$data_dir"
logs="$(mktemp -d /tmp/tunnel-demo.XXXXXX)"
pids=()
tail_pid=""
stop_all() {
  trap - INT TERM EXIT
  [ -n "$tail_pid" ] && kill "$tail_pid" 2>/dev/null
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "demo: stopped (logs in $logs)"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "demo: starting tunnel-core (data in $data_dir, log $logs/core.log)"
"$bin/tunnel-core" --data-dir "$data_dir" >"$logs/core.log" 2>&1 &
pids+=($!)

/usr/bin/python3 "$root/scripts/demo_app.py" --port 0 >"$logs/app.log" 2>&1 &
pids+=($!)
app_port=""
for _ in $(seq 100); do
  app_port="$(sed -n 's/^listening \([0-9]*\)$/\1/p' "$logs/app.log")"
  [ -n "$app_port" ] && break
  sleep 0.1
done
[ -n "$app_port" ] || { echo "demo: the local app did not start:" >&2; cat "$logs/app.log" >&2; exit 1; }
echo "demo: local app on 127.0.0.1:${app_port}"

# The core writes agent.token and tls.crt on first start; the agent reads them from
# ./tunnel-data, its default data dir.
for _ in $(seq 100); do
  [ -s "$data_dir/agent.token" ] && [ -s "$data_dir/tls.crt" ] && break
  kill -0 "${pids[0]}" 2>/dev/null || { echo "demo: tunnel-core exited:" >&2; cat "$logs/core.log" >&2; exit 1; }
  sleep 0.1
done

echo "demo: starting tunnel-agent http ${app_port} --subdomain demo"
"$bin/tunnel-agent" http "$app_port" --subdomain demo >"$logs/agent.log" 2>&1 &
pids+=($!)
tail -n +1 -f "$logs/agent.log" &  # shows the agent's URL and one line per request
tail_pid=$!

code=""
for _ in $(seq 300); do
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)"
  [ "$code" = 200 ] && break
  sleep 0.1
done
if [ "$code" != 200 ]; then
  echo "demo: $url did not answer 200 within 30 s (last status: ${code:-none})" >&2
  echo "--- core log"  >&2; tail -n 40 "$logs/core.log" >&2
  exit 1
fi

# The agent's request inspector (on by default, as for users) logs where it listens.
inspect_url="$(grep -o 'request inspector on http://[^ ]*' "$logs/agent.log" | head -n 1 | sed 's/.* on //')"

cat <<MSG

  The tunnel is up. Open:   $url
  Or from a shell:          curl $url
                            curl -H 'Host: demo.localhost' http://127.0.0.1:${http_port}/
  Requests through it:      curl ${inspect_url:-http://127.0.0.1:4040}/api/requests/http

  Press Ctrl-C to stop tunnel-core, tunnel-agent and the app.

MSG

# Stay in the foreground; if any of the three exits by itself, stop the others.
set +e
wait -n "${pids[@]}"
status=$?
echo "demo: a process exited (status $status); stopping" >&2
exit "$status"
