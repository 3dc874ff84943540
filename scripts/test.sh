#!/usr/bin/env bash
# `npm test`: unit tests, then integration tests with the real Pulumi engine against lab hosts that
# the tests start and stop themselves. Installs what it needs on first use (the Pulumi toolchain,
# the lab's packages and root file system), so it passes on a fresh machine of this kind.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh

echo "== unit tests"
jest --selectProjects unit

if [ "$(uname -s)" != Linux ] || [ "$(id -u)" != 0 ]; then
  echo "integration tests need Linux and root: lab hosts are systemd-nspawn containers with their own network namespaces." >&2
  echo "Run 'npm run test:unit' for the unit tests only." >&2
  exit 1
fi
echo "== lab prerequisites (packages and root file system; cached after the first run)"
node scripts/lab/lab.ts prepare
echo "== integration tests (real Pulumi engine, lab hosts)"
jest --selectProjects integration --runInBand
