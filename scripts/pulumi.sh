#!/usr/bin/env bash
# `npm run pulumi -- <args>`: the Pulumi CLI in this project's environment (see scripts/env.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# The deployment program compiled (.build/, see main.js): destroy and refresh load the provider from it
# without running the program.
node "$repo/main.js" --build
exec pulumi "$@"
