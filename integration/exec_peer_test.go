package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// runPeer runs a peer program (node/peer.mjs, python/peer.py) against a
// fresh echo hub and checks its report. The program gets the endpoint's
// URL as its last argument and the spec on stdin.
func runPeer(t *testing.T, name string, argv ...string) {
	t.Helper()
	e, srv := serveEcho(t, "")
	sent := peerMessages()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], wsURL(srv, name))...)
	cmd.Stdin = bytes.NewReader(specJSON(t, sent))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\nstderr:\n%s\nstdout:\n%s", cmd, err, stderr.Bytes(), out)
	}
	var rep peerReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("%s: unreadable report %q: %v\nstderr:\n%s", cmd, out, err, stderr.Bytes())
	}
	e.check(t, name, sent, rep)
}

// TestNodeWS round-trips the peer messages with Node's `ws` package
// (node/package-lock.json pins it; ./test.sh runs `npm ci`).
func TestNodeWS(t *testing.T) {
	runPeer(t, "node-ws", requireNodeWS(t), filepath.Join("node", "peer.mjs"))
}

// requireNodeWS returns the path of node, having checked that the `ws`
// package is installed in node/ (see requirePeer).
func requireNodeWS(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		requirePeer(t, "node is not installed")
	}
	if _, err := os.Stat(filepath.Join("node", "node_modules", "ws", "package.json")); err != nil {
		requirePeer(t, "node/node_modules/ws is missing: run `npm ci` in integration/node")
	}
	return node
}

// pythonPath is Debian's interpreter, which python3-websocket belongs to
// (a python3 earlier on PATH, from pyenv for instance, lacks it).
const pythonPath = "/usr/bin/python3"

// TestPythonWebsocketClient round-trips the peer messages with Python's
// websocket-client (Debian python3-websocket).
func TestPythonWebsocketClient(t *testing.T) {
	if out, err := exec.Command(pythonPath, "-c", "import websocket").CombinedOutput(); err != nil {
		requirePeer(t, "%s cannot import websocket (Debian package python3-websocket): %v %s", pythonPath, err, out)
	}
	runPeer(t, "python-websocket-client", pythonPath, filepath.Join("python", "peer.py"))
}
