#!/usr/bin/env bash
# test.sh — the project's test command (README and .ci/run call exactly this).
#
# 1. Installs what the tests need when it is missing (as root, with apt-get
#    and npm; otherwise it stops and says what to install):
#      chromium          headless browser peer (integration/, via chromedp)
#      python3-websocket Python websocket-client peer, for /usr/bin/python3
#      nodejs, npm       Node's `ws` peer (integration/node, `npm ci`) and the
#                        JavaScript client's tests (client/)
#      nats-server       the NATS broker's tests (natsbroker/)
#      prometheus        Debian's Prometheus server: runs the dashboard's
#                        queries (wsroomprom/)
#      redis-server      the Redis broker's tests (redisbroker/)
#    It never downloads a browser: Chromium comes from Debian.
# 2. Runs every module's tests with the race detector: the core module
#    (printing the conformance summary its runner writes), then every
#    nested module: each directory below this one with a go.mod, found
#    anew on each run. `go test -json` goes through internal/testprogress,
#    which prints each package as it starts and ends (with its time), the
#    full output of failing tests, and while a package runs, at least every
#    30 s, the tests still running: a long package never looks hung.
# 3. If they pass, runs each fuzz target (every `func Fuzz...` in a test
#    file of any module) for a fixed number of executions, without -race.
#    A crasher makes the run fail; Go saves it under the package's
#    testdata/fuzz/<Target>/, where it stays as a regression seed.
# Every step runs even if an earlier module failed; the exit status is
# non-zero if any test, build or fuzz target failed.
#
# How long: measured on the 2-core CI machine from a fresh clone with the
# packages above installed (`CI=true bash .ci/run`, which adds the static
# checks): see the README ("A full run ... takes").
#
# Environment:
#   FUZZTIME  -fuzztime for every target instead of each target's own
#             count: Nx (N executions), or 0 to skip fuzzing. A duration
#             (20s) is accepted but can fail spuriously (golang/go#75804,
#             see "bounded fuzzing" below).
set -euo pipefail
cd "$(dirname "$0")"

# took T C: the wall time since $SECONDS was T and the CPU time (user+sys)
# of this script's finished child processes since cpu printed C (from
# /proc: 0 where there is none). CPU time depends little on what else the
# machine runs; wall time does.
cpu() {
	local tck
	tck=$(getconf CLK_TCK 2>/dev/null || echo 100)
	sed 's/.*) //' "/proc/$$/stat" 2>/dev/null | awk -v tck="$tck" '{ printf "%d", ($14 + $15) / tck }' || echo 0
}
took() { printf '%dm%02ds (CPU %ss)' $(((SECONDS - $1) / 60)) $(((SECONDS - $1) % 60)) $(($(cpu) - $2)); }
start=$SECONDS start_cpu=$(cpu)

if ! command -v go >/dev/null 2>&1; then
	echo "test.sh: Go is not installed (need Go 1.26 or newer)" >&2
	exit 1
fi

# --- prerequisites -----------------------------------------------------
# Debian's python3 owns python3-websocket; a python3 earlier on PATH (pyenv)
# does not see it, so the tests and this check use /usr/bin/python3.
# nats-server lives in /usr/sbin, which a non-root PATH may lack.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
{ [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import websocket' 2>/dev/null; } || missing+=(python3-websocket)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
{ command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; } || missing+=(nats-server)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
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
if [ -f client/package.json ] && [ ! -d client/node_modules ]; then
	echo "== npm ci (client)"
	(cd client && npm ci --no-audit --no-fund)
fi

# --- tests -------------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/wsroom-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export WSROOM_CONFORMANCE_SUMMARY="$tmp/conformance.md" # the conformance test writes it
progress="$tmp/testprogress"
go build -o "$progress" ./internal/testprogress

failed=() # what failed, for the last line

# Nested modules: every go.mod below this directory except in directories
# Go ignores (testdata, names starting with . or _) and node_modules.
mapfile -t nested < <(find . \( -name node_modules -o -name testdata -o -name '.?*' -o -name '_*' \) -prune \
	-o -name go.mod ! -path ./go.mod -print | sed -e 's#^\./##' -e 's#/go.mod$##' | sort)

t=$SECONDS c=$(cpu)
echo "== core module: go test -race -shuffle=on ./..."
go test -json -race -shuffle=on -count=1 -timeout 10m ./... | "$progress" || failed+=("core module tests")
if [ -f "$WSROOM_CONFORMANCE_SUMMARY" ]; then # also when tests failed: it says which cases
	echo "== conformance summary"
	cat "$WSROOM_CONFORMANCE_SUMMARY"
fi
echo "== core module: $(took $t $c)"

for mod in "${nested[@]}"; do
	t=$SECONDS c=$(cpu)
	# A module without test files (a measuring program's) is vetted by the
	# static checks; building it with -race here would only cost time.
	if [ -z "$(find "$mod" \( -name node_modules -o -name testdata \) -prune -o -name '*_test.go' -print -quit)" ]; then
		echo "== $mod module: no test files"
		continue
	fi
	echo "== $mod module: go test -race ./..."
	# Prerequisites are installed above, so a missing peer is a failure
	# (the tests skip only when CI is not "true").
	(cd "$mod" && CI=true go test -json -race -count=1 -timeout 10m ./...) | "$progress" || failed+=("$mod module tests")
	echo "== $mod module: $(took $t $c)"
done

# The JavaScript client (client/): node:test, against the Go test server
# its tests start (internal/resumetest/server). Twice: with the `ws`
# package, then with Node's own WebSocket (built in from Node 22; behind
# --experimental-websocket on Node 20).
t=$SECONDS c=$(cpu)
echo "== client/: node --test with the ws package"
(cd client && WSROOM_TEST_WS=ws node --test) || failed+=("client tests (ws)")
native=(node --test)
node -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' || native=(node --experimental-websocket --test)
echo "== client/: ${native[*]} with Node's own WebSocket"
(cd client && "${native[@]}") || failed+=("client tests (Node's WebSocket)")
echo "== client/: $(took $t $c)"

# --- bounded fuzzing ---------------------------------------------------
# Budgets are execution counts (-fuzztime Nx), not durations: Go 1.26's
# fuzzing coordinator can fail a duration-bounded run with a bare "context
# deadline exceeded" and no crasher, when the -fuzztime deadline races the
# cancellation of its workers (golang/go#75804, fixed in Go 1.27; it failed
# FuzzHandshake in our CI). A count has no deadline to race: on a busy
# machine it only takes longer. The targets' speeds differ 8-fold, so each
# has its own count, sized to about 15 s on a quiet 2-core machine (two
# fuzzing workers, about 30 CPU-seconds; noted: wall and CPU time measured
# in a full run from a fresh clone, load average 2-5). A target not listed
# gets default_execs and a line asking for its own count.
#
# Nine targets: each is given about 10 s (the 15 s counts measured first,
# scaled down), so that fuzzing stays near a minute and a half on a quiet
# machine as the modules grew.
declare -A fuzz_execs=(
	[FuzzHandshake]=45000  # 15 s at 65000: a loopback handshake per input
	[FuzzInflate]=110000   # 17 s at 160000
	[FuzzParser]=170000    # 15 s at 250000
	[FuzzEnvelope]=220000  # 15 s at 330000
	[FuzzDecode]=400000    # node messages (internal/wire): ~40k/s
	[FuzzRESP]=70000       # redisbroker's Redis protocol reader: ~7k/s
	[FuzzSubject]=30000    # natsbroker's subject encoding
	[FuzzCallReplies]=60000 # redisbroker's script replies: ~6k/s
	[FuzzFrame]=150000     # redisbroker's channel message framing: ~15k/s
	[FuzzPresenceDelta]=50000 # redisbroker's presence delta parse+apply: ~5k/s
)
default_execs=100000

# The module directory holding directory $1 (the nearest go.mod).
module_of() {
	local d=$1
	until [ -f "$d/go.mod" ]; do d=$(dirname "$d"); done
	echo "$d"
}

FUZZTIME=${FUZZTIME:-}
if [ ${#failed[@]} -gt 0 ]; then
	echo "== fuzzing skipped: tests failed"
elif [ "$FUZZTIME" = 0 ]; then
	echo "== fuzzing skipped: FUZZTIME=0"
else
	case $FUZZTIME in
	'' | *x) ;;
	*) echo "test.sh: FUZZTIME=$FUZZTIME is a duration: it can fail with a bare \"context deadline exceeded\" (golang/go#75804); use Nx" >&2 ;;
	esac
	# "dir name" for every fuzz target, from the source: no build needed.
	mapfile -t targets < <(grep -rE -o --include='*_test.go' --exclude-dir=node_modules --exclude-dir=testdata --exclude-dir='.?*' --exclude-dir='_*' \
		'^func Fuzz[A-Za-z0-9_]*\(' . | sed -E 's#^(.*)/[^/]*:func (Fuzz[A-Za-z0-9_]*)\($#\1 \2#' | sort -u)
	for target in "${targets[@]}"; do
		dir=${target% *} name=${target#* }
		mod=$(module_of "$dir")
		budget=$FUZZTIME
		if [ -z "$budget" ]; then
			budget=${fuzz_execs[$name]:-}
			if [ -z "$budget" ]; then
				budget=$default_execs
				echo "test.sh: $name has no count in test.sh's fuzz_execs; using $default_execs (size it to about 20 s)"
			fi
			budget=${budget}x
		fi
		t=$SECONDS c=$(cpu)
		echo "== fuzz $name ($dir) for $budget"
		(cd "$mod" && go test -run '^$' -fuzz "^$name\$" -fuzztime "$budget" ".${dir#"$mod"}") || failed+=("fuzz $name")
		echo "== fuzz $name: $(took $t $c)"
	done
fi

if [ ${#failed[@]} -gt 0 ]; then
	printf '== test.sh: FAILED after %s:' "$(took $start $start_cpu)"
	printf ' %s;' "${failed[@]}"
	echo
	exit 1
fi
echo "== test.sh: all passed in $(took $start $start_cpu)"
