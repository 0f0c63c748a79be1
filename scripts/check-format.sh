#!/usr/bin/env bash
# clang-format (the root .clang-format) on every .cpp and .hpp under src, apps, fuzz and bench:
# lists each file that differs from its formatted self and exits 1 if any does.
#   scripts/check-format.sh          check only
#   scripts/check-format.sh --fix    rewrite the files in place
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -d '' files < <(find src apps fuzz bench \( -name '*.cpp' -o -name '*.hpp' \) -print0 | sort -z)
if [ "${1:-}" = --fix ]; then
  clang-format -i "${files[@]}"
  echo "check-format: formatted ${#files[@]} files"
  exit 0
fi
if ! clang-format --dry-run --Werror "${files[@]}" 2>"${TMPDIR:-/tmp}/check-format.$$"; then
  echo "check-format: not formatted (fix with scripts/check-format.sh --fix):" >&2
  grep -o '^[^:]*:[0-9]*:[0-9]*: error' "${TMPDIR:-/tmp}/check-format.$$" | cut -d: -f1 | sort -u | sed 's/^/  /' >&2
  rm -f "${TMPDIR:-/tmp}/check-format.$$"
  exit 1
fi
rm -f "${TMPDIR:-/tmp}/check-format.$$"
echo "check-format: ${#files[@]} files formatted"
