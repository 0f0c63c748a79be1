#!/usr/bin/env bash
# Installs the browser test's npm packages (package-lock.json, pinned) into
# tests/browser/node_modules with `npm ci`. Idempotent: does nothing when the locked version of
# playwright-core is already there. Skips (exit 0, a message) when npm is missing.
set -euo pipefail
cd "$(dirname "$0")"
want=$(node -e 'console.log(require("./package-lock.json").packages["node_modules/playwright-core"].version)' 2>/dev/null || true)
have=$(node -e 'console.log(require("./node_modules/playwright-core/package.json").version)' 2>/dev/null || true)
if [ -n "$want" ] && [ "$want" = "$have" ]; then
  echo "browser test: playwright-core $have present"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "browser test: npm missing, playwright-core not installed (scripts/install-deps.sh)"
  exit 0
fi
echo "browser test: npm ci (playwright-core $want)"
npm ci --no-audit --no-fund --loglevel=error
