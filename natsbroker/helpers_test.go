package natsbroker_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
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
	url    string             // ws://127.0.0.1:port
}

// newHubNode starts a hub with a broker on natsURL, or none if it is "".
// edit, if set, changes the hub's options. Cleanup shuts the hub down.
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
	srv := wstest.Serve(t, n.hub, n.hub.Shutdown)
	n.url = "ws" + strings.TrimPrefix(srv.URL, "http")
	return n
}

// joinURL is the URL at which a client connects to n as user, in room
// unless it is "".
func (n *hubNode) joinURL(user, room string) string {
	return n.url + "?user=" + user + "&room=" + room
}

// dial connects to n as user, in room unless it is "". Cleanup closes
// the connection.
func (n *hubNode) dial(t testing.TB, user, room string) *wstest.Conn {
	t.Helper()
	return wstest.Dial(t, n.joinURL(user, room), nil)
}

// quiet is how long expectNothing waits: silence for that long is the
// proof that nothing was delivered twice or to the wrong connection.
const quiet = 200 * time.Millisecond

// expectNothing fails the test if a frame arrives on any of conns within
// quiet.
func expectNothing(t testing.TB, conns ...*wstest.Conn) {
	t.Helper()
	for _, c := range conns {
		c.ExpectSilence(t, quiet)
	}
}

// wantMembers fails the test unless n's room has want local members now.
// It need not wait: the hub runs OnConnect's joins before it writes the
// 101, so a client whose dial has returned is already in the rooms its
// OnConnect joined. (waitSubscribers cannot stand in for it: a topic's
// subscription shows only that a node's first member joined.)
func wantMembers(t testing.TB, n *hubNode, room string, want int) {
	t.Helper()
	if got := n.hub.Room(room).Len(); got != want {
		t.Fatalf("room %s has %d members on this node, want %d", room, got, want)
	}
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
	wstest.WaitFor(t, "subscriptions", func() bool {
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
