#!/usr/bin/env bash
# Configures and builds one CMake preset (default: release). Uses at most 2 parallel jobs
# unless CMAKE_BUILD_PARALLEL_LEVEL says otherwise; compiler output is cached by ccache.
#   scripts/build.sh [release|release-clang|asan]
set -euo pipefail
cd "$(dirname "$0")/.."

preset="${1:-release}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"

cmake --preset "$preset"
cmake --build --preset "$preset"
