#!/usr/bin/env bash
# Builds the release binaries (preset `release`, only tunnel-core, tunnel-agent and
# tunnelctl) and the Debian package from them:
# build/release/package/tunnel_<version>_<arch>.deb, whose path is the last line printed. Check it with scripts/check-package.sh.
#   scripts/package.sh
# The package's contents are reproducible: SOURCE_DATE_EPOCH defaults to the last commit's
# time (it dates the Debian changelog and the file times in the .deb).
set -euo pipefail
cd "$(dirname "$0")/.."

export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || date +%s)"
  export SOURCE_DATE_EPOCH
fi

for tool in cpack dpkg-deb dpkg-shlibdeps; do
  if ! command -v "$tool" >/dev/null; then
    echo "package: $tool not found; run scripts/install-deps.sh" >&2
    exit 1
  fi
done

cmake --preset release >/dev/null
cmake --build --preset release --target tunnel-core tunnel-agent tunnelctl

out=build/release/package
rm -rf "$out"
cpack --config build/release/CPackConfig.cmake -B "$out" >"$out.log" 2>&1 || {
  cat "$out.log" >&2
  echo "package: cpack failed (log above, also in $out.log)" >&2
  exit 1
}
debs=("$out"/tunnel_*.deb)
if [ ! -f "${debs[0]}" ]; then
  cat "$out.log" >&2
  echo "package: cpack made no tunnel_*.deb in $out" >&2
  exit 1
fi
echo "${debs[0]}"
