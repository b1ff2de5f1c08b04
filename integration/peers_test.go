package integration

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
)

// This file is what every real-peer test (browser_test.go, exec_peer_test.go)
// shares: the messages a peer sends, an echo hub that
// records what it received and how each connection closed, and the
// comparison of a peer's report with what was sent.
//
// A peer is given the messages as a JSON spec, sends them one at a time,
// waiting for each echo, then closes with 1000 "done" and waits for the
// server's close frame. It reports every message it got back and the close
// code the server answered with; the Go test is the judge of all of it.

// peerMessage is one message of the spec and of a peer's report. Data is
// base64 so that the JSON carries any bytes exactly.
type peerMessage struct {
	Type string `json:"type"` // "text" or "binary"
	Data string `json:"data"`
}

// peerReport is what a peer prints (or returns) when it is done.
type peerReport struct {
	Received  []peerMessage `json:"received"`
	CloseCode int           `json:"closeCode"` // the code of the server's close frame
	Error     string        `json:"error"`     // set if the peer gave up
}

// peerMessages returns the spec every peer round-trips: text with 4-byte
// UTF-8 sequences (outside the BMP, so UTF-16 surrogate pairs in browsers
// and Node), a 256-byte binary holding every byte value, and a 100 KiB
// binary, above the 64 KiB default ReadLimit and well past the 16-bit
// length form.
func peerMessages() []wsroom.Message {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	big := make([]byte, 100<<10)
	for i := range big {
		big[i] = byte(i*7 + i>>8) // no period of 256, so shifted data cannot match
	}
	return []wsroom.Message{
		wsroom.Text("grüße 😀𝄞 — four-byte UTF-8: 🎉"),
		wsroom.Binary(all),
		wsroom.Binary(big),
	}
}

func specJSON(t *testing.T, msgs []wsroom.Message) []byte {
	t.Helper()
	spec := make([]peerMessage, len(msgs))
	for i, m := range msgs {
		spec[i] = peerMessage{Type: typeName(m.Type), Data: base64.StdEncoding.EncodeToString(m.Data)}
	}
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// typeName is the spec's name of a message type: "text" or "binary".
func typeName(t wsroom.MessageType) string { return t.String() }

// echoHub is a hub that sends every message back to its sender, with a
// 1 MiB ReadLimit. It identifies connections by the "peer" query parameter
// and records each connection's inbound messages and close.
type echoHub struct {
	*wsroom.Hub
	logs *syncBuffer

	mu       sync.Mutex
	received map[string][]wsroom.Message
	closed   map[string]*wsroom.CloseError
	done     chan string // the peer name, after OnClose
}

func newEchoHub() *echoHub {
	e := &echoHub{
		logs:     new(syncBuffer),
		received: map[string][]wsroom.Message{},
		closed:   map[string]*wsroom.CloseError{},
		done:     make(chan string, 16),
	}
	e.Hub = wsroom.New(wsroom.Options{
		ReadLimit: 1 << 20,
		Identify: func(r *http.Request) (string, error) {
			return r.URL.Query().Get("peer"), nil
		},
		OnMessage: func(c *wsroom.Conn, m wsroom.Message) {
			e.mu.Lock()
			e.received[c.UserID()] = append(e.received[c.UserID()], wsroom.Message{Type: m.Type, Data: bytes.Clone(m.Data)})
			e.mu.Unlock()
			if err := c.Send(m); err != nil {
				e.logs.Write([]byte("echo: Send: " + err.Error() + "\n"))
			}
		},
		OnClose: func(c *wsroom.Conn, err error) {
			var ce *wsroom.CloseError
			errors.As(err, &ce)
			e.mu.Lock()
			e.closed[c.UserID()] = ce
			e.mu.Unlock()
			e.done <- c.UserID()
		},
		Logger: slog.New(slog.NewTextHandler(e.logs, nil)),
	})
	return e
}

// serveEcho starts a loopback server with the echo hub at /ws and, if
// page is not empty, that HTML at / (for browsers: same origin).
func serveEcho(t *testing.T, page string) (*echoHub, *httptest.Server) {
	t.Helper()
	e := newEchoHub()
	mux := http.NewServeMux()
	mux.Handle("GET /ws", e.Hub)
	if page != "" {
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write([]byte(page))
		})
	}
	th := &testHub{Hub: e.Hub, logs: e.logs}
	return e, serve(t, th, mux)
}

// wsURL is the echo endpoint's URL for the named peer.
func wsURL(srv *httptest.Server, peer string) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws?peer=" + peer
}

// check compares a peer's report and the server's record with sent: the
// peer got exactly sent back, the server received exactly sent, the server
// answered the close with 1000, and OnClose saw 1000 from the peer.
func (e *echoHub) check(t *testing.T, peer string, sent []wsroom.Message, rep peerReport) {
	t.Helper()
	if rep.Error != "" {
		t.Errorf("%s reported an error: %s", peer, rep.Error)
	}
	compare(t, peer+" got back", sent, rep.Received)

	select {
	case <-e.done:
	case <-time.After(timeout):
		t.Fatalf("OnClose did not run for %s", peer)
	}
	e.mu.Lock()
	got, ce := e.received[peer], e.closed[peer]
	e.mu.Unlock()
	report := make([]peerMessage, len(got))
	for i, m := range got {
		report[i] = peerMessage{Type: typeName(m.Type), Data: base64.StdEncoding.EncodeToString(m.Data)}
	}
	compare(t, "the server received from "+peer, sent, report)

	if rep.CloseCode != int(wsroom.StatusNormalClosure) {
		t.Errorf("%s: the server answered its close with %d, want 1000", peer, rep.CloseCode)
	}
	if ce == nil || ce.Code != wsroom.StatusNormalClosure || !ce.Remote {
		t.Errorf("%s: OnClose reported %v, want 1000 from the remote", peer, ce)
	}
}

func compare(t *testing.T, what string, want []wsroom.Message, got []peerMessage) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s %d messages, want %d", what, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		data, err := base64.StdEncoding.DecodeString(got[i].Data)
		if err != nil {
			t.Errorf("%s: message %d: bad base64: %v", what, i, err)
			continue
		}
		if got[i].Type != typeName(want[i].Type) || !bytes.Equal(data, want[i].Data) {
			t.Errorf("%s: message %d is %s %s, want %s %s (first difference at byte %d)", what, i,
				got[i].Type, describe(data), typeName(want[i].Type), describe(want[i].Data), firstDiff(data, want[i].Data))
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// describe shortens a payload for a failure message.
func describe(b []byte) string {
	if len(b) <= 64 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("(%d bytes, starting %q)", len(b), b[:32])
}

// requirePeer reports a missing prerequisite (a browser, an interpreter,
// installed packages): the test fails under CI=true, where ./test.sh has
// installed everything, and is skipped otherwise so that a plain
// `go test ./...` on a bare machine still runs the rest.
func requirePeer(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...) + " (./test.sh installs it)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg + "; skipped because CI is not \"true\"")
}
