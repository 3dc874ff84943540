#!/usr/bin/env bash
# `npm test`: unit tests, then integration tests with the real Pulumi engine against lab hosts that
# the tests start and stop themselves. Installs what it needs on first use (the Pulumi toolchain,
# the lab's packages and root file system), so it passes on a fresh machine of this kind.
# Checks the machine first (`npm run doctor`) and stops with what to fix when something is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/node_modules/.bin:$PATH"

if [ ! -x node_modules/.bin/node ]; then
  echo "npm test: node_modules/.bin/node is missing: run 'npm ci' first (it installs Node 24 and the dependencies)." >&2
  exit 1
fi
echo "== prerequisites (npm run doctor)"
if ! node scripts/doctor.ts; then
  echo "npm test: stopped before running anything; fix what is marked FAIL above, then run 'npm test' again." >&2
  echo "'npm run test:unit' runs the unit tests alone (any OS, no root, no Go)." >&2
  exit 1
fi

echo "== lint (Biome, biome.jsonc)"
# `biome ci`: the lint rules and the format check (fix formatting with `npm run format`).
npm run --silent lint
echo "== type check (npm run build: the library, tests and program; scripts/; the policy pack, its dependencies installed on first use)"
npm run --silent build
echo "== the deployment program compiled into .build/ (node main.js --build; Pulumi.yaml runs main.js)"
node main.js --build
echo "== unit tests"
jest --selectProjects unit

echo "== Pulumi toolchain (the first run builds it from Go modules: about 10 minutes on 2 cores; cached afterwards)"
source scripts/env.sh
echo "pulumi $(pulumi version) ($(command -v pulumi))"
echo "== lab prerequisites (packages and the Debian root fs: the first run builds it, 2 to 5 minutes; cached afterwards)"
node scripts/lab/lab.ts prepare
echo "== integration tests (real Pulumi engine, lab hosts)"
jest --selectProjects integration --runInBand
