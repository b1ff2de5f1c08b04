package wsroom_test

// The root tests' hub helpers, on top of internal/wstest (which does not
// import wsroom): a hub mounted on a loopback server, and hubs that record
// what their callbacks saw.

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// server is a hub mounted on a loopback httptest server.
type server struct {
	hub  *wsroom.Hub
	srv  *httptest.Server
	addr string // 127.0.0.1:port
	url  string // http://127.0.0.1:port/ws
}

// newServer mounts a hub built from opts at "GET /ws" on a fresh loopback
// server. Cleanup shuts the hub down (joining every goroutine) and closes
// the server.
func newServer(t testing.TB, opts wsroom.Options) *server {
	t.Helper()
	return newServerWith(t, opts, serverSetup{})
}

// serverSetup varies how newServerWith serves the hub.
type serverSetup struct {
	// mount builds the server's handler from the hub; default: a ServeMux
	// with the hub at "GET /ws".
	mount func(*wsroom.Hub) http.Handler
	// wrapListener, if set, wraps the server's listener.
	wrapListener func(net.Listener) net.Listener
}

// newServerWith is newServer with a custom mount or listener. The url
// field is always http://127.0.0.1:port/ws.
func newServerWith(t testing.TB, opts wsroom.Options, setup serverSetup) *server {
	t.Helper()
	hub := newHub(opts)
	var h http.Handler
	if setup.mount != nil {
		h = setup.mount(hub)
	} else {
		mux := http.NewServeMux()
		mux.Handle("GET /ws", hub)
		h = mux
	}
	srv := wstest.Server{Handler: h, Stop: hub.Shutdown, Wrap: setup.wrapListener}.Start(t)
	addr := srv.Listener.Addr().String()
	return &server{hub: hub, srv: srv, addr: addr, url: "http://" + addr + "/ws"}
}

// newHub is wsroom.New with a quiet logger unless opts has one.
func newHub(opts wsroom.Options) *wsroom.Hub {
	if opts.Logger == nil {
		opts.Logger = wstest.QuietLogger()
	}
	return wsroom.New(opts)
}

// shutdownInBackground starts hub.Shutdown on a goroutine of its own (it
// waits for the peers, which the test then drives) and returns a function
// that waits for it and returns its error, failing the test if it has not
// returned within wstest.Patience.
func shutdownInBackground(t testing.TB, hub *wsroom.Hub) (wait func() error) {
	done := make(chan error, 1)
	go func() { done <- hub.Shutdown(context.Background()) }()
	return func() error {
		t.Helper()
		select {
		case err := <-done:
			return err
		case <-time.After(wstest.Patience):
			t.Fatal("Shutdown did not return")
			return nil
		}
	}
}

// joinRoom returns an OnConnect that puts every connection in room name.
func joinRoom(name string) func(*wsroom.Conn, *http.Request) error {
	return func(c *wsroom.Conn, _ *http.Request) error { return c.Join(name) }
}

// fillRoom opens n connections to s (users u0..un-1, see userServer) and
// waits until room name has n members.
func fillRoom(t testing.TB, s *server, name string, n int) []*wstest.Conn {
	t.Helper()
	conns := wstest.DialAll(t, n, func(i int) string { return s.url + "?user=u" + strconv.Itoa(i) })
	room := s.hub.Room(name)
	wstest.WaitFor(t, "every connection in room "+name, func() bool { return room.Len() == n })
	return conns
}

// echo is an OnMessage that sends every message back.
func echo(c *wsroom.Conn, m wsroom.Message) { c.Send(m) }

// userServer is an echo hub (unless opts has an OnMessage) whose user IDs
// come from ?user=, with a count of OnClose calls.
func userServer(t testing.TB, opts wsroom.Options) (*server, *atomic.Int64) {
	t.Helper()
	var closed atomic.Int64
	onClose := opts.OnClose
	opts.OnClose = func(c *wsroom.Conn, err error) {
		closed.Add(1)
		if onClose != nil {
			onClose(c, err)
		}
	}
	if opts.OnMessage == nil {
		opts.OnMessage = echo
	}
	opts.Identify = func(r *http.Request) (string, error) { return r.URL.Query().Get("user"), nil }
	return newServer(t, opts), &closed
}

// record is what a recorder hub reported about one connection.
type record struct {
	conn      chan *wsroom.Conn // OnConnect
	closed    chan error        // OnClose
	delivered atomic.Int64      // messages passed to OnMessage
}

// recorder records a hub's callbacks per user ID. Clients choose their ID
// with the "id" query parameter unless the options have an Identify.
type recorder struct {
	mu   sync.Mutex
	recs map[string]*record
}

// recording returns a recorder and opts with its callbacks wrapped:
// OnMessage defaults to echo; OnConnect and OnMessage from opts run after
// the recording.
func recording(opts wsroom.Options) (*recorder, wsroom.Options) {
	r := &recorder{recs: make(map[string]*record)}
	onConnect, onMessage := opts.OnConnect, opts.OnMessage
	if opts.Identify == nil {
		opts.Identify = func(req *http.Request) (string, error) { return req.URL.Query().Get("id"), nil }
	}
	if onMessage == nil {
		onMessage = echo
	}
	opts.OnConnect = func(c *wsroom.Conn, req *http.Request) error {
		r.rec(c.UserID()).conn <- c
		if onConnect != nil {
			return onConnect(c, req)
		}
		return nil
	}
	opts.OnMessage = func(c *wsroom.Conn, m wsroom.Message) {
		r.rec(c.UserID()).delivered.Add(1)
		onMessage(c, m)
	}
	opts.OnClose = func(c *wsroom.Conn, err error) {
		r.rec(c.UserID()).closed <- err
	}
	return r, opts
}

// rec returns the record for id, creating it.
func (r *recorder) rec(id string) *record {
	r.mu.Lock()
	defer r.mu.Unlock()
	rc := r.recs[id]
	if rc == nil {
		rc = &record{conn: make(chan *wsroom.Conn, 1), closed: make(chan error, 1)}
		r.recs[id] = rc
	}
	return rc
}

// conn returns the server side of connection id.
func (r *recorder) conn(t testing.TB, id string) *wsroom.Conn {
	t.Helper()
	select {
	case c := <-r.rec(id).conn:
		return c
	case <-time.After(wstest.Patience):
		t.Fatalf("connection %q never reached OnConnect", id)
		return nil
	}
}

// closeErr waits for OnClose of connection id and returns its CloseError.
func (r *recorder) closeErr(t testing.TB, id string) *wsroom.CloseError {
	t.Helper()
	select {
	case err := <-r.rec(id).closed:
		var ce *wsroom.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("OnClose(%q) got %T %v, want a *wsroom.CloseError", id, err, err)
		}
		if wsroom.CloseStatus(err) != ce.Code {
			t.Fatalf("CloseStatus(%v) = %d, want %d", err, wsroom.CloseStatus(err), ce.Code)
		}
		return ce
	case <-time.After(wstest.Patience):
		t.Fatalf("OnClose(%q) was not called", id)
		return nil
	}
}

// wantClose checks a CloseError. cause, if non-nil, must satisfy errors.Is.
func wantClose(t testing.TB, ce *wsroom.CloseError, code wsroom.StatusCode, remote bool, cause error) {
	t.Helper()
	if ce.Code != code || ce.Remote != remote {
		t.Errorf("OnClose got %v (code %d, remote %v), want code %d, remote %v", ce, ce.Code, ce.Remote, code, remote)
	}
	if cause != nil && !errors.Is(ce, cause) {
		t.Errorf("OnClose got %v; errors.Is(err, %v) = false", ce, cause)
	}
}

// stash lets a test steer OnConnect from the handshake's query string:
// ?u=<user ID>&room=<room>&room=<room>&n=<name>. Identify records the query
// under the request's remote address, which is the Conn's RemoteAddr;
// OnConnect joins the rooms and publishes the Conn under its name.
type stash struct {
	mu      sync.Mutex
	queries map[string]url.Values
	conns   map[string]*wsroom.Conn
}

func newStash() *stash {
	return &stash{queries: make(map[string]url.Values), conns: make(map[string]*wsroom.Conn)}
}

func (s *stash) identify(r *http.Request) (string, error) {
	q := r.URL.Query()
	s.mu.Lock()
	s.queries[r.RemoteAddr] = q
	s.mu.Unlock()
	return q.Get("u"), nil
}

func (s *stash) onConnect(c *wsroom.Conn, _ *http.Request) error {
	s.mu.Lock()
	q := s.queries[c.RemoteAddr().String()]
	delete(s.queries, c.RemoteAddr().String())
	s.mu.Unlock()
	for _, name := range q["room"] {
		if err := c.Join(name); err != nil {
			return err
		}
	}
	if n := q.Get("n"); n != "" {
		s.mu.Lock()
		s.conns[n] = c
		s.mu.Unlock()
	}
	return nil
}

// conn waits until OnConnect has run for the connection called name.
func (s *stash) conn(t testing.TB, name string) *wsroom.Conn {
	t.Helper()
	var c *wsroom.Conn
	wstest.WaitFor(t, "OnConnect of "+name, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		c = s.conns[name]
		return c != nil
	})
	return c
}

// smallBufListener gives the connections it accepts while small is set a
// small kernel send buffer, so that a peer that does not read fills it
// quickly (Linux otherwise grows it to megabytes). The connections stay
// *net.TCPConn, so the hub still polls them.
type smallBufListener struct {
	net.Listener
	small atomic.Bool
}

func (l *smallBufListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if tc, ok := nc.(*net.TCPConn); ok && l.small.Load() {
		tc.SetWriteBuffer(16 << 10)
	}
	return nc, err
}

// wrap is a serverSetup.wrapListener that makes l wrap the listener.
func (l *smallBufListener) wrap(inner net.Listener) net.Listener {
	l.Listener = inner
	return l
}
