#!/usr/bin/env bash
# tests/newcomer.sh - the README's two commands as a newcomer types them, in a
# fresh clone of this repository's HEAD: ./quickstart demo && ./quickstart test
# && ./quickstart demo. A maintainer check (`make newcomer-check`, about as long
# as `./quickstart test`), not part of every `make check`; CI runs the same
# sequence on its own clean clone (.ci/run).
#   tests/newcomer.sh [REPO]     (default: the repository this script is in)
set -euo pipefail
repo=${1:-$(cd "$(dirname "$0")/.." && git rev-parse --show-toplevel)}
tmp=$(mktemp -d /tmp/km-newcomer.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
git clone -q "$repo" "$tmp/libkm"
cd "$tmp/libkm"
step() { printf '\n==== newcomer: %s\n' "$*"; }
step "./quickstart demo";  ./quickstart demo </dev/null
step "./quickstart test";  ./quickstart test </dev/null
step "./quickstart demo (again)"; ./quickstart demo </dev/null
echo "newcomer: demo, test, demo passed in a fresh clone of $(git rev-parse --short HEAD)"
