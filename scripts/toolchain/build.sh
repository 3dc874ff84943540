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

if [ -x "$out/pulumi" ] && [ -x "$out/pulumi-language-nodejs" ] && [ -x "$out/pulumi-resource-pulumi-nodejs" ] &&
   [ -x "$out/pulumi-language-yaml" ]; then
  echo "$out"; exit 0
fi

command -v go >/dev/null || { echo "toolchain: Go is needed to build the Pulumi engine (Go 1.26 or newer on PATH)" >&2; exit 1; }
mkdir -p "$cache/toolchain"
exec 9>"$cache/toolchain/.lock"
flock 9
if [ -x "$out/pulumi" ]; then echo "$out"; exit 0; fi   # built by another process while we waited

export GOTOOLCHAIN=local GOFLAGS=-modcacherw CGO_ENABLED=0
tmp="$(mktemp -d "$cache/toolchain/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
ldflags="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$version"
cd "$here"
echo "toolchain: building Pulumi $version from Go modules into $out (first time only; takes minutes)" >&2
go build -trimpath -tags osusergo,grpcnotrace -ldflags "$ldflags" -o "$tmp/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi >&2
go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$tmp/pulumi-language-nodejs" ./pulumi-language-nodejs >&2
sdk="$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)"
install -m 0755 "$sdk/nodejs/dist/pulumi-resource-pulumi-nodejs" "$tmp/pulumi-resource-pulumi-nodejs"
GOBIN="$tmp" go install -trimpath -ldflags "-s -w -X github.com/pulumi/pulumi-yaml/pkg/version.Version=${yaml_version#v}" \
  "github.com/pulumi/pulumi-yaml/cmd/pulumi-language-yaml@$yaml_version" >&2
"$tmp/pulumi" version >/dev/null
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "toolchain: built in $((SECONDS - start)) s" >&2
echo "$out"
