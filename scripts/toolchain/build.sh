#!/usr/bin/env bash
# Builds (once) the pinned Pulumi toolchain from the Go module proxy and prints the directory
# that holds its binaries:
#   pulumi                          the CLI and engine (github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
#   pulumi-language-nodejs          our Node.js language host (./pulumi-language-nodejs, see its doc)
#   pulumi-resource-pulumi-nodejs   the dynamic-provider shim shipped in the sdk/v3 module
#   pulumi-language-yaml            the official YAML language host (github.com/pulumi/pulumi-yaml,
#                                   pinned below), for Pulumi YAML programs such as examples/yaml
# The result is cached outside the clone, keyed by a hash of everything that goes into it, so later
# runs and CI on the same machine reuse it. Builds are atomic (temp dir + rename) and locked.
#
# A build takes minutes, so it reports on stderr (stdout carries only the directory): each phase
# when it starts, with how long it usually takes, then a plain line (no carriage returns, the same
# on a terminal and in CI logs) every BACKLOG_PROGRESS_SECONDS (default 20) with the elapsed time,
# the phase and how far it got. The go commands' own output goes to a log, shown when one fails.
#
# `build.sh --is-cached` prints the directory and exits 0 when it is already built, 1 when not
# (builds nothing; `npm run doctor` uses it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The engine version comes from go.mod, the one place it is pinned.
version="$(awk '$1 == "github.com/pulumi/pulumi/pkg/v3" { sub(/^v/, "", $2); print $2 }' "$here/go.mod")"
[ -n "$version" ] || { echo "toolchain: cannot read the pinned pulumi/pkg/v3 version from $here/go.mod" >&2; exit 1; }
# The YAML language host is its own Go module with no replace directives, so it is built with
# `go install module@version` against its own go.mod (not this module's engine version). Pinned here;
# this file is part of the cache key, so changing the version rebuilds.
yaml_version=v1.25.0

if [ "$(id -u)" = 0 ]; then default_cache=/var/cache/pulumi-backlog; else default_cache="${XDG_CACHE_HOME:-$HOME/.cache}/pulumi-backlog"; fi
cache="${BACKLOG_CACHE_DIR:-$default_cache}"
key="$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" "$here"/pulumi-language-nodejs/*.go | sha256sum | cut -c1-16)"
out="$cache/toolchain/pulumi-$version-$key"

built() { [ -x "$out/pulumi" ] && [ -x "$out/pulumi-language-nodejs" ] && [ -x "$out/pulumi-resource-pulumi-nodejs" ] && [ -x "$out/pulumi-language-yaml" ]; }
if built; then echo "$out"; exit 0; fi
if [ "${1:-}" = --is-cached ]; then echo "$out"; exit 1; fi

command -v go >/dev/null || { echo "toolchain: Go is needed to build the Pulumi engine (Go 1.26 or newer on PATH; 'npm run doctor' checks)" >&2; exit 1; }
start=$SECONDS
interval="${BACKLOG_PROGRESS_SECONDS:-20}"
say() { echo "toolchain: $*" >&2; }
clock() { local s=$((SECONDS - start)); printf '[%dm%02ds]' $((s / 60)) $((s % 60)); }

mkdir -p "$cache/toolchain"
exec 9>"$cache/toolchain/.lock"
if ! flock -n 9; then
  say "another process is building the toolchain into $cache/toolchain; waiting for it"
  until flock -w "$interval" 9; do say "$(clock) still waiting for the other build"; done
fi
if built; then echo "$out"; exit 0; fi   # built by another process while we waited

export GOTOOLCHAIN=local GOFLAGS=-modcacherw CGO_ENABLED=0
tmp="$(mktemp -d "$cache/toolchain/.build.XXXXXX")"
log="$tmp/.go.log"
step_pid=""
trap '[ -z "$step_pid" ] || kill "$step_pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# has_child PID NAME: whether a process named NAME is a child of PID (go runs compile and link as
# its children, so this tells which of the two is going on).
has_child() {
  local stat line
  for stat in /proc/[0-9]*/stat; do
    { read -r line <"$stat"; } 2>/dev/null || continue
    [[ "$line" == *"($2) "?" $1 "* ]] && return 0
  done
  return 1
}
# Status words for the progress lines, from the go commands' log (-x and -v output).
count() { grep -c -e "$1" "$log" 2>/dev/null || true; }
fetched() { echo "downloading Go modules: $(count '\.zip: 200 OK') of $modules module archives fetched"; }
compiled() {   # PID WHAT [TOTAL]
  local n; n="$(grep -c -v -e '^go: ' -e '^#' "$log" 2>/dev/null || true)"
  if has_child "$1" link; then echo "linking $2 ($n packages compiled)"
  elif [ -n "${3:-}" ]; then echo "compiling $2: $n of up to $3 packages compiled"
  else echo "compiling $2: $n packages compiled, $(count '^go: downloading') modules downloaded"; fi
}
# step STATUS-COMMAND... -- COMMAND...: runs COMMAND with its output in $log and, every $interval
# seconds while it runs, says the elapsed time, $phase and what STATUS-COMMAND (given COMMAND's pid
# first) prints.
step() {
  local status=() cmd
  while [ "$1" != -- ]; do status+=("$1"); shift; done
  shift
  cmd="$*"
  "$@" >"$log" 2>&1 &
  step_pid=$!
  local next=$((SECONDS + interval))
  while kill -0 "$step_pid" 2>/dev/null; do
    sleep 0.5
    if [ "$SECONDS" -ge "$next" ] && kill -0 "$step_pid" 2>/dev/null; then
      say "$(clock) $phase $("${status[0]}" "$step_pid" "${status[@]:1}")"
      next=$((SECONDS + interval))
    fi
  done
  local rc=0
  wait "$step_pid" || rc=$?
  step_pid=""
  if [ "$rc" != 0 ]; then
    say "$(clock) failed (exit $rc): $cmd"
    tail -n 40 "$log" | sed 's/^/  /' >&2
    exit 1
  fi
}

ldflags="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$version"
cd "$here"
# Modules in go.mod's require blocks: what `go mod download` fetches.
modules="$(awk '/^require \(/ { b = 1; next } b && /^\)/ { b = 0; next } b && NF { n++ } /^require [^(]/ { n++ } END { print n + 0 }' go.mod)"
say "building Pulumi $version from Go modules into $out"
say "first time only: about 10 minutes on 2 cores (longer while other work uses the CPU), in 4 steps, with a line every $interval s; later runs reuse it"

phase=1/4
say "$(clock) $phase downloading Go modules ($modules; a minute or two on a fresh machine, none when Go's module cache has them)"
step fetched -- go mod download -x
n="$(count '\.zip: 200 OK')"
if [ "${n:-0}" = 0 ]; then n="all were in Go's module cache"
elif [ "$n" -ge "$modules" ]; then n="all $n fetched"
else n="$n fetched, the rest were in Go's module cache"; fi
say "$(clock) 1/4 Go modules downloaded ($n)"

total="$(go list -deps github.com/pulumi/pulumi/pkg/v3/cmd/pulumi | wc -l)"
phase=2/4
say "$(clock) $phase compiling the Pulumi engine: $total packages (fewer when Go's build cache has some), then linking; about 7 minutes on 2 cores"
step compiled "the Pulumi engine" "$total" -- \
  go build -v -trimpath -tags osusergo,grpcnotrace -ldflags "$ldflags" -o "$tmp/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi

phase=3/4
say "$(clock) $phase building pulumi-language-nodejs (this repo's language host; under a minute)"
step compiled pulumi-language-nodejs -- \
  go build -v -trimpath -ldflags "-s -w -X main.version=$version" -o "$tmp/pulumi-language-nodejs" ./pulumi-language-nodejs
sdk="$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)"
install -m 0755 "$sdk/nodejs/dist/pulumi-resource-pulumi-nodejs" "$tmp/pulumi-resource-pulumi-nodejs"

phase=4/4
say "$(clock) $phase building pulumi-language-yaml $yaml_version (downloads its own modules; about 2 minutes)"
step compiled pulumi-language-yaml -- \
  env GOBIN="$tmp" go install -v -trimpath -ldflags "-s -w -X github.com/pulumi/pulumi-yaml/pkg/version.Version=${yaml_version#v}" \
  "github.com/pulumi/pulumi-yaml/cmd/pulumi-language-yaml@$yaml_version"

"$tmp/pulumi" version >/dev/null
rm -f "$log"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
say "$(clock) built: $out"
echo "$out"
