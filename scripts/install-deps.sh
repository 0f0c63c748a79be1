#!/usr/bin/env bash
# Installs every Debian 12 package this project needs to build, test, fuzz and benchmark.
# Idempotent: installs only what is missing. Needs root (or sudo).
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  clang lld libclang-rt-14-dev clang-format clang-tidy lintian adduser
  libboost1.81-dev libssl-dev openssl node-llhttp libyaml-cpp-dev nlohmann-json3-dev
  libspdlog-dev libfmt-dev libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev
  curl python3 python3-pytest python3-websockets python3-yaml python3-jwt procps
  nginx libnginx-mod-stream wrk openssh-server openssh-client linux-perf iperf3 nghttp2-client
  valgrind prometheus
  libsqlite3-dev sqlite3 libpq-dev postgresql
  zlib1g-dev libbrotli-dev
  chromium
)
# The inspector's browser test (tests/browser) drives chromium with playwright-core, which
# needs node and npm. A machine with Node.js from another source (nodesource's nodejs bundles
# npm, and conflicts with Debian's npm package) keeps it: apt installs them only when missing.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
else
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# playwright-core for the browser test, from tests/browser/package-lock.json (skips when there).
"$(dirname "$0")/../tests/browser/install.sh"
