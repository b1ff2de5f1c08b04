package natsbroker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/natsbroker"
	"github.com/wsroom/wsroom/natsbroker/internal/natstest"
	"go.uber.org/goleak"
)

// exampleURL is the nats-server the examples use, started by TestMain
// (the tests start their own, since some of them kill it).
var exampleURL string

// TestMain starts the examples' nats-server, runs the tests, stops it and
// checks that no goroutine is left. Without nats-server every test needs
// one: outside CI they are all skipped, under CI=true that is a failure.
func TestMain(m *testing.M) {
	srv, err := natstest.StartMain()
	if err != nil {
		fmt.Fprintln(os.Stderr, "natsbroker: the tests need nats-server:", err)
		if os.Getenv("CI") == "true" {
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "natsbroker: SKIPPING every test")
		os.Exit(0)
	}
	exampleURL = srv.URL
	code := m.Run()
	srv.Stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "natsbroker: goroutines left behind:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// hubNode is a Hub with a NATS broker, served on loopback. Clients name
// their user with ?user= and the room they join with ?room=.
type hubNode struct {
	hub    *wsroom.Hub
	broker *natsbroker.Broker // nil without a broker
	url    string             // ws://127.0.0.1:port/ws
}

// newHubNode starts a hub with a broker on natsURL, or none if it is "".
// edit, if set, changes the hub's options.
func newHubNode(t testing.TB, natsURL string, edit func(*wsroom.Options)) *hubNode {
	t.Helper()
	n := &hubNode{}
	opts := wsroom.Options{
		Logger:   quietLogger(),
		Identify: func(r *http.Request) (string, error) { return r.URL.Query().Get("user"), nil },
		OnConnect: func(c *wsroom.Conn, r *http.Request) error {
			if room := r.URL.Query().Get("room"); room != "" {
				return c.Join(room)
			}
			return nil
		},
	}
	if natsURL != "" {
		n.broker = natsbroker.New(natsbroker.Options{URL: natsURL, Logger: quietLogger()})
		opts.Broker = n.broker
	}
	if edit != nil {
		edit(&opts)
	}
	n.hub = wsroom.New(opts)
	srv := httptest.NewServer(n.hub)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.hub.Shutdown(ctx); err != nil {
			t.Errorf("hub shutdown: %v", err)
		}
		srv.Close()
	})
	n.url = "ws" + strings.TrimPrefix(srv.URL, "http")
	return n
}

// member returns the connection of user in room on n.
func (n *hubNode) member(t testing.TB, room, user string) *wsroom.Conn {
	t.Helper()
	for c := range n.hub.Room(room).Members() {
		if c.UserID() == user {
			return c
		}
	}
	t.Fatalf("%s is not in %s", user, room)
	return nil
}

// client is a WebSocket client connection.
type client struct {
	t    testing.TB
	name string
	nc   net.Conn
	rw   io.ReadWriter
}

// dial connects to n as user, in room unless it is "".
func (n *hubNode) dial(t testing.TB, user, room string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := n.url + "?user=" + user + "&room=" + room
	nc, br, _, err := ws.Dial(ctx, url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { nc.Close() })
	var r io.Reader = nc
	if br != nil {
		r = br
	}
	return &client{t: t, name: user + "@" + n.url, nc: nc, rw: struct {
		io.Reader
		io.Writer
	}{r, nc}}
}

// read returns the next data message, or an error after timeout.
func (c *client) read(timeout time.Duration) (string, error) {
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	b, _, err := wsutil.ReadServerData(c.rw)
	return string(b), err
}

// expect fails unless the next message is want.
func (c *client) expect(want string) {
	c.t.Helper()
	if got, err := c.read(5 * time.Second); err != nil || got != want {
		c.t.Fatalf("%s: got %q, %v; want %q", c.name, got, err, want)
	}
}

// expectNothing fails if a message arrives within 200 ms: proof that
// nothing was delivered twice or to the wrong connection.
func (c *client) expectNothing() {
	c.t.Helper()
	got, err := c.read(200 * time.Millisecond)
	if ne := net.Error(nil); err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		c.t.Fatalf("%s: unexpected %q, %v; want silence", c.name, got, err)
	}
}

// waitFor waits until cond holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitMembers waits until n's room has want local members: a dial returns
// at the 101, and the subscription shows only that the first one joined.
func waitMembers(t testing.TB, n *hubNode, room string, want int) {
	t.Helper()
	waitFor(t, 5*time.Second, room+" members", func() bool { return n.hub.Room(room).Len() == want })
}

// subject is the subject natsbroker uses for topic under DefaultPrefix.
func subject(t testing.TB, topic string) string {
	t.Helper()
	s, err := natsbroker.Subject(natsbroker.DefaultPrefix, topic)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// waitSubscribers waits until, on srv, each topic has the wanted number of
// subscribed connections (nodes).
func waitSubscribers(t testing.TB, srv *natstest.Server, want map[string]int) {
	t.Helper()
	waitFor(t, 10*time.Second, "subscriptions", func() bool {
		for topic, n := range want {
			got, err := srv.Subscribers(subject(t, topic))
			if err != nil {
				t.Fatalf("monitoring endpoint: %v", err)
			}
			if got != n {
				return false
			}
		}
		return true
	})
}
