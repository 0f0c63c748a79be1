#!/usr/bin/env bash
# Performance regression check on deterministic counts (docs/performance.md, "Regression
# checks"): builds bench/micro's tunnel_micro_counts, runs it once under callgrind, and compares
# instructions per frame and per proxied request, allocations per request and heap bytes per idle
# mux session with bench/baselines.json. Prints a table; exits 1 naming every metric that is worse
# than its limit. A metric better than its tolerance only prints a hint to update the baselines.
#   scripts/perf-regress.sh                  check (about 15 s after the build)
#   scripts/perf-regress.sh --update         rewrite bench/baselines.json from this run
# Options:
#   --build-dir DIR  default build/release (configured from the release preset, which has
#                    TUNNEL_BENCH=ON); another dir must be gcc RelWithDebInfo with -DTUNNEL_BENCH=ON
#   --no-build       use the binary as it is
#   --keep           keep the callgrind dumps and print where they are
set -euo pipefail
cd "$(dirname "$0")/.."

update=0
build=1
keep=0
build_dir=build/release
while [ $# -gt 0 ]; do
  case "$1" in
    --update) update=1 ;;
    --no-build) build=0 ;;
    --keep) keep=1 ;;
    --build-dir) build_dir="$2"; shift ;;
    --build-dir=*) build_dir="${1#*=}" ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "perf-regress: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if ! command -v valgrind >/dev/null; then
  echo "perf-regress: valgrind is not installed (scripts/install-deps.sh installs it)" >&2
  exit 2
fi

t_start=$SECONDS
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
if [ "$build" = 1 ]; then
  if [ "$build_dir" = build/release ]; then
    cmake --preset release >/dev/null
  fi
  cmake --build "$build_dir" --target tunnel_micro_counts
fi
bin="$build_dir/bench/micro/tunnel_micro_counts"
if [ ! -x "$bin" ]; then
  echo "perf-regress: $bin is missing (configure $build_dir with -DTUNNEL_BENCH=ON)" >&2
  exit 2
fi

# What the counts depend on besides the code; recorded with --update, warned about when different.
cache="$build_dir/CMakeCache.txt"
cxx="$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$cache")"
build_type="$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$cache")"
boost="$(sed -n 's/^#define BOOST_LIB_VERSION "\(.*\)"/\1/p' /usr/include/boost/version.hpp 2>/dev/null)"
llhttp="$(dpkg-query -W -f='${Version}' node-llhttp 2>/dev/null || echo unknown)"
# glibc picks its string functions by CPU features (as valgrind shows them): the CPU counts too.
cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
toolchain="$("$cxx" --version | head -1), $build_type; $(valgrind --version); boost ${boost:-unknown}; llhttp $llhttp; cpu ${cpu:-unknown}"
if [ "$build_type" != RelWithDebInfo ]; then
  echo "perf-regress: warning: $build_dir is a $build_type build; the baselines are RelWithDebInfo" >&2
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/perf-regress.XXXXXX")"
if [ "$keep" = 0 ]; then
  trap 'rm -rf "$tmp"' EXIT
fi

t_run=$SECONDS
if ! valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$tmp/callgrind.out" \
    "$bin" >"$tmp/counts.json" 2>"$tmp/valgrind.log"; then
  echo "perf-regress: $bin failed under callgrind:" >&2
  tail -n 30 "$tmp/valgrind.log" >&2
  exit 1
fi
echo "perf-regress: counted in $((SECONDS - t_run)) s under callgrind ($bin)"

args=(--baselines bench/baselines.json --counts "$tmp/counts.json" --callgrind-dir "$tmp"
      --toolchain "$toolchain" --commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)")
if [ "$update" = 1 ]; then
  args+=(--update)
fi
status=0
/usr/bin/python3 bench/micro/compare.py "${args[@]}" || status=$?
if [ "$keep" = 1 ]; then
  echo "perf-regress: dumps and counts kept in $tmp"
fi
echo "perf-regress: $((SECONDS - t_start)) s in all"
exit "$status"
