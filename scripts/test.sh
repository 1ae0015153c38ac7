#!/usr/bin/env bash
# The test command (`npm test`, the one the README gives and .ci/run calls). On a fresh clone it installs
# what the tests need (Debian packages, node modules), then runs the static checks and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# 1. System packages the tests use: Python reference implementations (PIL, NumPy, regex) and the servers
#    some tests start on 127.0.0.1. Installed only when missing.
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
need=()
for pkg in python3-pil python3-numpy python3-regex redis-server; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "test: installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# 2. Node modules on a fresh clone or when the lock file changed, then check the native ones load.
#    `npm install` honours the lock file; `npm ci` is not used because npm 11 omits other platforms'
#    optional packages from the lock file and then refuses it.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm install --no-audit --no-fund
fi
node -e "require('onnxruntime-node'); require('sharp'); require('better-sqlite3')" || {
  echo "test: native modules failed to load after npm install" >&2
  exit 1
}

# 3. Static checks: types (strict), lint, format, architecture rules.
node_modules/.bin/tsc -p tsconfig.json --noEmit
node_modules/.bin/eslint .
node_modules/.bin/prettier --check . >/dev/null || { node_modules/.bin/prettier --list-different .; exit 1; }
node_modules/.bin/tsx scripts/check-imports.ts

# 4. Build (end-to-end tests run the compiled CLI as users do).
npm run --silent build

# The web UI the browser tests drive (Vite into ui/dist).
npm run --silent build:ui

# 5. Unit and end-to-end tests (node's test runner; one file at a time, 2-core machines).
mapfile -t files < <(find test -name '*.test.ts' | sort)
node --import tsx --test --test-concurrency=1 "${files[@]}"
