package redisbroker_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/redisbroker"
	"github.com/wsroom/wsroom/redisbroker/redistest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// node is a Hub with a Redis broker, served on loopback.
type node struct {
	hub    *wsroom.Hub
	broker *redisbroker.Broker
	url    string // ws://127.0.0.1:port/ws
}

// newNode starts a hub whose users come from ?user= and who join ?room=,
// with a broker on redisAddr unless it is "".
func newNode(t testing.TB, redisAddr string, edit func(*wsroom.Options)) *node {
	t.Helper()
	if redisAddr == "" {
		return newNodeWith(t, nil, edit)
	}
	return newNodeWith(t, &redisbroker.Options{Addrs: []string{redisAddr}}, edit)
}

// newNodeWith is newNode with a broker made from bo (none if nil).
func newNodeWith(t testing.TB, bo *redisbroker.Options, edit func(*wsroom.Options)) *node {
	t.Helper()
	var b *redisbroker.Broker
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
	if bo != nil {
		o := *bo
		if o.Logger == nil {
			o.Logger = quietLogger()
		}
		b = redisbroker.New(o)
		opts.Broker = b
	}
	if edit != nil {
		edit(&opts)
	}
	hub := wsroom.New(opts)
	mux := http.NewServeMux()
	mux.Handle("GET /ws", hub)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := hub.Shutdown(ctx); err != nil {
			t.Errorf("hub shutdown: %v", err)
		}
		srv.Close()
	})
	return &node{hub: hub, broker: b, url: "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"}
}

// wsClient is a gobwas/ws client connection.
type wsClient struct {
	t    testing.TB
	name string
	nc   net.Conn
	rw   io.ReadWriter
}

// dialWS opens a WebSocket connection to url.
func dialWS(t testing.TB, url string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, br, _, err := ws.Dial(ctx, url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { nc.Close() })
	return newWSClient(t, url, nc, br)
}

// newWSClient wraps a dialled connection; br holds what the server sent
// after its handshake answer, if anything.
func newWSClient(t testing.TB, name string, nc net.Conn, br *bufio.Reader) *wsClient {
	var r io.Reader = nc
	if br != nil {
		r = br
	}
	return &wsClient{t: t, name: name, nc: nc, rw: struct {
		io.Reader
		io.Writer
	}{r, nc}}
}

// read returns the next data message, or an error after timeout.
func (c *wsClient) read(timeout time.Duration) (string, error) {
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	b, _, err := wsutil.ReadServerData(c.rw)
	return string(b), err
}

// expect fails unless the next message is want.
func (c *wsClient) expect(want string) {
	c.t.Helper()
	got, err := c.read(5 * time.Second)
	if err != nil || got != want {
		c.t.Fatalf("%s: got %q, %v; want %q", c.name, got, err, want)
	}
}

// expectNothing fails if a message arrives within a bounded wait: proof
// that nothing was delivered twice or to the wrong connection.
func (c *wsClient) expectNothing() {
	c.t.Helper()
	got, err := c.read(200 * time.Millisecond)
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		c.t.Fatalf("%s: unexpected %q, %v; want silence", c.name, got, err)
	}
}

// redisClient names the Redis the NUMSUB checks ask.
type redisClient struct{ addr string }

func newRedisClient(_ testing.TB, addr string) *redisClient { return &redisClient{addr} }

// numSub returns PUBSUB NUMSUB for the hub's topic on Redis.
func numSub(t testing.TB, rc *redisClient, topic string) int64 {
	t.Helper()
	n, err := redistest.NumSub(rc.addr, redisbroker.DefaultPrefix+topic)
	if err != nil {
		t.Fatalf("PUBSUB NUMSUB: %v", err)
	}
	return n
}

// waitNumSub waits until want nodes subscribe to each topic.
func waitNumSub(t testing.TB, rc *redisClient, want map[string]int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok := true
		var got []string
		for topic, n := range want {
			m := numSub(t, rc, topic)
			got = append(got, topic+"="+strconv.FormatInt(m, 10))
			ok = ok && m == n
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscriptions: got %v, want %v", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitMembers waits until n's room has want local members: a client's
// dial returns at the 101, before OnConnect's Join has run, and a topic's
// subscription shows only that a node's first member joined.
func waitMembers(t testing.TB, n *node, room string, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for n.hub.Room(room).Len() != want {
		if time.Now().After(deadline) {
			t.Fatalf("room %s has %d members on this node, want %d", room, n.hub.Room(room).Len(), want)
		}
		time.Sleep(time.Millisecond)
	}
}
