package wsroom_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
)

// hsServer is a hub behind an arbitrary handler on a loopback server.
type hsServer struct {
	hub  *wsroom.Hub
	srv  *httptest.Server
	host string // 127.0.0.1:port
	url  string // http://127.0.0.1:port/ws
}

// hsNewServer builds a hub from opts and serves mount(hub) on a fresh
// loopback server (the hub itself, on every path, when mount is nil).
// Cleanup shuts the hub down, then closes the server.
func hsNewServer(t *testing.T, opts wsroom.Options, mount func(*wsroom.Hub) http.Handler) *hsServer {
	t.Helper()
	if mount == nil {
		mount = func(h *wsroom.Hub) http.Handler { return h }
	}
	s := newServerWith(t, opts, serverSetup{mount: mount})
	host := s.srv.Listener.Addr().String()
	return &hsServer{hub: s.hub, srv: s.srv, host: host, url: "http://" + host + "/ws"}
}

// hsEcho is an OnMessage that sends every message back.
func hsEcho(c *wsroom.Conn, m wsroom.Message) { c.Send(m) }

// hsBody reads a response body (bounded) and closes it.
func hsBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if err != nil {
		t.Fatalf("read response body: %v", err)
	}
	return string(b)
}

// hsCheckOneLine fails unless body is one line starting "wsroom: " and
// holding want.
func hsCheckOneLine(t *testing.T, body, want string) {
	t.Helper()
	line, ok := strings.CutSuffix(body, "\n")
	if !ok || strings.ContainsAny(line, "\r\n") {
		t.Errorf("body %q: want exactly one line", body)
	}
	if !strings.HasPrefix(line, "wsroom: ") {
		t.Errorf("body %q: want prefix %q", body, "wsroom: ")
	}
	if !strings.Contains(line, want) {
		t.Errorf("body %q: want it to contain %q", body, want)
	}
}

// hsRoundTrip writes raw request bytes on a new connection and reads one
// response. The connection is closed at cleanup.
func hsRoundTrip(t *testing.T, host, raw string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", host, 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(nc, raw); err != nil {
		t.Fatalf("write request: %v", err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	return nc, br, resp
}

// hsKey returns a fresh Sec-WebSocket-Key.
func hsKey() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// hsExpectOpen checks that c is a working WebSocket (the server echoes)
// and closes it cleanly.
func hsExpectOpen(c *client, msg string) {
	c.t.Helper()
	c.sendText(msg)
	c.expectText(msg)
	c.closeHandshake(1000)
}

// TestHandshakeRejections sends malformed or refused handshakes and checks
// the plain HTTP answers: status, a one-line "wsroom: " body, headers, and
// that the connection was not hijacked (it still serves a second request).
func TestHandshakeRejections(t *testing.T) {
	t.Parallel()
	s := hsNewServer(t, wsroom.Options{
		OnMessage: hsEcho,
		// Identify misbehaves on demand, so one hub serves the whole table.
		Identify: func(r *http.Request) (string, error) {
			switch r.Header.Get("X-Hs-Identify") {
			case "reject":
				return "", wsroom.Reject(http.StatusForbidden, "banned")
			case "reject-multiline":
				return "", wsroom.Reject(http.StatusTooManyRequests, "slow down\r\nX-Injected: yes")
			case "reject-bad-status":
				return "", wsroom.Reject(http.StatusOK, "not an error status")
			case "reject-empty":
				return "", wsroom.Reject(0, "")
			case "error":
				return "", errors.New("secret detail: session expired")
			case "panic":
				panic("identify exploded")
			}
			return "", nil
		},
	}, nil)

	key15 := base64.StdEncoding.EncodeToString(make([]byte, 15))
	_, port, _ := net.SplitHostPort(s.host)
	tests := []struct {
		name       string
		method     string      // default GET
		extra      http.Header // applied to a valid handshake request
		raw        string      // if set, sent verbatim instead (%[1]s = host, %[2]s = key)
		status     int
		body       string      // the body must contain this
		header     http.Header // the response must carry these
		noBodyLine bool        // the body is not ours (net/http or gobwas answered)
		reuse      bool        // the connection must still serve a request
	}{
		{
			name:   "not a WebSocket request",
			extra:  http.Header{"Upgrade": {""}, "Connection": {""}, "Sec-WebSocket-Key": {""}, "Sec-WebSocket-Version": {""}},
			status: http.StatusUpgradeRequired,
			body:   "only speaks WebSocket",
			header: http.Header{"Upgrade": {"websocket"}},
			reuse:  true,
		},
		{
			name:   "Upgrade h2c is not WebSocket",
			extra:  http.Header{"Upgrade": {"h2c"}},
			status: http.StatusUpgradeRequired,
			body:   "only speaks WebSocket",
			header: http.Header{"Upgrade": {"websocket"}},
			reuse:  true,
		},
		{
			name:   "POST",
			method: http.MethodPost,
			status: http.StatusMethodNotAllowed,
			body:   "GET",
			header: http.Header{"Allow": {"GET"}},
			reuse:  true,
		},
		{
			name:   "missing Connection: Upgrade",
			extra:  http.Header{"Connection": {""}},
			status: http.StatusBadRequest,
			body:   "Connection",
			reuse:  true,
		},
		{
			name:   "Connection without upgrade token",
			extra:  http.Header{"Connection": {"keep-alive"}},
			status: http.StatusBadRequest,
			body:   "Connection",
			reuse:  true,
		},
		{
			name:   "missing Sec-WebSocket-Version",
			extra:  http.Header{"Sec-WebSocket-Version": {""}},
			status: http.StatusBadRequest,
			body:   "Sec-WebSocket-Version",
			reuse:  true,
		},
		{
			name:   "version 8",
			extra:  http.Header{"Sec-WebSocket-Version": {"8"}},
			status: http.StatusUpgradeRequired,
			body:   "Sec-WebSocket-Version",
			header: http.Header{"Sec-Websocket-Version": {"13"}},
			reuse:  true,
		},
		{
			name:   "two versions",
			extra:  http.Header{"Sec-WebSocket-Version": {"13", "8"}},
			status: http.StatusUpgradeRequired,
			body:   "Sec-WebSocket-Version",
			header: http.Header{"Sec-Websocket-Version": {"13"}},
			reuse:  true,
		},
		{
			name:   "missing key",
			extra:  http.Header{"Sec-WebSocket-Key": {""}},
			status: http.StatusBadRequest,
			body:   "Sec-WebSocket-Key",
			reuse:  true,
		},
		{
			name:   "key not base64",
			extra:  http.Header{"Sec-WebSocket-Key": {"not*base64*at*all*here!!"}},
			status: http.StatusBadRequest,
			body:   "Sec-WebSocket-Key",
			reuse:  true,
		},
		{
			name:   "key decodes to 15 bytes",
			extra:  http.Header{"Sec-WebSocket-Key": {key15}},
			status: http.StatusBadRequest,
			body:   "Sec-WebSocket-Key",
			reuse:  true,
		},
		{
			name:   "two keys",
			extra:  http.Header{"Sec-WebSocket-Key": {hsKey(), hsKey()}},
			status: http.StatusBadRequest,
			body:   "Sec-WebSocket-Key",
			reuse:  true,
		},
		{
			name: "HTTP/1.0",
			raw: "GET /ws HTTP/1.0\r\nHost: %[1]s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %[2]s\r\n\r\n",
			status: http.StatusBadRequest,
			body:   "HTTP/1.1",
		},
		{
			name:   "cross-origin",
			extra:  http.Header{"Origin": {"http://evil.example"}},
			status: http.StatusForbidden,
			body:   "origin",
			reuse:  true,
		},
		{
			name:   "cross-origin, same port other host",
			extra:  http.Header{"Origin": {"http://localhost:PORT"}},
			status: http.StatusForbidden,
			body:   "origin",
			reuse:  true,
		},
		{
			name:   "opaque origin null",
			extra:  http.Header{"Origin": {"null"}},
			status: http.StatusForbidden,
			body:   "origin",
			reuse:  true,
		},
		{
			name:   "two origins",
			extra:  http.Header{"Origin": {"http://" + "HOST", "http://evil.example"}},
			status: http.StatusForbidden,
			body:   "origin",
			reuse:  true,
		},
		{
			name:   "Identify rejects 403",
			extra:  http.Header{"X-Hs-Identify": {"reject"}},
			status: http.StatusForbidden,
			body:   "banned",
			reuse:  true,
		},
		{
			name:   "Identify rejects with a multi-line reason",
			extra:  http.Header{"X-Hs-Identify": {"reject-multiline"}},
			status: http.StatusTooManyRequests,
			body:   "slow down",
			reuse:  true,
		},
		{
			name:   "Identify rejects with a non-error status",
			extra:  http.Header{"X-Hs-Identify": {"reject-bad-status"}},
			status: http.StatusUnauthorized,
			body:   "not an error status",
			reuse:  true,
		},
		{
			name:   "Identify rejects with zero values",
			extra:  http.Header{"X-Hs-Identify": {"reject-empty"}},
			status: http.StatusUnauthorized,
			body:   "Unauthorized",
			reuse:  true,
		},
		{
			name:   "Identify error",
			extra:  http.Header{"X-Hs-Identify": {"error"}},
			status: http.StatusUnauthorized,
			body:   "unauthorized",
			reuse:  true,
		},
		{
			name:   "Identify panics",
			extra:  http.Header{"X-Hs-Identify": {"panic"}},
			status: http.StatusInternalServerError,
			body:   "internal error",
			reuse:  true,
		},
	}

	t.Run("cases", func(t *testing.T) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				var (
					nc   net.Conn
					br   *bufio.Reader
					resp *http.Response
				)
				if tc.raw != "" {
					nc, br, resp = hsRoundTrip(t, s.host, fmt.Sprintf(tc.raw, s.host, hsKey()))
				} else {
					extra := http.Header{}
					for k, vs := range tc.extra {
						for _, v := range vs {
							v = strings.ReplaceAll(v, "HOST", s.host)
							v = strings.ReplaceAll(v, "PORT", port)
							extra[k] = append(extra[k], v)
						}
					}
					req := handshakeRequest(s.url, extra)
					if tc.method != "" {
						req.Method = tc.method
					}
					nc, br, resp = rawHandshake(t, req)
					defer nc.Close()
				}
				body := hsBody(t, resp)
				if resp.StatusCode != tc.status {
					t.Fatalf("status %s (body %q), want %d", resp.Status, body, tc.status)
				}
				hsCheckOneLine(t, body, tc.body)
				for k, want := range tc.header {
					if got := resp.Header.Values(k); !slices.Equal(got, want) {
						t.Errorf("header %s: %q, want %q", k, got, want)
					}
				}
				if strings.Contains(body, "secret detail") {
					t.Errorf("body %q leaks the Identify error text", body)
				}
				if resp.Header.Get("X-Injected") != "" {
					t.Errorf("a reason with CRLF injected a header")
				}
				if !tc.reuse {
					return
				}
				// The rejected connection was not hijacked: it still
				// speaks HTTP.
				req2, _ := http.NewRequest("GET", s.url, nil)
				nc.SetDeadline(time.Now().Add(10 * time.Second))
				if err := req2.Write(nc); err != nil {
					t.Fatalf("second request: %v", err)
				}
				resp2, err := http.ReadResponse(br, req2)
				if err != nil {
					t.Fatalf("second response: %v", err)
				}
				hsBody(t, resp2)
				if resp2.StatusCode != http.StatusUpgradeRequired {
					t.Errorf("second request: %s, want 426", resp2.Status)
				}
			})
		}
	})

	st := s.hub.Stats()
	want := uint64(len(tests))
	for _, tc := range tests {
		if tc.reuse {
			want++ // the second, plain request was refused with 426 too
		}
	}
	if st.Rejected != want {
		t.Errorf("Stats().Rejected = %d, want %d", st.Rejected, want)
	}
	if st.Panics != 1 {
		t.Errorf("Stats().Panics = %d, want 1 (the Identify panic)", st.Panics)
	}
	if st.Accepted != 0 || st.Connections != 0 || st.Users != 0 {
		t.Errorf("after rejections: %+v, want no accepted connection", st)
	}
	// A good handshake still works on the same hub.
	hsExpectOpen(dial(t, s.url, nil), "still alive")
}

// TestHandshakeAfterShutdown checks that a hub refuses handshakes with 503
// once Shutdown has begun, after closing live connections with 1001.
func TestHandshakeAfterShutdown(t *testing.T) {
	t.Parallel()
	s := hsNewServer(t, wsroom.Options{OnMessage: hsEcho}, nil)
	c := dial(t, s.url, nil)
	c.sendText("before")
	c.expectText("before")

	done := make(chan error, 1)
	go func() { done <- s.hub.Shutdown(context.Background()) }()
	c.expectClose(1001)
	// Answer the close so the server need not wait for WriteTimeout.
	c.writeFrame(true, 0x8, []byte{0x03, 0xe9})
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}

	nc, _, resp := rawHandshake(t, handshakeRequest(s.url, nil))
	defer nc.Close()
	body := hsBody(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("after Shutdown: %s %q, want 503", resp.Status, body)
	}
	hsCheckOneLine(t, body, "shutting down")
	st := s.hub.Stats()
	if st.Rejected != 1 || st.Accepted != 1 || st.Connections != 0 {
		t.Errorf("Stats() = %+v, want 1 accepted, 1 rejected, 0 connections", st)
	}
}

// TestHandshakeAccepted checks header variants that must upgrade.
func TestHandshakeAccepted(t *testing.T) {
	t.Parallel()
	s := newServer(t, wsroom.Options{OnMessage: hsEcho})
	host := strings.TrimPrefix(s.srv.URL, "http://")
	tests := []struct {
		name  string
		extra http.Header
	}{
		{"Connection keep-alive, Upgrade", http.Header{"Connection": {"keep-alive, Upgrade"}}},
		{"Connection upper case", http.Header{"Connection": {"UPGRADE"}}},
		{"Connection tokens on two lines", http.Header{"Connection": {"keep-alive", "Upgrade"}}},
		{"Upgrade: WebSocket", http.Header{"Upgrade": {"WebSocket"}}},
		{"Upgrade list", http.Header{"Upgrade": {"h2c, websocket"}}},
		{"Upgrade on two lines", http.Header{"Upgrade": {"h2c", "WEBSOCKET"}}},
		{"same-host Origin", http.Header{"Origin": {"http://" + host}}},
		{"same-host Origin, other scheme", http.Header{"Origin": {"https://" + host}}},
		{"no Origin", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dial(t, s.url, tc.extra)
			if got := c.resp.Header.Get("Sec-WebSocket-Protocol"); got != "" {
				t.Errorf("Sec-WebSocket-Protocol %q, want none", got)
			}
			hsExpectOpen(c, tc.name)
		})
	}
}

// TestOriginPatterns checks OriginPatterns matching, both ways.
func TestOriginPatterns(t *testing.T) {
	t.Parallel()
	s := newServer(t, wsroom.Options{
		OnMessage:      hsEcho,
		OriginPatterns: []string{"*.example.com", "localhost:*"},
	})
	tests := []struct {
		origin string
		ok     bool
	}{
		{"https://a.example.com", true},
		{"https://A.Example.COM", true},
		{"http://localhost:3000", true},
		{"http://localhost:5173", true},
		{"https://example.com", false},            // "*." needs a subdomain
		{"https://a.example.com.evil.net", false}, // suffix tricks
		{"https://evil.net/a.example.com", false},
		{"http://localhost", false}, // "localhost:*" needs a port
		{"null", false},
	}
	for _, tc := range tests {
		t.Run(tc.origin, func(t *testing.T) {
			t.Parallel()
			extra := http.Header{"Origin": {tc.origin}}
			if tc.ok {
				hsExpectOpen(dial(t, s.url, extra), tc.origin)
				return
			}
			nc, _, resp := rawHandshake(t, handshakeRequest(s.url, extra))
			defer nc.Close()
			body := hsBody(t, resp)
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("Origin %q: %s %q, want 403", tc.origin, resp.Status, body)
			}
			hsCheckOneLine(t, body, "origin")
		})
	}
}

// TestOriginInsecureSkipCheck checks that InsecureSkipOriginCheck lets any
// origin in.
func TestOriginInsecureSkipCheck(t *testing.T) {
	t.Parallel()
	s := newServer(t, wsroom.Options{OnMessage: hsEcho, InsecureSkipOriginCheck: true})
	for _, origin := range []string{"http://evil.example", "null"} {
		hsExpectOpen(dial(t, s.url, http.Header{"Origin": {origin}}), origin)
	}
}

// TestSubprotocolNegotiation checks that the server's preference wins and
// that no overlap means no header and no subprotocol.
func TestSubprotocolNegotiation(t *testing.T) {
	t.Parallel()
	s := newServer(t, wsroom.Options{
		Subprotocols: []string{"v2", "v1"},
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error {
			return c.Send(wsroom.Text("proto=" + c.Subprotocol()))
		},
	})
	tests := []struct {
		name    string
		offered []string
		want    string
	}{
		{"server preference", []string{"v1, v2"}, "v2"},
		{"server preference over two lines", []string{"v1", "v2"}, "v2"},
		{"only the second choice", []string{"v0, v1"}, "v1"},
		{"no overlap", []string{"v3, chat"}, ""},
		{"case matters", []string{"V2"}, ""},
		{"none offered", nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var extra http.Header
			if tc.offered != nil {
				extra = http.Header{"Sec-WebSocket-Protocol": tc.offered}
			}
			c := dial(t, s.url, extra)
			got := c.resp.Header.Values("Sec-WebSocket-Protocol")
			switch {
			case tc.want == "" && len(got) != 0:
				t.Errorf("Sec-WebSocket-Protocol %q, want no header", got)
			case tc.want != "" && !slices.Equal(got, []string{tc.want}):
				t.Errorf("Sec-WebSocket-Protocol %q, want %q", got, tc.want)
			}
			c.expectText("proto=" + tc.want)
			c.closeHandshake(1000)
		})
	}

	// A malformed offer line is refused before the hijack, with wsroom's
	// own one-line reason.
	t.Run("malformed line", func(t *testing.T) {
		t.Parallel()
		req := handshakeRequest(s.url, http.Header{"Sec-WebSocket-Protocol": {"x;y", "v2"}})
		nc, _, resp := rawHandshake(t, req)
		defer nc.Close()
		body := hsBody(t, resp)
		if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(body, "wsroom: malformed Sec-WebSocket-Protocol") {
			t.Errorf("%s %q, want 400 wsroom: malformed Sec-WebSocket-Protocol…", resp.Status, body)
		}
	})
}

// TestIdentifyUserID checks that Identify's user ID reaches Conn.ID and
// the user index, and that a user may hold several connections.
func TestIdentifyUserID(t *testing.T) {
	t.Parallel()
	s := newServer(t, wsroom.Options{
		Identify: func(r *http.Request) (string, error) { return r.URL.Query().Get("user"), nil },
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error {
			return c.Send(wsroom.Text("id=" + c.UserID()))
		},
	})
	a1 := dial(t, s.url+"?user=alice", nil)
	a1.expectText("id=alice")
	a2 := dial(t, s.url+"?user=alice", nil)
	a2.expectText("id=alice")
	b := dial(t, s.url+"?user=bob", nil)
	b.expectText("id=bob")
	anon := dial(t, s.url, nil) // "" from Identify: a random ID
	_, data, err := anon.readMessage(5 * time.Second)
	if err != nil {
		t.Fatalf("anonymous: %v", err)
	}
	if id := strings.TrimPrefix(string(data), "id="); id == "" || id == "alice" || id == "bob" {
		t.Errorf("anonymous connection got ID %q, want a fresh random one", id)
	}
	waitFor(t, "4 connections", func() bool { return s.hub.Stats().Connections == 4 })
	if st := s.hub.Stats(); st.Users != 3 {
		t.Errorf("Stats().Users = %d, want 3", st.Users)
	}
	if err := s.hub.SendTo(wsroom.Text("for alice"), "alice"); err != nil {
		t.Fatalf("SendTo: %v", err)
	}
	a1.expectText("for alice")
	a2.expectText("for alice")
	for _, c := range []*client{a1, a2, b, anon} {
		c.closeHandshake(1000)
	}
	waitFor(t, "all gone", func() bool { return s.hub.Stats().Connections == 0 })
}

// TestIdentifyNilRandomIDs checks that without Identify every connection
// gets its own random ID.
func TestIdentifyNilRandomIDs(t *testing.T) {
	t.Parallel()
	s := newServer(t, wsroom.Options{
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error { return c.Send(wsroom.Text(c.UserID())) },
	})
	var ids []string
	for range 2 {
		c := dial(t, s.url, nil)
		_, data, err := c.readMessage(5 * time.Second)
		if err != nil {
			t.Fatalf("read ID: %v", err)
		}
		ids = append(ids, string(data))
	}
	if ids[0] == "" || ids[1] == "" || ids[0] == ids[1] {
		t.Fatalf("IDs %q: want two distinct non-empty IDs", ids)
	}
	waitFor(t, "2 users", func() bool { return s.hub.Stats().Users == 2 })
}

// hsNext is a plain handler that reports what it saw.
func hsNext(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("X-Next", "yes")
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintf(w, "next %s %s body=%q upgrade=%q", r.Method, r.URL.Path, body, r.Header.Get("Upgrade"))
}

// TestMiddlewarePassThrough checks that Middleware hands every request
// that is not a WebSocket handshake to next, untouched.
func TestMiddlewarePassThrough(t *testing.T) {
	t.Parallel()
	s := hsNewServer(t, wsroom.Options{OnMessage: hsEcho}, func(h *wsroom.Hub) http.Handler {
		return h.Middleware(http.HandlerFunc(hsNext))
	})
	post, _ := http.NewRequest("POST", "http://"+s.host+"/form", strings.NewReader("a=1&b=2"))
	post.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	plain, _ := http.NewRequest("GET", "http://"+s.host+"/page", nil)
	tests := []struct {
		name string
		req  *http.Request
		want string
	}{
		{"plain GET", plain, `next GET /page body="" upgrade=""`},
		{"POST with body", post, `next POST /form body="a=1&b=2" upgrade=""`},
		{"Upgrade h2c", handshakeRequest("http://"+s.host+"/h2c", http.Header{"Upgrade": {"h2c"}}), `next GET /h2c body="" upgrade="h2c"`},
		{"Connection: Upgrade without Upgrade", handshakeRequest("http://"+s.host+"/x", http.Header{"Upgrade": {""}}), `next GET /x body="" upgrade=""`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nc, _, resp := rawHandshake(t, tc.req)
			defer nc.Close()
			body := hsBody(t, resp)
			if resp.StatusCode != http.StatusAccepted || resp.Header.Get("X-Next") != "yes" {
				t.Fatalf("%s %q: want 202 from next", resp.Status, body)
			}
			if body != tc.want {
				t.Errorf("body %q, want %q", body, tc.want)
			}
		})
	}
	if st := s.hub.Stats(); st.Rejected != 0 || st.Accepted != 0 {
		t.Errorf("Stats() = %+v: the hub should not have seen these requests", st)
	}
}

// TestMiddlewareUpgrades checks that WebSocket handshakes through
// Middleware are served by the hub, good or bad.
func TestMiddlewareUpgrades(t *testing.T) {
	t.Parallel()
	s := hsNewServer(t, wsroom.Options{OnMessage: hsEcho}, func(h *wsroom.Hub) http.Handler {
		return h.Middleware(http.HandlerFunc(hsNext))
	})
	hsExpectOpen(dial(t, "http://"+s.host+"/any/path", nil), "through middleware")

	nc, _, resp := rawHandshake(t, handshakeRequest(s.url, http.Header{"Sec-WebSocket-Version": {"8"}}))
	defer nc.Close()
	body := hsBody(t, resp)
	if resp.StatusCode != http.StatusUpgradeRequired || resp.Header.Get("X-Next") != "" {
		t.Fatalf("bad version through Middleware: %s %q, want 426 from the hub", resp.Status, body)
	}
	hsCheckOneLine(t, body, "Sec-WebSocket-Version")
	waitFor(t, "stats", func() bool {
		st := s.hub.Stats()
		return st.Accepted == 1 && st.Rejected == 1 && st.Connections == 0
	})
}

// TestMuxPatterns mounts the hub on a Go 1.22 ServeMux pattern with a
// wildcard, read from Identify through r.PathValue.
func TestMuxPatterns(t *testing.T) {
	t.Parallel()
	s := hsNewServer(t, wsroom.Options{
		// The room travels in the user ID: "<room>/<nonce>".
		Identify: func(r *http.Request) (string, error) {
			room := r.PathValue("room")
			if room == "" {
				return "", wsroom.Reject(http.StatusNotFound, "no room")
			}
			return room + "/" + rand.Text(), nil
		},
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error {
			room, _, _ := strings.Cut(c.UserID(), "/")
			if err := c.Join(room); err != nil {
				return err
			}
			return c.Send(wsroom.Text("joined " + room))
		},
		OnMessage: func(c *wsroom.Conn, m wsroom.Message) {
			for _, name := range c.Rooms() {
				c.Send(wsroom.Text(name + ": " + m.String()))
			}
		},
	}, func(h *wsroom.Hub) http.Handler {
		mux := http.NewServeMux()
		mux.Handle("GET /rooms/{room}/ws", h)
		mux.HandleFunc("GET /rooms/{room}", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "page of %s", r.PathValue("room"))
		})
		return mux
	})
	base := "http://" + s.host

	lobby := dial(t, base+"/rooms/lobby/ws", nil)
	lobby.expectText("joined lobby")
	games := dial(t, base+"/rooms/games/ws", nil)
	games.expectText("joined games")
	if n := s.hub.Room("lobby").Len(); n != 1 {
		t.Errorf("lobby has %d members, want 1", n)
	}
	lobby.sendText("hi")
	lobby.expectText("lobby: hi")
	if err := s.hub.Room("games").Broadcast(wsroom.Text("gg")); err != nil {
		t.Fatalf("Broadcast: %v", err)
	}
	games.expectText("gg")

	// Another route of the same mux still serves plain HTTP.
	resp, err := s.srv.Client().Get(base + "/rooms/lobby")
	if err != nil {
		t.Fatalf("GET page: %v", err)
	}
	if body := hsBody(t, resp); resp.StatusCode != http.StatusOK || body != "page of lobby" {
		t.Errorf("GET /rooms/lobby: %s %q", resp.Status, body)
	}
	// A plain GET on the WebSocket route gets the hub's 426.
	resp, err = s.srv.Client().Get(base + "/rooms/lobby/ws")
	if err != nil {
		t.Fatalf("GET ws route: %v", err)
	}
	if body := hsBody(t, resp); resp.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("plain GET of the ws route: %s %q, want 426", resp.Status, body)
	}
	lobby.closeHandshake(1000)
	games.closeHandshake(1000)
	waitFor(t, "rooms to empty", func() bool {
		st := s.hub.Stats()
		return st.Connections == 0 && st.Rooms == 0
	})
}

// hsUnwrapWriter wraps a ResponseWriter the way logging middleware does:
// it is not a Hijacker itself but exposes the original through Unwrap.
type hsUnwrapWriter struct {
	http.ResponseWriter
	status int
}

func (w *hsUnwrapWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *hsUnwrapWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// hsOpaqueWriter hides everything but the three ResponseWriter methods.
type hsOpaqueWriter struct{ http.ResponseWriter }

// TestWrappedResponseWriter checks that the hub reaches the Hijacker
// through Unwrap.
func TestWrappedResponseWriter(t *testing.T) {
	t.Parallel()
	s := hsNewServer(t, wsroom.Options{OnMessage: hsEcho}, func(h *wsroom.Hub) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, ok := any(&hsUnwrapWriter{}).(http.Hijacker); ok {
				panic("hsUnwrapWriter must not be a Hijacker")
			}
			h.ServeHTTP(&hsUnwrapWriter{ResponseWriter: w}, r)
		})
	})
	c := dial(t, s.url, nil)
	for _, m := range []string{"one", "two", "three"} {
		c.sendText(m)
	}
	for _, m := range []string{"one", "two", "three"} {
		c.expectText(m)
	}
	c.closeHandshake(1000)
	waitFor(t, "connection gone", func() bool { return s.hub.Stats().Connections == 0 })
}

// TestWrappedResponseWriterNoHijacker documents what happens behind a
// wrapper that neither hijacks nor unwraps: gobwas/ws cannot hijack, so it
// answers 500 with its own body ("given http.ResponseWriter is not a
// http.Hijacker", not a "wsroom: " line); the hub counts a rejection,
// registers nothing and the HTTP connection stays usable.
func TestWrappedResponseWriterNoHijacker(t *testing.T) {
	t.Parallel()
	s := hsNewServer(t, wsroom.Options{OnMessage: hsEcho}, func(h *wsroom.Hub) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(hsOpaqueWriter{w}, r)
		})
	})
	nc, br, resp := rawHandshake(t, handshakeRequest(s.url, nil))
	defer nc.Close()
	body := hsBody(t, resp)
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("%s %q, want 500", resp.Status, body)
	}
	if !strings.Contains(body, "Hijacker") {
		t.Errorf("body %q, want gobwas/ws's not-a-Hijacker reason", body)
	}
	// Not hijacked: the same connection serves the next request.
	hsExpectNotHijacked(t, nc, br, s.url)
	waitFor(t, "2 rejections", func() bool { return s.hub.Stats().Rejected == 2 })
	if st := s.hub.Stats(); st.Accepted != 0 || st.Connections != 0 {
		t.Errorf("Stats() = %+v, want nothing accepted or open", st)
	}
}

// hsExpectNotHijacked checks that the HTTP connection nc (read through br)
// still serves requests: a plain GET of url gets the hub's 426.
func hsExpectNotHijacked(t *testing.T, nc net.Conn, br *bufio.Reader, url string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := req.Write(nc); err != nil {
		t.Fatalf("second request: %v", err)
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("second response: %v", err)
	}
	if hsBody(t, resp); resp.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("second request: %s, want 426", resp.Status)
	}
}

// hsPanickyWriter's Hijack asserts http.Hijacker on what it wraps without
// checking, as gin's writer does; over hsOpaqueWriter that panics.
type hsPanickyWriter struct{ http.ResponseWriter }

func (w hsPanickyWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.ResponseWriter.(http.Hijacker).Hijack()
}

// TestPanickingHijack: a panic inside the writer's Hijack is answered with
// a one-line 500, counted as a rejection, and the HTTP connection goes on.
func TestPanickingHijack(t *testing.T) {
	t.Parallel()
	s := hsNewServer(t, wsroom.Options{OnMessage: hsEcho}, func(h *wsroom.Hub) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(hsPanickyWriter{hsOpaqueWriter{w}}, r)
		})
	})
	nc, br, resp := rawHandshake(t, handshakeRequest(s.url, nil))
	defer nc.Close()
	body := hsBody(t, resp)
	if resp.StatusCode != http.StatusInternalServerError || !strings.HasPrefix(body, "wsroom: cannot take over the connection") || strings.Count(body, "\n") > 1 {
		t.Fatalf("%s %q, want 500 with the one-line reason", resp.Status, body)
	}
	hsExpectNotHijacked(t, nc, br, s.url)
	if st := s.hub.Stats(); st.Rejected != 2 || st.Accepted != 0 || st.Connections != 0 {
		t.Errorf("Stats() = %+v, want 2 rejections and nothing open", st)
	}
}

type hsCtxKey struct{}

// TestConnContext checks that Conn.Context carries the upgrade request's
// values, stays alive while the connection is open (after the handler's
// request context would normally end), and is cancelled once it closes.
func TestConnContext(t *testing.T) {
	t.Parallel()
	conns := make(chan *wsroom.Conn, 1)
	closed := make(chan error, 1)
	s := hsNewServer(t, wsroom.Options{
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error {
			conns <- c
			v, _ := c.Context().Value(hsCtxKey{}).(string)
			return c.Send(wsroom.Text("value=" + v))
		},
		OnMessage: func(c *wsroom.Conn, m wsroom.Message) {
			c.Send(wsroom.Text(fmt.Sprintf("err=%v", c.Context().Err())))
		},
		OnClose: func(c *wsroom.Conn, err error) {
			closed <- c.Context().Err()
		},
	}, func(h *wsroom.Hub) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithCancel(context.WithValue(r.Context(), hsCtxKey{}, "from-middleware"))
			defer cancel()
			h.ServeHTTP(w, r.WithContext(ctx))
		})
	})
	c := dial(t, s.url, nil)
	c.expectText("value=from-middleware")
	c.sendText("alive?")
	c.expectText("err=<nil>")
	conn := <-conns
	select {
	case <-conn.Context().Done():
		t.Fatal("context cancelled while the connection is open")
	default:
	}
	c.closeHandshake(1000)
	select {
	case err := <-closed:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("in OnClose, Context().Err() = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnClose did not run")
	}
	select {
	case <-conn.Context().Done():
	default:
		t.Error("context not done after close")
	}
	if v := conn.Context().Value(hsCtxKey{}); v != "from-middleware" {
		t.Errorf("after close, value %v, want it kept", v)
	}
}

// TestPipelinedFrames writes the upgrade request and frames in one TCP
// write: the server must deliver the bytes the HTTP server read past the
// handshake, then keep parsing from the socket.
func TestPipelinedFrames(t *testing.T) {
	t.Parallel()
	s := newServer(t, wsroom.Options{OnMessage: hsEcho})

	t.Run("whole frames", func(t *testing.T) {
		t.Parallel()
		var buf bytes.Buffer
		req := handshakeRequest(s.url, nil)
		if err := req.Write(&buf); err != nil {
			t.Fatal(err)
		}
		buf.Write(encodeFrame(true, 0, 0x1, true, []byte("pipelined")))
		buf.Write(encodeFrame(true, 0, 0x2, true, []byte{0, 1, 2}))
		buf.Write(encodeFrame(true, 0, 0x1, true, []byte("third")))
		c := hsPipelined(t, req, buf.Bytes())
		c.expectText("pipelined")
		op, data, err := c.readMessage(5 * time.Second)
		if err != nil || op != 0x2 || !bytes.Equal(data, []byte{0, 1, 2}) {
			t.Fatalf("second echo: op %d %v %v, want binary 00 01 02", op, data, err)
		}
		c.expectText("third")
		c.closeHandshake(1000)
	})

	t.Run("frame split across the handshake read", func(t *testing.T) {
		t.Parallel()
		var buf bytes.Buffer
		req := handshakeRequest(s.url, nil)
		if err := req.Write(&buf); err != nil {
			t.Fatal(err)
		}
		f := encodeFrame(true, 0, 0x1, true, []byte("split across reads"))
		buf.Write(f[:5]) // header and part of the mask key
		c := hsPipelined(t, req, buf.Bytes())
		if err := c.writeRaw(f[5:]); err != nil {
			t.Fatal(err)
		}
		c.expectText("split across reads")
		c.sendText("and then")
		c.expectText("and then")
		c.closeHandshake(1000)
	})

	t.Run("close frame", func(t *testing.T) {
		t.Parallel()
		var buf bytes.Buffer
		req := handshakeRequest(s.url, nil)
		if err := req.Write(&buf); err != nil {
			t.Fatal(err)
		}
		buf.Write(encodeFrame(true, 0, 0x1, true, []byte("last words")))
		buf.Write(encodeFrame(true, 0, 0x8, true, []byte{0x03, 0xe8}))
		c := hsPipelined(t, req, buf.Bytes())
		c.expectText("last words")
		c.expectClose(1000)
	})
}

// hsPipelined sends b (a handshake and more) in one write and reads the
// 101 response.
func hsPipelined(t *testing.T, req *http.Request, b []byte) *client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", req.URL.Host, 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if n, err := nc.Write(b); err != nil || n != len(b) {
		t.Fatalf("write: %d of %d bytes: %v", n, len(b), err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("read handshake response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %s, want 101", resp.Status)
	}
	nc.SetDeadline(time.Time{})
	return &client{t: t, nc: nc, br: br, resp: resp}
}
