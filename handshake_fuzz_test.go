package wsroom_test

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
)

// fuzzProtocols are the subprotocols the fuzzed hub speaks.
var fuzzProtocols = []string{"chat", "superchat"}

// fuzzHandshakeSeeds are (request line, header block) pairs: a valid
// handshake, its common variants and the malformed or refused ones that
// handshake_test.go checks one by one. testdata/fuzz/FuzzHandshake holds
// more.
var fuzzHandshakeSeeds = []struct{ line, header string }{
	{"GET /ws HTTP/1.1", "Host: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13"},
	{"GET /chat?room=lobby HTTP/1.1", "Host: example.com\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://example.com\r\nSec-WebSocket-Protocol: superchat, chat\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"},
	{"GET / HTTP/1.1", "Host: 127.0.0.1:8080\r\nConnection: keep-alive\r\nConnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-key: x3JJHMbDL1EzLkh9GBhXDw==\r\nsec-websocket-version: 13\r\nOrigin: https://a.example.com"},
	{"GET /ws HTTP/1.1", "Host: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x85\x01\x02\x03\x04\x69\x67\x6f\x68\x6e"},
	{"GET /ws HTTP/1.1", "Host: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8"},
	{"GET /ws HTTP/1.1", "Host: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13"},
	{"GET /ws HTTP/1.1", "Host: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13"},
	{"GET /ws HTTP/1.1", "Host: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13"},
	{"POST /ws HTTP/1.1", "Host: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 5\r\n\r\nhello"},
	{"HEAD /ws HTTP/1.1", "Host: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13"},
	{"GET /ws HTTP/1.0", "Host: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13"},
	{"GET /ws HTTP/1.1", "Host: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: null"},
	{"GET /ws HTTP/1.1", "Host: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://evil.test\r\nOrigin: http://example.com"},
	{"GET /ws HTTP/1.1", "Host: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-User: banned-bob"},
	{"GET /ws HTTP/1.1", "Host: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: \"chat\""},
	{"GET /ws HTTP/1.1", "Host: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
	{"GET /ws HTTP/1.1", "Host: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nExpect: 100-continue"},
	{"GET /ws HTTP/1.1", "Host: example.com\r\nUpgrade:\r\n websocket\r\nConnection: Upgrade"},
	{"GET http://example.com/ws HTTP/1.1", "Host: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13"},
	{"GET /ws HTTP/1.1", "Host: example.com\r\nUpgrade: websocket\x00\r\nConnection: Upgrade\xff\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13"},
	{"GET /health HTTP/1.1", "Host: example.com\r\nAccept: */*"},
	{"OPTIONS * HTTP/1.1", "Host: example.com\r\nUpgrade: websocket"},
	{"GET /ws HTTP/1.1", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13"},
}

// FuzzHandshake sends a fuzzed request head (request line and header
// block) over a real loopback connection to a hub with subprotocols, an
// origin pattern and an Identify that can refuse. Whatever the bytes:
//
//   - the server answers (it never hangs or drops the connection silently),
//     and nothing panics;
//   - a 101 comes only for a GET with version 13 and carries the right
//     Sec-WebSocket-Accept and, if any, a subprotocol both sides listed;
//   - the hub's refusals are 400, 403, 405, 426 or 503 with a one-line
//     "wsroom: " body; anything else must be net/http's own answer to a
//     request it could not parse (400, 417, 431, 501, 505) or to
//     "OPTIONS *" (200), before the hub saw it;
//   - once the client hangs up, the hub holds no connection.
//
// The client half-closes after the head so that a request announcing a
// body gets its answer instead of waiting for bytes that never come.
func FuzzHandshake(f *testing.F) {
	for _, s := range fuzzHandshakeSeeds {
		f.Add(s.line, []byte(s.header))
	}
	s := newServerWith(f, wsroom.Options{
		Subprotocols:   fuzzProtocols,
		OriginPatterns: []string{"*.example.com"},
		Identify: func(r *http.Request) (string, error) {
			user := r.Header.Get("X-User")
			if strings.HasPrefix(user, "banned") {
				return "", wsroom.Reject(http.StatusForbidden, "banned: "+user)
			}
			return user, nil
		},
		OnMessage: echo,
	}, serverSetup{mount: anyPath})
	addr := s.addr

	f.Fuzz(func(t *testing.T, line string, header []byte) {
		if len(line)+len(header) > 16<<10 {
			return // far below net/http's header limit; keeps runs fast
		}
		head := []byte(line + "\r\n")
		if h := bytes.TrimRight(header, "\r\n"); len(h) > 0 {
			head = append(append(head, h...), "\r\n"...)
		}
		head = append(head, "\r\n"...)

		answer, body, err := fuzzRoundTrip(addr, head)
		if err != nil {
			t.Fatalf("request %q: %v", head, err)
		}
		// How the client side of net/http reads the same bytes.
		req, _ := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		checkHandshakeAnswer(t, head, req, answer, body)

		wstest.WaitFor(t, "the hub to drop the connection", func() bool { return s.hub.Stats().Connections == 0 })
	})
}

// fuzzRoundTrip sends head on a new connection, half-closes, and reads one
// response and up to 4 KiB of its body (none after a 101).
func fuzzRoundTrip(addr string, head []byte) (*http.Response, string, error) {
	c, err := wstest.DialTCP(addr)
	if err != nil {
		return nil, "", err
	}
	defer c.Close()
	c.Timeout = 10 * time.Second
	if err := c.WriteRaw(head); err != nil {
		return nil, "", err
	}
	// An error here means the server has answered and gone already
	// (net/http refusing a huge head, for instance): read its answer.
	c.CloseWrite()
	method := http.MethodGet
	if m, _, ok := strings.Cut(string(head), " "); ok && m == http.MethodHead {
		method = m
	}
	resp, err := c.ReadResponse(&http.Request{Method: method})
	if err != nil {
		return nil, "", errors.New("no answer: " + err.Error())
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp, "", nil
	}
	b, err := wstest.ReadBody(resp)
	if err != nil && !(errors.Is(err, syscall.ECONNRESET) && resp.ContentLength == -1) {
		return nil, "", errors.New("reading the body: " + err.Error())
	}
	// net/http answers a request it cannot parse with a body that ends when
	// the connection does, and closes without reading the rest of what was
	// sent, so the kernel ends that body with a reset rather than EOF once
	// the answer has been read. (The hub's answers carry a Content-Length.)
	return resp, b, nil
}

// checkHandshakeAnswer applies FuzzHandshake's rules to one answer; req is
// the request as http.ReadRequest parses head (nil if it cannot).
func checkHandshakeAnswer(t *testing.T, head []byte, req *http.Request, resp *http.Response, body string) {
	t.Helper()
	status := resp.StatusCode
	if status == http.StatusSwitchingProtocols {
		if req == nil || req.Method != http.MethodGet || req.Header.Get("Sec-WebSocket-Version") != "13" {
			t.Fatalf("101 for %q", head)
		}
		if err := wstest.CheckUpgrade(req, resp); err != nil {
			t.Fatalf("101 for %q: %v", head, err)
		}
		if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
			t.Fatalf("101 for %q: Upgrade %q", head, resp.Header.Get("Upgrade"))
		}
		if p := resp.Header.Get("Sec-WebSocket-Protocol"); p != "" &&
			(!slices.Contains(fuzzProtocols, p) || !strings.Contains(strings.Join(req.Header.Values("Sec-WebSocket-Protocol"), ","), p)) {
			t.Fatalf("101 for %q: subprotocol %q", head, p)
		}
		return
	}
	line, _ := strings.CutSuffix(body, "\n")
	if strings.ContainsAny(line, "\r\n") {
		t.Fatalf("%d for %q: body %q is not one line", status, head, body)
	}
	hubStatus := status == 400 || status == 403 || status == 405 || status == 426 || status == 503
	switch {
	case strings.HasPrefix(body, "wsroom: "):
		if !hubStatus || !strings.HasSuffix(body, "\n") {
			t.Fatalf("hub answered %d %q for %q", status, body, head)
		}
	case body == "" && hubStatus && resp.Request.Method == http.MethodHead:
		// The hub's answer to HEAD, without its body.
	case status == 400 || status == 417 || status == 431 || status == 501 || status == 505:
		// net/http's own answer; the hub never answers without "wsroom: ".
	case status == 200 && body == "" && req != nil && req.Method == http.MethodOptions && req.RequestURI == "*":
		// net/http answers "OPTIONS *" itself.
	default:
		t.Fatalf("answer %d %q for %q", status, body, head)
	}
}
