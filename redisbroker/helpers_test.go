package redisbroker_test

import (
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
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
// Cleanup shuts the hub down.
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
	srv := wstest.Serve(t, mux, hub.Shutdown)
	return &node{hub: hub, broker: b, url: "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"}
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
	var got []string
	if !wstest.Poll(5*time.Millisecond, 10*time.Second, func() bool {
		got = got[:0]
		ok := true
		for topic, n := range want {
			m := numSub(t, rc, topic)
			got = append(got, topic+"="+strconv.FormatInt(m, 10))
			ok = ok && m == n
		}
		return ok
	}) {
		t.Fatalf("subscriptions: got %v, want %v", got, want)
	}
}

// wantMembers fails the test unless n's room has want local members now.
// It need not wait: the hub runs OnConnect's joins before it writes the
// 101, so a client whose dial has returned is already in the rooms its
// OnConnect joined. (waitNumSub cannot stand in for it: a topic's
// subscription shows only that a node's first member joined.)
func wantMembers(t testing.TB, n *node, room string, want int) {
	t.Helper()
	if got := n.hub.Room(room).Len(); got != want {
		t.Fatalf("room %s has %d members on this node, want %d", room, got, want)
	}
}
