#!/usr/bin/env bash
# `npm run pulumi -- <args>`: the Pulumi CLI in this project's environment (see scripts/env.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec pulumi "$@"
