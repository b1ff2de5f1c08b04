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
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
)

// anyPath mounts the hub itself, on every path.
func anyPath(h *wsroom.Hub) http.Handler { return h }

// checkOneLine fails unless body is one line starting "wsroom: " and
// holding want.
func checkOneLine(t *testing.T, body, want string) {
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

// newKey returns a fresh Sec-WebSocket-Key.
func newKey() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// expectOpen checks that c is a working WebSocket (the server echoes)
// and closes it cleanly.
func expectOpen(t *testing.T, c *wstest.Conn, msg string) {
	t.Helper()
	c.SendText(t, msg)
	c.ExpectText(t, msg)
	c.CloseHandshake(t, 1000)
}

// expectNotHijacked checks that the HTTP connection c, whose handshake was
// refused, still serves requests: a plain GET of url gets the hub's 426.
func expectNotHijacked(t *testing.T, c *wstest.Conn, url string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.RoundTrip(req, nil)
	if err != nil {
		t.Fatalf("second request: %v", err)
	}
	if wstest.Body(t, resp); resp.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("second request: %s, want 426", resp.Status)
	}
}

// TestHandshakeRejections sends malformed or refused handshakes and checks
// the plain HTTP answers: status, a one-line "wsroom: " body, headers, and
// that the connection was not hijacked (it still serves a second request).
func TestHandshakeRejections(t *testing.T) {
	t.Parallel()
	s := newServerWith(t, wsroom.Options{
		OnMessage: echo,
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
	}, serverSetup{mount: anyPath})

	key15 := base64.StdEncoding.EncodeToString(make([]byte, 15))
	_, port, _ := net.SplitHostPort(s.addr)
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
			extra:  http.Header{"Sec-WebSocket-Key": {newKey(), newKey()}},
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
				var c *wstest.Conn
				if tc.raw != "" {
					// Sent as it is: http.Request cannot write HTTP/1.0.
					var err error
					if c, err = wstest.DialTCP(s.addr); err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { c.Close() })
					c.MustWrite(t, []byte(fmt.Sprintf(tc.raw, s.addr, newKey())))
					if _, err := c.ReadResponse(nil); err != nil {
						t.Fatal(err)
					}
				} else {
					extra := http.Header{}
					for k, vs := range tc.extra {
						for _, v := range vs {
							v = strings.ReplaceAll(v, "HOST", s.addr)
							v = strings.ReplaceAll(v, "PORT", port)
							extra[k] = append(extra[k], v)
						}
					}
					req := wstest.Request(s.url, extra)
					if tc.method != "" {
						req.Method = tc.method
					}
					c = wstest.Handshake(t, req)
				}
				resp := c.Resp
				body := wstest.Body(t, resp)
				if resp.StatusCode != tc.status {
					t.Fatalf("status %s (body %q), want %d", resp.Status, body, tc.status)
				}
				checkOneLine(t, body, tc.body)
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
				expectNotHijacked(t, c, s.url)
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
	expectOpen(t, wstest.Dial(t, s.url, nil), "still alive")
}

// TestHandshakeAfterShutdown checks that a hub refuses handshakes with 503
// once Shutdown has begun, after closing live connections with 1001.
func TestHandshakeAfterShutdown(t *testing.T) {
	t.Parallel()
	s := newServerWith(t, wsroom.Options{OnMessage: echo}, serverSetup{mount: anyPath})
	c := wstest.Dial(t, s.url, nil)
	c.SendText(t, "before")
	c.ExpectText(t, "before")

	shutdown := shutdownInBackground(t, s.hub)
	c.ExpectClose(t, 1001)
	// Answer the close so the server need not wait for WriteTimeout.
	c.MustWrite(t, wstest.CloseFrame(1001, ""))
	if err := shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}

	resp := wstest.Handshake(t, wstest.Request(s.url, nil)).Resp
	body := wstest.Body(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("after Shutdown: %s %q, want 503", resp.Status, body)
	}
	checkOneLine(t, body, "shutting down")
	st := s.hub.Stats()
	if st.Rejected != 1 || st.Accepted != 1 || st.Connections != 0 {
		t.Errorf("Stats() = %+v, want 1 accepted, 1 rejected, 0 connections", st)
	}
}

// TestHandshakeAccepted checks header variants that must upgrade.
func TestHandshakeAccepted(t *testing.T) {
	t.Parallel()
	s := newServer(t, wsroom.Options{OnMessage: echo})
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
			c := wstest.Dial(t, s.url, tc.extra)
			if got := c.Resp.Header.Get("Sec-WebSocket-Protocol"); got != "" {
				t.Errorf("Sec-WebSocket-Protocol %q, want none", got)
			}
			expectOpen(t, c, tc.name)
		})
	}
}

// TestOriginPatterns checks OriginPatterns matching, both ways.
func TestOriginPatterns(t *testing.T) {
	t.Parallel()
	s := newServer(t, wsroom.Options{
		OnMessage:      echo,
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
				expectOpen(t, wstest.Dial(t, s.url, extra), tc.origin)
				return
			}
			resp := wstest.Handshake(t, wstest.Request(s.url, extra)).Resp
			body := wstest.Body(t, resp)
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("Origin %q: %s %q, want 403", tc.origin, resp.Status, body)
			}
			checkOneLine(t, body, "origin")
		})
	}
}

// TestOriginInsecureSkipCheck checks that InsecureSkipOriginCheck lets any
// origin in.
func TestOriginInsecureSkipCheck(t *testing.T) {
	t.Parallel()
	s := newServer(t, wsroom.Options{OnMessage: echo, InsecureSkipOriginCheck: true})
	for _, origin := range []string{"http://evil.example", "null"} {
		expectOpen(t, wstest.Dial(t, s.url, http.Header{"Origin": {origin}}), origin)
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
			c := wstest.Dial(t, s.url, extra)
			got := c.Resp.Header.Values("Sec-WebSocket-Protocol")
			switch {
			case tc.want == "" && len(got) != 0:
				t.Errorf("Sec-WebSocket-Protocol %q, want no header", got)
			case tc.want != "" && !slices.Equal(got, []string{tc.want}):
				t.Errorf("Sec-WebSocket-Protocol %q, want %q", got, tc.want)
			}
			c.ExpectText(t, "proto="+tc.want)
			c.CloseHandshake(t, 1000)
		})
	}

	// A malformed offer line is refused before the hijack, with wsroom's
	// own one-line reason.
	t.Run("malformed line", func(t *testing.T) {
		t.Parallel()
		req := wstest.Request(s.url, http.Header{"Sec-WebSocket-Protocol": {"x;y", "v2"}})
		resp := wstest.Handshake(t, req).Resp
		body := wstest.Body(t, resp)
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
	a1 := wstest.Dial(t, s.url+"?user=alice", nil)
	a1.ExpectText(t, "id=alice")
	a2 := wstest.Dial(t, s.url+"?user=alice", nil)
	a2.ExpectText(t, "id=alice")
	b := wstest.Dial(t, s.url+"?user=bob", nil)
	b.ExpectText(t, "id=bob")
	anon := wstest.Dial(t, s.url, nil) // "" from Identify: a random ID
	_, data, err := anon.ReadMessage()
	if err != nil {
		t.Fatalf("anonymous: %v", err)
	}
	if id := strings.TrimPrefix(string(data), "id="); id == "" || id == "alice" || id == "bob" {
		t.Errorf("anonymous connection got ID %q, want a fresh random one", id)
	}
	wstest.WaitFor(t, "4 connections", func() bool { return s.hub.Stats().Connections == 4 })
	if st := s.hub.Stats(); st.Users != 3 {
		t.Errorf("Stats().Users = %d, want 3", st.Users)
	}
	if err := s.hub.SendTo(wsroom.Text("for alice"), "alice"); err != nil {
		t.Fatalf("SendTo: %v", err)
	}
	a1.ExpectText(t, "for alice")
	a2.ExpectText(t, "for alice")
	for _, c := range []*wstest.Conn{a1, a2, b, anon} {
		c.CloseHandshake(t, 1000)
	}
	wstest.WaitFor(t, "all gone", func() bool { return s.hub.Stats().Connections == 0 })
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
		c := wstest.Dial(t, s.url, nil)
		_, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("read ID: %v", err)
		}
		ids = append(ids, string(data))
	}
	if ids[0] == "" || ids[1] == "" || ids[0] == ids[1] {
		t.Fatalf("IDs %q: want two distinct non-empty IDs", ids)
	}
	wstest.WaitFor(t, "2 users", func() bool { return s.hub.Stats().Users == 2 })
}

// nextHandler is a plain handler that reports what it saw.
func nextHandler(w http.ResponseWriter, r *http.Request) {
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
	s := newServerWith(t, wsroom.Options{OnMessage: echo}, serverSetup{mount: func(h *wsroom.Hub) http.Handler {
		return h.Middleware(http.HandlerFunc(nextHandler))
	}})
	post, _ := http.NewRequest("POST", "http://"+s.addr+"/form", strings.NewReader("a=1&b=2"))
	post.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	plain, _ := http.NewRequest("GET", "http://"+s.addr+"/page", nil)
	tests := []struct {
		name string
		req  *http.Request
		want string
	}{
		{"plain GET", plain, `next GET /page body="" upgrade=""`},
		{"POST with body", post, `next POST /form body="a=1&b=2" upgrade=""`},
		{"Upgrade h2c", wstest.Request("http://"+s.addr+"/h2c", http.Header{"Upgrade": {"h2c"}}), `next GET /h2c body="" upgrade="h2c"`},
		{"Connection: Upgrade without Upgrade", wstest.Request("http://"+s.addr+"/x", http.Header{"Upgrade": {""}}), `next GET /x body="" upgrade=""`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp := wstest.Handshake(t, tc.req).Resp
			body := wstest.Body(t, resp)
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
	s := newServerWith(t, wsroom.Options{OnMessage: echo}, serverSetup{mount: func(h *wsroom.Hub) http.Handler {
		return h.Middleware(http.HandlerFunc(nextHandler))
	}})
	expectOpen(t, wstest.Dial(t, "http://"+s.addr+"/any/path", nil), "through middleware")

	resp := wstest.Handshake(t, wstest.Request(s.url, http.Header{"Sec-WebSocket-Version": {"8"}})).Resp
	body := wstest.Body(t, resp)
	if resp.StatusCode != http.StatusUpgradeRequired || resp.Header.Get("X-Next") != "" {
		t.Fatalf("bad version through Middleware: %s %q, want 426 from the hub", resp.Status, body)
	}
	checkOneLine(t, body, "Sec-WebSocket-Version")
	wstest.WaitFor(t, "stats", func() bool {
		st := s.hub.Stats()
		return st.Accepted == 1 && st.Rejected == 1 && st.Connections == 0
	})
}

// TestMuxPatterns mounts the hub on a Go 1.22 ServeMux pattern with a
// wildcard, read from Identify through r.PathValue.
func TestMuxPatterns(t *testing.T) {
	t.Parallel()
	s := newServerWith(t, wsroom.Options{
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
	}, serverSetup{mount: func(h *wsroom.Hub) http.Handler {
		mux := http.NewServeMux()
		mux.Handle("GET /rooms/{room}/ws", h)
		mux.HandleFunc("GET /rooms/{room}", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "page of %s", r.PathValue("room"))
		})
		return mux
	}})
	base := "http://" + s.addr

	lobby := wstest.Dial(t, base+"/rooms/lobby/ws", nil)
	lobby.ExpectText(t, "joined lobby")
	games := wstest.Dial(t, base+"/rooms/games/ws", nil)
	games.ExpectText(t, "joined games")
	if n := s.hub.Room("lobby").Len(); n != 1 {
		t.Errorf("lobby has %d members, want 1", n)
	}
	lobby.SendText(t, "hi")
	lobby.ExpectText(t, "lobby: hi")
	if err := s.hub.Room("games").Broadcast(wsroom.Text("gg")); err != nil {
		t.Fatalf("Broadcast: %v", err)
	}
	games.ExpectText(t, "gg")

	// Another route of the same mux still serves plain HTTP.
	resp, err := s.srv.Client().Get(base + "/rooms/lobby")
	if err != nil {
		t.Fatalf("GET page: %v", err)
	}
	if body := wstest.Body(t, resp); resp.StatusCode != http.StatusOK || body != "page of lobby" {
		t.Errorf("GET /rooms/lobby: %s %q", resp.Status, body)
	}
	// A plain GET on the WebSocket route gets the hub's 426.
	resp, err = s.srv.Client().Get(base + "/rooms/lobby/ws")
	if err != nil {
		t.Fatalf("GET ws route: %v", err)
	}
	if body := wstest.Body(t, resp); resp.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("plain GET of the ws route: %s %q, want 426", resp.Status, body)
	}
	lobby.CloseHandshake(t, 1000)
	games.CloseHandshake(t, 1000)
	wstest.WaitFor(t, "rooms to empty", func() bool {
		st := s.hub.Stats()
		return st.Connections == 0 && st.Rooms == 0
	})
}

// unwrapWriter wraps a ResponseWriter the way logging middleware does:
// it is not a Hijacker itself but exposes the original through Unwrap.
type unwrapWriter struct {
	http.ResponseWriter
	status int
}

func (w *unwrapWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *unwrapWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// opaqueWriter hides everything but the three ResponseWriter methods.
type opaqueWriter struct{ http.ResponseWriter }

// TestWrappedResponseWriter checks that the hub reaches the Hijacker
// through Unwrap.
func TestWrappedResponseWriter(t *testing.T) {
	t.Parallel()
	s := newServerWith(t, wsroom.Options{OnMessage: echo}, serverSetup{mount: func(h *wsroom.Hub) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, ok := any(&unwrapWriter{}).(http.Hijacker); ok {
				panic("unwrapWriter must not be a Hijacker")
			}
			h.ServeHTTP(&unwrapWriter{ResponseWriter: w}, r)
		})
	}})
	c := wstest.Dial(t, s.url, nil)
	for _, m := range []string{"one", "two", "three"} {
		c.SendText(t, m)
	}
	for _, m := range []string{"one", "two", "three"} {
		c.ExpectText(t, m)
	}
	c.CloseHandshake(t, 1000)
	wstest.WaitFor(t, "connection gone", func() bool { return s.hub.Stats().Connections == 0 })
}

// TestWrappedResponseWriterNoHijacker documents what happens behind a
// wrapper that neither hijacks nor unwraps: gobwas/ws cannot hijack, so it
// answers 500 with its own body ("given http.ResponseWriter is not a
// http.Hijacker", not a "wsroom: " line); the hub counts a rejection,
// registers nothing and the HTTP connection stays usable.
func TestWrappedResponseWriterNoHijacker(t *testing.T) {
	t.Parallel()
	s := newServerWith(t, wsroom.Options{OnMessage: echo}, serverSetup{mount: func(h *wsroom.Hub) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(opaqueWriter{w}, r)
		})
	}})
	c := wstest.Handshake(t, wstest.Request(s.url, nil))
	resp := c.Resp
	body := wstest.Body(t, resp)
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("%s %q, want 500", resp.Status, body)
	}
	if !strings.Contains(body, "Hijacker") {
		t.Errorf("body %q, want gobwas/ws's not-a-Hijacker reason", body)
	}
	// Not hijacked: the same connection serves the next request.
	expectNotHijacked(t, c, s.url)
	wstest.WaitFor(t, "2 rejections", func() bool { return s.hub.Stats().Rejected == 2 })
	if st := s.hub.Stats(); st.Accepted != 0 || st.Connections != 0 {
		t.Errorf("Stats() = %+v, want nothing accepted or open", st)
	}
}

// panickyWriter's Hijack asserts http.Hijacker on what it wraps without
// checking, as gin's writer does; over opaqueWriter that panics.
type panickyWriter struct{ http.ResponseWriter }

func (w panickyWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.ResponseWriter.(http.Hijacker).Hijack()
}

// TestPanickingHijack: a panic inside the writer's Hijack is answered with
// a one-line 500, counted as a rejection, and the HTTP connection goes on.
func TestPanickingHijack(t *testing.T) {
	t.Parallel()
	s := newServerWith(t, wsroom.Options{OnMessage: echo}, serverSetup{mount: func(h *wsroom.Hub) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(panickyWriter{opaqueWriter{w}}, r)
		})
	}})
	c := wstest.Handshake(t, wstest.Request(s.url, nil))
	resp := c.Resp
	body := wstest.Body(t, resp)
	if resp.StatusCode != http.StatusInternalServerError || !strings.HasPrefix(body, "wsroom: cannot take over the connection") || strings.Count(body, "\n") > 1 {
		t.Fatalf("%s %q, want 500 with the one-line reason", resp.Status, body)
	}
	expectNotHijacked(t, c, s.url)
	if st := s.hub.Stats(); st.Rejected != 2 || st.Accepted != 0 || st.Connections != 0 {
		t.Errorf("Stats() = %+v, want 2 rejections and nothing open", st)
	}
}

type ctxKey struct{}

// TestConnContext checks that Conn.Context carries the upgrade request's
// values, stays alive while the connection is open (after the handler's
// request context would normally end), and is cancelled once it closes.
func TestConnContext(t *testing.T) {
	t.Parallel()
	conns := make(chan *wsroom.Conn, 1)
	closed := make(chan error, 1)
	s := newServerWith(t, wsroom.Options{
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error {
			conns <- c
			v, _ := c.Context().Value(ctxKey{}).(string)
			return c.Send(wsroom.Text("value=" + v))
		},
		OnMessage: func(c *wsroom.Conn, m wsroom.Message) {
			c.Send(wsroom.Text(fmt.Sprintf("err=%v", c.Context().Err())))
		},
		OnClose: func(c *wsroom.Conn, err error) {
			closed <- c.Context().Err()
		},
	}, serverSetup{mount: func(h *wsroom.Hub) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithCancel(context.WithValue(r.Context(), ctxKey{}, "from-middleware"))
			defer cancel()
			h.ServeHTTP(w, r.WithContext(ctx))
		})
	}})
	c := wstest.Dial(t, s.url, nil)
	c.ExpectText(t, "value=from-middleware")
	c.SendText(t, "alive?")
	c.ExpectText(t, "err=<nil>")
	conn := <-conns
	select {
	case <-conn.Context().Done():
		t.Fatal("context cancelled while the connection is open")
	default:
	}
	c.CloseHandshake(t, 1000)
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
	if v := conn.Context().Value(ctxKey{}); v != "from-middleware" {
		t.Errorf("after close, value %v, want it kept", v)
	}
}

// TestPipelinedFrames writes the upgrade request and frames in one TCP
// write: the server must deliver the bytes the HTTP server read past the
// handshake, then keep parsing from the socket.
func TestPipelinedFrames(t *testing.T) {
	t.Parallel()
	s := newServer(t, wsroom.Options{OnMessage: echo})

	t.Run("whole frames", func(t *testing.T) {
		t.Parallel()
		c := wstest.DialRequest(t, wstest.Request(s.url, nil), wstest.Cat(
			wstest.Final(wstest.OpText, "pipelined"),
			wstest.Final(wstest.OpBinary, []byte{0, 1, 2}),
			wstest.Final(wstest.OpText, "third"),
		))
		c.ExpectText(t, "pipelined")
		op, data, err := c.ReadMessage()
		if err != nil || op != wstest.OpBinary || !bytes.Equal(data, []byte{0, 1, 2}) {
			t.Fatalf("second echo: op %d %v %v, want binary 00 01 02", op, data, err)
		}
		c.ExpectText(t, "third")
		c.CloseHandshake(t, 1000)
	})

	t.Run("frame split across the handshake read", func(t *testing.T) {
		t.Parallel()
		f := wstest.Final(wstest.OpText, "split across reads")
		c := wstest.DialRequest(t, wstest.Request(s.url, nil), f[:5]) // header and part of the mask key
		c.MustWrite(t, f[5:])
		c.ExpectText(t, "split across reads")
		c.SendText(t, "and then")
		c.ExpectText(t, "and then")
		c.CloseHandshake(t, 1000)
	})

	t.Run("close frame", func(t *testing.T) {
		t.Parallel()
		c := wstest.DialRequest(t, wstest.Request(s.url, nil), wstest.Cat(
			wstest.Final(wstest.OpText, "last words"),
			wstest.CloseFrame(1000, ""),
		))
		c.ExpectText(t, "last words")
		c.ExpectClose(t, 1000)
	})
}
