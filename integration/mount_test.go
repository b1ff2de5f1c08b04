package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode)
	goleak.VerifyTestMain(m)
}

// timeout bounds every single network step of a test.
const timeout = 5 * time.Second

// syncBuffer is a bytes.Buffer safe for concurrent writers (loggers run on
// server goroutines while the test reads).
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// closeEvent is what OnClose reported for one connection.
type closeEvent struct {
	user string
	err  *wsroom.CloseError
}

// testHub is a hub with the behaviour every mounting test checks:
// "echo:…" is sent back to the sender, "all:…" is broadcast to the room
// "lobby" (which every connection joins), "close" makes the server close
// the connection with 1000.
type testHub struct {
	*wsroom.Hub
	logs    *syncBuffer
	closes  chan closeEvent
	connCtx chan context.Context // each connection's Context, from OnConnect
}

func newTestHub(t *testing.T) *testHub {
	t.Helper()
	th := &testHub{
		logs:    new(syncBuffer),
		closes:  make(chan closeEvent, 16),
		connCtx: make(chan context.Context, 16),
	}
	th.Hub = wsroom.New(wsroom.Options{
		Identify: func(r *http.Request) (string, error) {
			return r.URL.Query().Get("user"), nil
		},
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error {
			th.connCtx <- c.Context()
			return c.Join("lobby")
		},
		OnMessage: func(c *wsroom.Conn, m wsroom.Message) {
			s := m.String()
			switch {
			case strings.HasPrefix(s, "echo:"):
				c.Send(m)
			case strings.HasPrefix(s, "all:"):
				th.Room("lobby").Broadcast(m)
			case s == "close":
				c.Close(wsroom.StatusNormalClosure, "bye")
			}
		},
		OnClose: func(c *wsroom.Conn, err error) {
			var ce *wsroom.CloseError
			errors.As(err, &ce)
			th.closes <- closeEvent{user: c.UserID(), err: ce}
		},
		Logger: slog.New(slog.NewTextHandler(th.logs, nil)),
	})
	return th
}

// serve starts a loopback server for h. Cleanup shuts the hub down (which
// joins every goroutine it started), then closes the server.
func serve(t *testing.T, th *testHub, h http.Handler) *httptest.Server {
	t.Helper()
	return serveOn(t, th, h, nil)
}

// serveOn is serve with the server's listener replaced by wrap(listener)
// when wrap is not nil. The hub's log is shown if the test failed.
func serveOn(t *testing.T, th *testHub, h http.Handler, wrap func(net.Listener) net.Listener) *httptest.Server {
	t.Helper()
	t.Cleanup(func() { // runs last: after the server's cleanup
		if t.Failed() {
			t.Logf("hub log:\n%s", th.logs)
		}
	})
	return wstest.Server{Handler: h, Stop: th.Shutdown, Wrap: wrap}.Start(t)
}

// browserHeader is what a browser adds to an upgrade request that matters
// to middleware: a same-origin Origin and an Accept-Encoding that
// compression middleware reacts to.
func browserHeader(srv *httptest.Server) http.Header {
	return http.Header{
		"Origin":          {srv.URL},
		"Accept-Encoding": {"gzip, deflate, br"},
		"User-Agent":      {"wsroom-integration-test"},
	}
}

// dial opens a WebSocket connection to path as user, with a browser's
// headers.
func dial(t *testing.T, srv *httptest.Server, path, user string) *wstest.Conn {
	t.Helper()
	return wstest.Dial(t, srv.URL+path+"?user="+user, browserHeader(srv))
}

// closeFromClient runs a client-initiated close handshake with 1000 and
// checks the server's echo, then the end of the stream.
func closeFromClient(t *testing.T, c *wstest.Conn) {
	t.Helper()
	c.MustWrite(t, wstest.CloseFrame(1000, "done"))
	c.ExpectClose(t, 1000)
}

// closeFromServer asks the server to close: it must use 1000 "bye" and
// end the stream; the client answers.
func closeFromServer(t *testing.T, c *wstest.Conn) {
	t.Helper()
	c.SendText(t, "close")
	if reason := c.ExpectClose(t, 1000); reason != "bye" {
		t.Fatalf("server closed with reason %q, want \"bye\"", reason)
	}
	c.MustWrite(t, wstest.CloseFrame(1000, ""))
}

// checkRoom is the WebSocket half of every mounting test: two clients
// upgrade on path, each gets its echo, a broadcast reaches both, then one
// closes from the client side and the other is closed by the server, both
// with 1000. It returns the Context of each connection.
func checkRoom(t *testing.T, th *testHub, srv *httptest.Server, path string) []context.Context {
	t.Helper()
	accepted := th.Stats().Accepted
	alice := dial(t, srv, path, "alice")
	bob := dial(t, srv, path, "bob")

	// An echo round trip also proves OnConnect (and its Join) has run.
	alice.SendText(t, "echo:hello alice")
	alice.ExpectText(t, "echo:hello alice")
	bob.SendText(t, "echo:hello bob")
	bob.ExpectText(t, "echo:hello bob")

	if n := th.Room("lobby").Len(); n != 2 {
		t.Fatalf("lobby has %d members, want 2", n)
	}
	alice.SendText(t, "all:hi everyone")
	alice.ExpectText(t, "all:hi everyone")
	bob.ExpectText(t, "all:hi everyone")
	if err := th.Room("lobby").Broadcast(wsroom.Text("all:from the app")); err != nil {
		t.Fatalf("Broadcast: %v", err)
	}
	alice.ExpectText(t, "all:from the app")
	bob.ExpectText(t, "all:from the app")
	if err := th.SendTo(wsroom.Text("echo:just bob"), "bob"); err != nil {
		t.Fatalf("SendTo: %v", err)
	}
	bob.ExpectText(t, "echo:just bob")

	closeFromClient(t, alice)
	closeFromServer(t, bob)

	got := map[string]*wsroom.CloseError{}
	for range 2 {
		select {
		case ev := <-th.closes:
			got[ev.user] = ev.err
		case <-time.After(timeout):
			t.Fatalf("OnClose ran for %d connections, want 2", len(got))
		}
	}
	if ce := got["alice"]; ce == nil || ce.Code != wsroom.StatusNormalClosure || !ce.Remote {
		t.Errorf("alice's OnClose: %v, want 1000 from the peer", ce)
	}
	if ce := got["bob"]; ce == nil || ce.Code != wsroom.StatusNormalClosure || ce.Remote || ce.Reason != "bye" {
		t.Errorf("bob's OnClose: %v, want 1000 \"bye\" from the server", ce)
	}
	if s := th.Stats(); s.Connections != 0 || s.Rooms != 0 || s.Accepted != accepted+2 {
		t.Errorf("after both closed: %+v, want 0 connections, 0 rooms, %d accepted", s, accepted+2)
	}

	ctxs := make([]context.Context, 0, 2)
	for range 2 {
		ctxs = append(ctxs, <-th.connCtx)
	}
	for i, ctx := range ctxs {
		if ctx.Err() == nil {
			t.Errorf("connection %d: Context not cancelled after close", i)
		}
	}
	return ctxs
}

// get makes a plain request with the headers a browser would send.
func get(t *testing.T, srv *httptest.Server, path string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = browserHeader(srv)
	req.Header.Del("Accept-Encoding") // let the transport decode gzip itself
	client := &http.Client{Timeout: timeout}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", path, err)
	}
	client.CloseIdleConnections()
	return resp, string(body)
}

func expectStatus(t *testing.T, srv *httptest.Server, path string, status int, bodyPart string) *http.Response {
	t.Helper()
	resp, body := get(t, srv, path)
	if resp.StatusCode != status || !strings.Contains(body, bodyPart) {
		t.Fatalf("GET %s: %d %q, want %d with %q", path, resp.StatusCode, body, status, bodyPart)
	}
	return resp
}

func health(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok: "+r.URL.Path+strings.Repeat(".", 2048)) // big enough to compress
}

// chiStack applies the chi middleware the tests mount the hub behind:
// request logging into logs, panic recovery, request IDs and compression.
func chiStack(r chi.Router, logs io.Writer) {
	r.Use(
		middleware.RequestLogger(&middleware.DefaultLogFormatter{Logger: log.New(logs, "", 0), NoColor: true}),
		middleware.Recoverer,
		middleware.RequestID,
		middleware.Compress(5),
	)
	r.Get("/panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
}

func TestChi(t *testing.T) {
	tests := []struct {
		name        string
		withStack   bool
		wsPath      string // where the hub is mounted
		plainPath   string // a plain route of the same router
		build       func(hub http.Handler, logs io.Writer) http.Handler
		stackPrefix string // where the middleware stack's /panic route lives
	}{
		{
			name: "Get", wsPath: "/ws", plainPath: "/health",
			build: func(hub http.Handler, _ io.Writer) http.Handler {
				r := chi.NewRouter()
				r.Get("/ws", hub.ServeHTTP)
				r.Get("/health", health)
				return r
			},
		},
		{
			name: "Mount", wsPath: "/api/ws", plainPath: "/api/health",
			build: func(hub http.Handler, _ io.Writer) http.Handler {
				sub := chi.NewRouter()
				sub.Get("/ws", hub.ServeHTTP)
				sub.Get("/health", health)
				r := chi.NewRouter()
				r.Get("/health", health)
				r.Mount("/api", sub)
				return r
			},
		},
		{
			name: "Middleware", withStack: true, wsPath: "/ws", plainPath: "/health",
			build: func(hub http.Handler, logs io.Writer) http.Handler {
				r := chi.NewRouter()
				chiStack(r, logs)
				r.Get("/ws", hub.ServeHTTP)
				r.Get("/health", health)
				return r
			},
		},
		{
			name: "MountMiddleware", withStack: true, wsPath: "/api/ws", plainPath: "/api/health", stackPrefix: "/api",
			build: func(hub http.Handler, logs io.Writer) http.Handler {
				sub := chi.NewRouter()
				chiStack(sub, logs)
				sub.Get("/ws", hub.ServeHTTP)
				sub.Get("/health", health)
				r := chi.NewRouter()
				r.Get("/health", health)
				r.Mount("/api", sub)
				return r
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			th := newTestHub(t)
			logs := new(syncBuffer)
			srv := serve(t, th, tt.build(th.Hub, logs))

			ctxs := checkRoom(t, th, srv, tt.wsPath)

			// Plain routes of the same router answer normally, and the
			// hub's route refuses plain requests with 426.
			resp := expectStatus(t, srv, tt.plainPath, http.StatusOK, "ok: "+tt.plainPath)
			expectStatus(t, srv, "/health", http.StatusOK, "ok: /health")
			expectStatus(t, srv, tt.wsPath, http.StatusUpgradeRequired, "only speaks WebSocket")

			if !tt.withStack {
				return
			}
			if !resp.Uncompressed {
				t.Errorf("GET %s was not gzip-compressed: Compress is not in the chain", tt.plainPath)
			}
			expectStatus(t, srv, tt.stackPrefix+"/panic", http.StatusInternalServerError, "")
			for i, ctx := range ctxs {
				if middleware.GetReqID(ctx) == "" {
					t.Errorf("connection %d: Conn.Context lacks chi's request ID", i)
				}
			}
			// The logger writes its line when the handler returns, which
			// for a WebSocket is after the connection ended.
			logged := func() bool { return strings.Contains(logs.String(), tt.wsPath+"?user=bob") }
			if !wstest.Poll(10*time.Millisecond, timeout, logged) {
				t.Fatalf("request log has no line for %s:\n%s", tt.wsPath, logs)
			}
		})
	}
}

type ctxKey struct{}

// ginStack is gin.Recovery, a logger writing to io.Discard, and a
// middleware storing a value in the request context.
func ginStack(router *gin.Engine) {
	router.Use(gin.LoggerWithWriter(io.Discard), gin.Recovery(), func(c *gin.Context) {
		c.Request = c.Request.WithContext(context.WithValue(c.Request.Context(), ctxKey{}, "from gin"))
		c.Next()
	})
	router.GET("/health", func(c *gin.Context) { c.String(http.StatusOK, "ok: %s", c.Request.URL.Path) })
	router.GET("/panic", func(*gin.Context) { panic("boom") })
}

func TestGin(t *testing.T) {
	for _, tt := range []struct {
		name   string
		wsPath string
		mount  func(router *gin.Engine, hub http.Handler)
	}{
		{"GET", "/ws", func(router *gin.Engine, hub http.Handler) { router.GET("/ws", gin.WrapH(hub)) }},
		{"Group", "/api/v1/ws", func(router *gin.Engine, hub http.Handler) { router.Group("/api/v1").GET("/ws", gin.WrapH(hub)) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			th := newTestHub(t)
			router := gin.New()
			ginStack(router)
			tt.mount(router, th.Hub)
			srv := serve(t, th, router)

			for i, ctx := range checkRoom(t, th, srv, tt.wsPath) {
				if v, _ := ctx.Value(ctxKey{}).(string); v != "from gin" {
					t.Errorf("connection %d: Conn.Context lacks the value gin middleware stored", i)
				}
			}
			expectStatus(t, srv, "/health", http.StatusOK, "ok: /health")
			expectStatus(t, srv, "/panic", http.StatusInternalServerError, "")
			expectStatus(t, srv, "/missing", http.StatusNotFound, "")
			expectStatus(t, srv, tt.wsPath, http.StatusUpgradeRequired, "only speaks WebSocket")
		})
	}
}

// TestGinMiddleware wraps a whole gin engine with hub.Middleware:
// WebSocket handshakes on any path upgrade, everything else reaches gin.
func TestGinMiddleware(t *testing.T) {
	th := newTestHub(t)
	router := gin.New()
	ginStack(router)
	srv := serve(t, th, http.Handler(th.Middleware(router)))

	for _, path := range []string{"/", "/ws", "/health", "/no/such/route"} {
		t.Run(strings.ReplaceAll(path, "/", "_"), func(t *testing.T) {
			checkRoom(t, th, srv, path)
		})
	}
	expectStatus(t, srv, "/health", http.StatusOK, "ok: /health")
	expectStatus(t, srv, "/panic", http.StatusInternalServerError, "")
	expectStatus(t, srv, "/missing", http.StatusNotFound, "")
}

// TestChiMiddleware wraps a chi router (with its middleware stack) with
// hub.Middleware, the other way round from r.Get.
func TestChiMiddleware(t *testing.T) {
	th := newTestHub(t)
	logs := new(syncBuffer)
	r := chi.NewRouter()
	chiStack(r, logs)
	r.Get("/health", health)
	srv := serve(t, th, th.Middleware(r))

	checkRoom(t, th, srv, "/anywhere")
	expectStatus(t, srv, "/health", http.StatusOK, "ok: /health")
	expectStatus(t, srv, "/missing", http.StatusNotFound, "")
}

// unwrapWriter wraps a ResponseWriter the way many logging and metrics
// middlewares do: it is not an http.Hijacker itself, but it exposes the
// writer it wraps through Unwrap, which http.ResponseController follows.
type unwrapWriter struct {
	http.ResponseWriter
}

func (w *unwrapWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// hijackWriter wraps a ResponseWriter the older way: no Unwrap, but a
// Hijack method that delegates to the wrapped writer.
type hijackWriter struct {
	http.ResponseWriter
	hijacks *atomic.Int32
}

func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("hijackWriter: the wrapped writer is not a Hijacker")
	}
	w.hijacks.Add(1)
	return h.Hijack()
}

// wrapStats counts what a wrapping middleware saw.
type wrapStats struct {
	requests atomic.Int32 // requests through the middleware
	hijacks  atomic.Int32 // Hijack calls through hijackWriter
}

// wrapWith returns a middleware that wraps every ResponseWriter in an
// unwrapWriter or, with hijacker set, a hijackWriter.
func wrapWith(hijacker bool, st *wrapStats) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			st.requests.Add(1)
			if hijacker {
				next.ServeHTTP(&hijackWriter{ResponseWriter: w, hijacks: &st.hijacks}, r)
				return
			}
			next.ServeHTTP(&unwrapWriter{w}, r)
		})
	}
}

// TestWrappedResponseWriter mounts the hub behind middleware that wraps the
// ResponseWriter in a type that is not a Hijacker but has Unwrap, or in one
// that implements Hijack by delegating, alone or stacked with chi's
// middleware.Logger (which wraps the writer too) or around a gin engine.
// Every variant upgrades and exchanges messages, and plain routes still
// answer.
func TestWrappedResponseWriter(t *testing.T) {
	for _, tt := range []struct {
		name  string
		build func(hub *wsroom.Hub, wrap func(http.Handler) http.Handler) http.Handler
	}{
		{"ServeMux", func(hub *wsroom.Hub, wrap func(http.Handler) http.Handler) http.Handler {
			mux := http.NewServeMux()
			mux.Handle("GET /ws", hub)
			mux.HandleFunc("GET /health", health)
			return wrap(mux)
		}},
		{"HubMiddleware", func(hub *wsroom.Hub, wrap func(http.Handler) http.Handler) http.Handler {
			return wrap(hub.Middleware(http.HandlerFunc(health)))
		}},
		{"ChiLogger", func(hub *wsroom.Hub, wrap func(http.Handler) http.Handler) http.Handler {
			r := chi.NewRouter()
			r.Use(middleware.Logger, wrap) // ours wraps chi's wrapper
			r.Get("/ws", hub.ServeHTTP)
			r.Get("/health", health)
			return r
		}},
		{"Gin", func(hub *wsroom.Hub, wrap func(http.Handler) http.Handler) http.Handler {
			router := gin.New()
			router.GET("/ws", gin.WrapH(hub))
			router.GET("/health", gin.WrapF(health))
			return wrap(router)
		}},
	} {
		for _, hijacker := range []bool{false, true} {
			if tt.name == "Gin" && !hijacker {
				// Not a supported stack: gin's own writer implements Hijack
				// with an unchecked w.(http.Hijacker) on the writer beneath
				// it (gin v1.12.0 response_writer.go), so behind a wrapper
				// that only has Unwrap its Hijack panics. The hub turns that
				// into a one-line answer instead of a dropped connection;
				// plain routes still work. Wrap gin
				// engines with writers that implement Hijack (the Hijacker
				// case below).
				t.Run("Gin/Unwrap/refused", func(t *testing.T) {
					th := newTestHub(t)
					var st wrapStats
					srv := serve(t, th, tt.build(th.Hub, wrapWith(false, &st)))
					// A dropped connection instead of an answer fails here.
					resp := wstest.Handshake(t, wstest.Request(srv.URL+"/ws", browserHeader(srv))).Resp
					body := wstest.Body(t, resp)
					// The hub answers 500, but gin's Hijack marked the
					// response as written before it panicked, so gin sends
					// its default 200 status line with the hub's body.
					if resp.StatusCode != http.StatusOK || body != "wsroom: cannot take over the connection: the ResponseWriter does not support hijacking\n" {
						t.Fatalf("handshake: %s %q, want gin's 200 with wsroom's one-line reason", resp.Status, body)
					}
					expectStatus(t, srv, "/health", http.StatusOK, "ok: /health")
				})
				continue
			}
			name := tt.name + "/Unwrap"
			if hijacker {
				name = tt.name + "/Hijacker"
			}
			t.Run(name, func(t *testing.T) {
				th := newTestHub(t)
				var st wrapStats
				srv := serve(t, th, tt.build(th.Hub, wrapWith(hijacker, &st)))

				checkRoom(t, th, srv, "/ws")
				expectStatus(t, srv, "/health", http.StatusOK, "ok: /health")
				if n := st.requests.Load(); n < 3 {
					t.Errorf("the wrapping middleware saw %d requests, want the 2 upgrades and 1 plain request", n)
				}
				if n := st.hijacks.Load(); hijacker && n != 2 {
					t.Errorf("hijackWriter.Hijack ran %d times, want 2 (one per connection)", n)
				}
			})
		}
	}
}
