# Sourced by the project's scripts: the environment every Pulumi command of this project runs in.
# - Node from node_modules (the npm package `node`, Node 24) comes first on PATH;
# - a `pulumi` already on PATH is used when it is at least the pinned version, otherwise the
#   pinned toolchain is built from Go modules (scripts/toolchain/build.sh) and put first on PATH;
# - state in a git-ignored folder of the repo (local file backend), passphrase secrets provider,
#   no update checks, no plugin downloads.
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$repo/node_modules/.bin:$PATH"

pinned="$(awk '$1 == "github.com/pulumi/pulumi/pkg/v3" { sub(/^v/, "", $2); print $2 }' "$repo/scripts/toolchain/go.mod")"
use_ambient=""
if [ -z "${BACKLOG_BUILD_TOOLCHAIN:-}" ] && ambient="$(command -v pulumi 2>/dev/null)"; then
  have="$("$ambient" version 2>/dev/null | sed 's/^v//')"
  if [ -n "$have" ] && [ "$(printf '%s\n%s\n' "$pinned" "$have" | sort -V | head -n1)" = "$pinned" ]; then
    use_ambient="$ambient"
  fi
fi
if [ -z "$use_ambient" ]; then
  toolchain="$(bash "$repo/scripts/toolchain/build.sh")" || return 1
  export PATH="$toolchain:$PATH"
fi

export PULUMI_HOME="${PULUMI_HOME:-$repo/.pulumi-home}"
export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://$repo/.pulumi-state}"
mkdir -p "${PULUMI_BACKEND_URL#file://}" "$PULUMI_HOME"
# Throwaway passphrase for the lab stack only; set your own for anything real.
export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE-lab-only-not-a-secret}"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_DISABLE_MANAGED_NODE=true
# Node's on-disk compile cache for the Node processes of every run (the program, Pulumi's dynamic
# provider; both load @pulumi/pulumi, about 0.3 CPU s each without it), in this repository's
# node_modules/.cache rather than the shared temp folder: cached code is code these processes run.
export NODE_COMPILE_CACHE="${NODE_COMPILE_CACHE:-$repo/node_modules/.cache/node-compile-cache}"
