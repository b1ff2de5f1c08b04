#!/usr/bin/env bash
# test.sh — the project's test command (README and .ci/run call exactly this).
#
# It installs what the tests need when it is missing, then runs every
# module's tests with the race detector. Today the tests need only Go:
# everything runs on loopback sockets inside the test processes.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v go >/dev/null 2>&1; then
	echo "test.sh: Go is not installed (need Go 1.26 or newer)" >&2
	exit 1
fi

echo "== core module: go test -race -shuffle=on ./..."
go test -race -shuffle=on -count=1 -timeout 10m ./...

for mod in integration; do
	if [ -f "$mod/go.mod" ]; then
		echo "== $mod module: go test -race ./..."
		(cd "$mod" && go test -race -count=1 -timeout 10m ./...)
	fi
done
