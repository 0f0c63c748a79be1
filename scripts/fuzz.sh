#!/usr/bin/env bash
# Runs every libFuzzer target in build/asan/fuzz/ (built by `scripts/build.sh asan`) for
# FUZZ_SECONDS each (default 60), starting from its seed corpus fuzz/corpus/<name>/ when there
# is one. New inputs go to build/asan/fuzz-work/<name>/corpus, crashes to .../artifacts; the seed
# corpus in git stays untouched. Every target runs even if one fails; exits non-zero if any did
# (or if there is no target at all: an empty fuzz step must not pass silently).
#   scripts/fuzz.sh                 # all targets
#   FUZZ_SECONDS=10 scripts/fuzz.sh frame_fuzz
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

fuzz_seconds="${FUZZ_SECONDS:-60}"
fuzz_dir="$root/build/asan/fuzz"
work="$root/build/asan/fuzz-work"
failed=()
targets=0

run_target() {
  local target="$1" name
  name="$(basename "$target")"
  targets=$((targets + 1))
  mkdir -p "$work/$name/corpus" "$work/$name/artifacts"
  local seeds=()
  [ -d "$root/fuzz/corpus/$name" ] && seeds=("$root/fuzz/corpus/$name")
  echo "--- $name (${seeds[*]:-no seed corpus})"
  if ! "$target" -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 \
       -print_final_stats=1 -artifact_prefix="$work/$name/artifacts/" \
       "$work/$name/corpus" "${seeds[@]}" >"$work/$name/log" 2>&1; then
    failed+=("$name")
    tail -n 60 "$work/$name/log"
  else
    grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done)' "$work/$name/log" || true
  fi
}

if [ $# -gt 0 ]; then
  for name in "$@"; do run_target "$fuzz_dir/$name"; done
elif [ -d "$fuzz_dir" ]; then
  while IFS= read -r -d '' target; do
    run_target "$target"
  done < <(find "$fuzz_dir" -maxdepth 1 -type f -perm -u+x -print0 | sort -z)
fi

echo "fuzz targets run: $targets"
if [ "$targets" -eq 0 ]; then
  echo "no fuzz target in $fuzz_dir: build the asan preset first" >&2
  exit 1
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED fuzz targets: ${failed[*]} (crash inputs in $work/<name>/artifacts/)" >&2
  exit 1
fi
