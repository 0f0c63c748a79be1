#!/usr/bin/env bash
# Installs missing dependencies, builds the release preset (warnings are errors there) and
# runs every test: unit tests and the integration tests against the real binaries.
#   scripts/test.sh [extra ctest arguments, e.g. -R integration.http]
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
./scripts/build.sh release
ctest --preset release "$@"
