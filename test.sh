#!/usr/bin/env bash
# test.sh — the project's test command (README and .ci/run call exactly this).
#
# 1. Installs what the tests need when it is missing (as root, with apt-get
#    and npm; otherwise it stops and says what to install):
#      chromium          headless browser peer (integration/, via chromedp)
#      python3-websocket Python websocket-client peer, for /usr/bin/python3
#      nodejs, npm       Node's `ws` peer (integration/node, `npm ci`)
#      redis-server      the Redis broker's tests (redisbroker/)
#    It never downloads a browser: Chromium comes from Debian.
# 2. Runs every module's tests with the race detector: the core module
#    (printing the conformance summary its runner writes), then each nested
#    module that exists (integration, bench, redisbroker).
# 3. Runs each fuzz target for FUZZTIME (default 20s) without -race. A
#    crasher makes the run fail; Go saves it under the package's
#    testdata/fuzz/<Target>/, where it stays as a regression seed.
#
# Environment: FUZZTIME (e.g. 5s, or 0 to skip fuzzing).
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v go >/dev/null 2>&1; then
	echo "test.sh: Go is not installed (need Go 1.26 or newer)" >&2
	exit 1
fi

# --- prerequisites -----------------------------------------------------
# Debian's python3 owns python3-websocket; a python3 earlier on PATH (pyenv)
# does not see it, so the tests and this check use /usr/bin/python3.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
{ [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import websocket' 2>/dev/null; } || missing+=(python3-websocket)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "test.sh: missing ${missing[*]}; as root run:" >&2
		echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
		exit 1
	fi
	echo "== installing ${missing[*]}"
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi
if [ -f integration/node/package.json ] && [ ! -d integration/node/node_modules ]; then
	echo "== npm ci (integration/node)"
	(cd integration/node && npm ci --no-audit --no-fund)
fi

# --- tests -------------------------------------------------------------
summary=$(mktemp "${TMPDIR:-/tmp}/wsroom-conformance.XXXXXX.md")
trap 'rm -f "$summary"' EXIT
rm -f "$summary" # the conformance test creates it
export WSROOM_CONFORMANCE_SUMMARY="$summary"

echo "== core module: go test -race -shuffle=on ./..."
status=0
go test -race -shuffle=on -count=1 -timeout 10m ./... || status=$?
if [ -f "$summary" ]; then # also when tests failed: it says which cases
	echo "== conformance summary"
	cat "$summary"
fi
[ "$status" -eq 0 ] || exit "$status"

for mod in integration bench redisbroker; do
	if [ -f "$mod/go.mod" ]; then
		echo "== $mod module: go test -race ./..."
		# Prerequisites are installed above, so a missing peer is a failure
		# (the tests skip only when CI is not "true").
		(cd "$mod" && CI=true go test -race -count=1 -timeout 10m ./...)
	fi
done

# --- bounded fuzzing ---------------------------------------------------
FUZZTIME=${FUZZTIME:-20s}
if [ "$FUZZTIME" != 0 ]; then
	for target in FuzzHandshake:. FuzzInflate:. FuzzParser:./internal/frame FuzzEnvelope:./internal/envelope; do
		name=${target%%:*} pkg=${target#*:}
		echo "== fuzz $name ($pkg) for $FUZZTIME"
		go test -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME" "$pkg"
	done
fi
