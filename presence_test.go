package wsroom_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
	"github.com/wsroom/wsroom/membroker"
)

// presenceLog records presence events.
type presenceLog struct {
	mu     sync.Mutex
	events []wsroom.PresenceEvent
}

func (l *presenceLog) add(e wsroom.PresenceEvent) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *presenceLog) get() []wsroom.PresenceEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

func (l *presenceLog) String() string {
	var sb strings.Builder
	for _, e := range l.get() {
		fmt.Fprintf(&sb, "%s %s %v; ", e.Room, e.UserID, e.Joined)
	}
	return sb.String()
}

// presenceOptions joins ?room=, names the user from ?user= and attaches
// ?info= to it.
func presenceOptions(log *presenceLog) wsroom.Options {
	return wsroom.Options{
		Identify: func(r *http.Request) (string, error) { return r.URL.Query().Get("user"), nil },
		OnConnect: func(c *wsroom.Conn, r *http.Request) error {
			if info := r.URL.Query().Get("info"); info != "" {
				c.SetInfo([]byte(info))
			}
			if room := r.URL.Query().Get("room"); room != "" {
				return c.Join(room)
			}
			return nil
		},
		OnPresence: log.add,
	}
}

// TestPresenceSingleHub: events on a user's first connection in and last
// one out, and the queries, from the index.
func TestPresenceSingleHub(t *testing.T) {
	log := new(presenceLog)
	s := newServer(t, presenceOptions(log))
	ctx := context.Background()
	a1 := wstest.Dial(t, s.url+"?user=alice&room=r&info=A", nil)
	a2 := wstest.Dial(t, s.url+"?user=alice&room=r", nil)
	b := wstest.Dial(t, s.url+"?user=bob&room=r", nil)
	wstest.WaitFor(t, "three members", func() bool { return s.hub.Room("r").Len() == 3 })
	if got := log.String(); got != "r alice true; r bob true; " {
		t.Fatalf("events: %s", got)
	}
	got, err := s.hub.Room("r").Presence(ctx)
	want := []wsroom.Presence{{UserID: "alice", Conns: 2, Info: []byte("A")}, {UserID: "bob", Conns: 1}}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Presence = %v, %v; want %v", got, err, want)
	}
	// AppendPresence: the same answer after what dst holds, and none of
	// the reused slice's old entries left behind; no allocation once the
	// slice is large enough.
	prefix := wsroom.Presence{UserID: "kept"}
	buf := []wsroom.Presence{prefix, {UserID: "stale", Conns: 9}, {UserID: "stale2"}, {UserID: "stale3"}}
	app, err := s.hub.Room("r").AppendPresence(ctx, buf[:1])
	if err != nil || fmt.Sprint(app) != fmt.Sprint(append([]wsroom.Presence{prefix}, want...)) {
		t.Fatalf("AppendPresence = %v, %v; want %v after %v", app, err, want, prefix)
	}
	if fmt.Sprint(buf[3]) != fmt.Sprint(wsroom.Presence{}) {
		t.Fatalf("AppendPresence left %v in the slice past its answer", buf[3])
	}
	if allocs := testing.AllocsPerRun(100, func() {
		app, _ = s.hub.Room("r").AppendPresence(ctx, app[:0])
	}); allocs != 0 || len(app) != 2 {
		t.Fatalf("AppendPresence into a large enough slice: %v allocations, %d users", allocs, len(app))
	}
	if n, err := s.hub.Online(ctx, "alice"); n != 2 || err != nil {
		t.Fatalf("Online(alice) = %d, %v", n, err)
	}
	if rc, err := s.hub.RoomCounts(ctx); err != nil || fmt.Sprint(rc) != fmt.Sprint([]wsroom.RoomCount{{Room: "r", Users: 2}}) {
		t.Fatalf("RoomCounts = %v, %v", rc, err)
	}
	a1.CloseHandshake(t, 1000)
	wstest.WaitFor(t, "a1 gone", func() bool { return s.hub.Room("r").Len() == 2 })
	if got := log.String(); got != "r alice true; r bob true; " {
		t.Fatalf("after alice's first connection left: %s", got)
	}
	a2.CloseHandshake(t, 1000)
	b.CloseHandshake(t, 1000)
	wstest.WaitFor(t, "alice and bob gone", func() bool { return len(log.get()) == 4 })
	if got := log.String(); got != "r alice true; r bob true; r alice false; r bob false; " {
		t.Fatalf("events: %s", got)
	}
}

// cluster is three hubs on one membroker bus with cluster presence.
type cluster struct {
	bus     *membroker.Bus
	nodes   []*server
	brokers []*membroker.Broker
	log     *presenceLog
}

func newCluster(t *testing.T, n int, edit func(*wsroom.Options)) *cluster {
	cl := &cluster{bus: membroker.NewBus(), log: new(presenceLog)}
	for range n {
		b := cl.bus.NewBroker()
		opts := presenceOptions(cl.log)
		opts.Broker, opts.Presence, opts.PresenceTimeout = b, true, 2*time.Second
		if edit != nil {
			edit(&opts)
		}
		cl.brokers = append(cl.brokers, b)
		cl.nodes = append(cl.nodes, newServer(t, opts))
	}
	return cl
}

// roomPresence returns a room's presence as node i sees it, as text,
// checking that AppendPresence (membroker has no PresenceAppender: the
// fallback) gives the same.
func (cl *cluster) roomPresence(t *testing.T, i int, room string) string {
	t.Helper()
	p, err := cl.nodes[i].hub.Room(room).Presence(context.Background())
	if err != nil {
		t.Fatalf("Presence: %v", err)
	}
	head := []wsroom.Presence{{UserID: "-"}}
	if a, err := cl.nodes[i].hub.Room(room).AppendPresence(context.Background(), head); err != nil || len(a) < 1 || a[0].UserID != "-" {
		t.Fatalf("AppendPresence = %v, %v", a, err)
	} else if q, _ := cl.nodes[i].hub.Room(room).Presence(context.Background()); fmt.Sprint(a[1:]) != fmt.Sprint(p) && fmt.Sprint(q) == fmt.Sprint(p) {
		t.Fatalf("AppendPresence = %v, Presence = %v (twice)", a[1:], p)
	}
	var parts []string
	for _, e := range p {
		parts = append(parts, fmt.Sprintf("%s:%d", e.UserID, e.Conns))
	}
	return strings.Join(parts, " ")
}

// TestPresenceCluster: presence, events and control across three hubs.
func TestPresenceCluster(t *testing.T) {
	cl := newCluster(t, 3, nil)
	ctx := context.Background()
	a := wstest.Dial(t, cl.nodes[0].url+"?user=alice&room=r&info=A", nil)
	a2 := wstest.Dial(t, cl.nodes[1].url+"?user=alice&room=r", nil)
	wstest.Dial(t, cl.nodes[1].url+"?user=bob&room=r", nil)
	wstest.WaitFor(t, "presence seen from the third node", func() bool {
		return cl.roomPresence(t, 2, "r") == "alice:2 bob:1"
	})
	wstest.WaitFor(t, "two join events", func() bool { return len(cl.log.get()) == 2 })
	if got := cl.log.String(); !strings.Contains(got, "r alice true") || !strings.Contains(got, "r bob true") {
		t.Fatalf("events: %s", got)
	}
	// A user's node-wide count is recorded apart from its rooms' (see
	// docs/multinode.md): it may come a moment later.
	var online int
	var onlineErr error
	if !wstest.Poll(2*time.Millisecond, wstest.Patience, func() bool {
		online, onlineErr = cl.nodes[2].hub.Online(ctx, "alice")
		return online == 2 && onlineErr == nil
	}) {
		t.Fatalf("Online(alice) from node 3 = %d, %v after %v; want 2", online, onlineErr, wstest.Patience)
	}
	if rc, err := cl.nodes[2].hub.RoomCounts(ctx); err != nil || fmt.Sprint(rc) != fmt.Sprint([]wsroom.RoomCount{{Room: "r", Users: 2}}) {
		t.Fatalf("RoomCounts = %v, %v", rc, err)
	}

	// One of alice's two connections leaves: no event.
	a.CloseHandshake(t, 1000)
	wstest.WaitFor(t, "alice down to one connection", func() bool { return cl.roomPresence(t, 2, "r") == "alice:1 bob:1" })
	if n := len(cl.log.get()); n != 2 {
		t.Fatalf("events after one of alice's connections left: %s", cl.log)
	}

	// RemoveFromRoom from node 3, where bob is not.
	n, err := cl.nodes[2].hub.RemoveFromRoom(ctx, "r", "bob")
	if err != nil || n != 1 {
		t.Fatalf("RemoveFromRoom(r, bob) = %d, %v; want 1", n, err)
	}
	wstest.WaitFor(t, "bob out of r", func() bool { return cl.roomPresence(t, 0, "r") == "alice:1" })

	// Disconnect from node 1, where alice has no connection left.
	n, err = cl.nodes[0].hub.Disconnect(ctx, "alice", 4001, "logged out")
	if err != nil || n != 1 {
		t.Fatalf("Disconnect(alice) = %d, %v; want 1", n, err)
	}
	if reason := a2.ExpectClose(t, 4001); reason != "logged out" {
		t.Fatalf("close reason %q", reason)
	}
	a2.Close() // rather than answer: the server need not wait for it
	wstest.WaitFor(t, "alice gone everywhere", func() bool {
		n, _ := cl.nodes[1].hub.Online(ctx, "alice")
		return n == 0 && cl.roomPresence(t, 0, "r") == ""
	})
	wstest.WaitFor(t, "leave events", func() bool { return len(cl.log.get()) == 4 })
	if got := cl.log.String(); strings.Count(got, "r alice false") != 1 || strings.Count(got, "r bob false") != 1 {
		t.Fatalf("events: %s", got)
	}
}

// TestPresenceControlIncomplete: a node that does not answer makes the
// outcome incomplete, within the context's time.
func TestPresenceControlIncomplete(t *testing.T) {
	cl := newCluster(t, 2, nil)
	wstest.Dial(t, cl.nodes[1].url+"?user=carol&room=r", nil)
	wstest.WaitFor(t, "carol present", func() bool { return cl.roomPresence(t, 0, "r") == "carol:1" })
	cl.bus.SetDown(true)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := cl.nodes[0].hub.Disconnect(ctx, "carol", 1000, "")
	if !errors.Is(err, wsroom.ErrIncomplete) {
		t.Fatalf("Disconnect with the broker down: %v, want ErrIncomplete", err)
	}
	cl.bus.SetDown(false)
}

// TestPresenceCrash: a hub whose process dies takes its users out of
// their rooms after PresenceTimeout, with one leave event each, reported
// on a surviving node.
func TestPresenceCrash(t *testing.T) {
	cl := newCluster(t, 2, nil)
	wstest.Dial(t, cl.nodes[0].url+"?user=gone&room=r", nil)
	wstest.Dial(t, cl.nodes[0].url+"?user=stays&room=r", nil)
	wstest.Dial(t, cl.nodes[1].url+"?user=stays&room=r", nil)
	wstest.WaitFor(t, "presence", func() bool { return cl.roomPresence(t, 1, "r") == "gone:1 stays:2" })
	joins := len(cl.log.get())
	cl.bus.Kill(cl.brokers[0])
	began := time.Now()
	wstest.WaitFor(t, "the dead node's users gone", func() bool { return cl.roomPresence(t, 1, "r") == "stays:1" })
	t.Logf("cleaned up %v after the crash (timeout 2 s)", time.Since(began).Round(10*time.Millisecond))
	wstest.WaitFor(t, "one leave event", func() bool { return len(cl.log.get()) == joins+1 })
	if e := cl.log.get()[joins]; e.UserID != "gone" || e.Joined || e.Room != "r" {
		t.Fatalf("event after the crash: %+v", e)
	}
	time.Sleep(200 * time.Millisecond) // a check of absence: no second report
	if n := len(cl.log.get()); n != joins+1 {
		t.Fatalf("events after the crash: %s", cl.log)
	}
	// The dead hub's own shutdown must not report its users again.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cl.nodes[0].hub.Shutdown(ctx)
	if n := len(cl.log.get()); n != joins+1 {
		t.Fatalf("events after the dead hub shut down: %s", cl.log)
	}
}

// TestPresenceConverges: connections come and go at random across three
// hubs; presence ends equal to the truth, and each user's join and leave
// events alternate, one per transition.
func TestPresenceConverges(t *testing.T) {
	cl := newCluster(t, 3, func(o *wsroom.Options) {
		o.Broker = &onePerPair{Broker: o.Broker.(*membroker.Broker), t: t, busy: map[[2]string]bool{}}
	})
	const cycles = 300
	users := []string{"u1", "u2", "u3", "u4"}
	r := rand.New(rand.NewPCG(1, 2))
	type live struct {
		c    *wstest.Conn
		user string
	}
	var open []live
	for range cycles {
		if len(open) > 0 && r.IntN(2) == 0 {
			i := r.IntN(len(open))
			open[i].c.CloseHandshake(t, 1000)
			open = slices.Delete(open, i, i+1)
			continue
		}
		user := users[r.IntN(len(users))]
		node := cl.nodes[r.IntN(len(cl.nodes))]
		open = append(open, live{wstest.Dial(t, node.url+"?user="+user+"&room=r", nil), user})
	}
	truth := map[string]int{}
	for _, l := range open {
		truth[l.user]++
	}
	var want []string
	for _, u := range users {
		if truth[u] > 0 {
			want = append(want, fmt.Sprintf("%s:%d", u, truth[u]))
		}
	}
	wstest.WaitFor(t, "presence equal to the truth", func() bool { return cl.roomPresence(t, 0, "r") == strings.Join(want, " ") })
	wstest.WaitFor(t, "events settled", func() bool {
		present := map[string]bool{}
		for _, e := range cl.log.get() {
			if e.Joined == present[e.UserID] {
				return false // not (yet) alternating
			}
			present[e.UserID] = e.Joined
		}
		for _, u := range users {
			if present[u] != (truth[u] > 0) {
				return false
			}
		}
		return true
	})
}

// onePerPair fails the test if the hub calls SetPresence for a (room,
// user) pair while an earlier call for it runs (the hub records several
// pairs at once, each in order).
type onePerPair struct {
	*membroker.Broker
	t    *testing.T
	mu   sync.Mutex
	busy map[[2]string]bool
}

func (b *onePerPair) SetPresence(ctx context.Context, room, user string, count int, info []byte) (wsroom.PresenceChange, error) {
	k := [2]string{room, user}
	b.mu.Lock()
	if b.busy[k] {
		b.t.Errorf("SetPresence(%q, %q) while another call for the pair runs", room, user)
	}
	b.busy[k] = true
	b.mu.Unlock()
	runtime.Gosched() // a window for an overlapping call
	defer func() {
		b.mu.Lock()
		delete(b.busy, k)
		b.mu.Unlock()
	}()
	return b.Broker.SetPresence(ctx, room, user, count, info)
}

// TestAnnouncePresence: wsroom.v1 members of the room are told, plain
// clients are not.
func TestAnnouncePresence(t *testing.T) {
	log := new(presenceLog)
	opts := presenceOptions(log)
	opts.AnnouncePresence = true
	s := newServer(t, opts)
	v1 := wstest.Dial(t, s.url+"?user=watcher&room=r", http.Header{"Sec-WebSocket-Protocol": {wsroom.ProtocolV1}})
	expectPrefix(t, v1, `{"t":"hello"`)
	expectPrefix(t, v1, `{"t":"joined","r":"r"}`)
	expectPrefix(t, v1, `{"t":"presence","r":"r","u":"watcher","joined":true}`)
	plain := wstest.Dial(t, s.url+"?user=plain&room=r", nil)
	expectPrefix(t, v1, `{"t":"presence","r":"r","u":"plain","joined":true}`)
	plain.CloseHandshake(t, 1000)
	expectPrefix(t, v1, `{"t":"presence","r":"r","u":"plain","joined":false}`)
}

// expectPrefix reads the next data message and checks how it starts.
func expectPrefix(t *testing.T, c *wstest.Conn, want string) {
	t.Helper()
	_, data := c.ExpectMessage(t)
	if !strings.HasPrefix(string(data), want) {
		t.Fatalf("got %q, want a message starting %s", data, want)
	}
}
