package redisbroker_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
	"github.com/wsroom/wsroom/redisbroker"
	"github.com/wsroom/wsroom/redisbroker/redistest"
)

// eventLog records presence events from several hubs.
type eventLog struct {
	mu     sync.Mutex
	events []hubEvent
}

type hubEvent struct {
	hub int
	wsroom.PresenceEvent
}

func (l *eventLog) add(hub int, e wsroom.PresenceEvent) {
	l.mu.Lock()
	l.events = append(l.events, hubEvent{hub, e})
	l.mu.Unlock()
}

func (l *eventLog) get() []hubEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// String lists the events as "room user joined|left", in order.
func (l *eventLog) String() string {
	var parts []string
	for _, e := range l.get() {
		what := "left"
		if e.Joined {
			what = "joined"
		}
		parts = append(parts, e.Room+" "+e.UserID+" "+what)
	}
	return strings.Join(parts, "; ")
}

// presenceHubs starts n hubs with cluster presence over bo; users come
// from ?user=, join ?room= (several allowed) and attach ?info=.
func presenceHubs(t *testing.T, n int, bo redisbroker.Options, log *eventLog) []*node {
	t.Helper()
	var nodes []*node
	for i := range n {
		nodes = append(nodes, newNodeWith(t, &bo, func(o *wsroom.Options) {
			o.Presence, o.PresenceTimeout = true, 3*time.Second
			o.OnPresence = func(e wsroom.PresenceEvent) { log.add(i, e) }
			o.OnConnect = func(c *wsroom.Conn, r *http.Request) error {
				if info := r.URL.Query().Get("info"); info != "" {
					c.SetInfo([]byte(info))
				}
				for _, room := range r.URL.Query()["room"] {
					if err := c.Join(room); err != nil {
						return err
					}
				}
				return nil
			}
		}))
	}
	return nodes
}

// presenceText returns a room's presence as node n sees it: "user:conns"
// in user order.
func presenceText(t testing.TB, n *node, room string) string {
	t.Helper()
	p, err := n.hub.Room(room).Presence(context.Background())
	if err != nil {
		t.Fatalf("Presence(%s): %v", room, err)
	}
	var parts []string
	for _, e := range p {
		parts = append(parts, fmt.Sprintf("%s:%d", e.UserID, e.Conns))
	}
	return strings.Join(parts, " ")
}

// waitPresence waits until every node sees want in room.
func waitPresence(t testing.TB, nodes []*node, room, want string) {
	t.Helper()
	for i, n := range nodes {
		var now string
		if !poll(func() bool {
			now = presenceText(t, n, room)
			return now == want
		}) {
			t.Fatalf("node %d: presence of %s is %q after %v, want %q", i, room, now, patience, want)
		}
	}
}

// TestPresenceAcrossHubs: three hubs over one Redis: presence seen alike
// from every node, one event per transition in the whole cluster, and
// Disconnect and RemoveFromRoom across nodes with the nodes' counts.
// On one Redis and on a three-master cluster.
func TestPresenceAcrossHubs(t *testing.T) {
	t.Run("OneRedis", func(t *testing.T) {
		presenceAcrossHubs(t, redisbroker.Options{Addrs: []string{redistest.Start(t).Addr}})
	})
	t.Run("Cluster", func(t *testing.T) {
		presenceAcrossHubs(t, redisbroker.Options{Addrs: redistest.StartCluster(t, 3).Addrs()[:1], Cluster: true})
	})
}

func presenceAcrossHubs(t *testing.T, bo redisbroker.Options) {
	log := new(eventLog)
	nodes := presenceHubs(t, 3, bo, log)
	ctx := context.Background()
	a0 := wstest.Dial(t, nodes[0].url+"?user=alice&room=r&info=A", nil)
	a1 := wstest.Dial(t, nodes[1].url+"?user=alice&room=r", nil)
	wstest.Dial(t, nodes[1].url+"?user=bob&room=r&room=s", nil)
	waitPresence(t, nodes, "r", "alice:2 bob:1")
	p, err := nodes[2].hub.Room("r").Presence(ctx)
	if err != nil || string(p[0].Info) != "A" {
		t.Fatalf("alice's info from node 3: %v, %v; want A", p, err)
	}
	// A user's node-wide count is recorded apart from its rooms' (see
	// docs/multinode.md), and room s apart from room r: they may come a
	// moment later than r's presence.
	for i, n := range nodes {
		var k int
		var err error
		if !poll(func() bool { k, err = n.hub.Online(ctx, "alice"); return k == 2 && err == nil }) {
			t.Fatalf("Online(alice) from node %d = %d, %v after %v; want 2", i, k, err, patience)
		}
		var rc []wsroom.RoomCount
		if !poll(func() bool { rc, err = n.hub.RoomCounts(ctx); return err == nil && fmt.Sprint(rc) == "[{r 2} {s 1}]" }) {
			t.Fatalf("RoomCounts from node %d = %v, %v after %v", i, rc, err, patience)
		}
	}
	waitUntil(t, "three join events", func() bool { return len(log.get()) == 3 })
	if got := log.String(); !strings.Contains(got, "r alice joined") || !strings.Contains(got, "r bob joined") || !strings.Contains(got, "s bob joined") {
		t.Fatalf("events: %s", got)
	}

	// One of alice's connections leaves: no event.
	a0.Close()
	waitPresence(t, nodes, "r", "alice:1 bob:1")

	// RemoveFromRoom from node 3, where bob has no connection.
	if k, err := nodes[2].hub.RemoveFromRoom(ctx, "r", "bob"); err != nil || k != 1 {
		t.Fatalf("RemoveFromRoom(r, bob) = %d, %v; want 1", k, err)
	}
	waitPresence(t, nodes, "r", "alice:1")
	waitPresence(t, nodes, "s", "bob:1")

	// alice with connections on all three nodes: Disconnect from node 1
	// closes them all and counts them.
	a3 := wstest.Dial(t, nodes[0].url+"?user=alice&room=r", nil)
	a2 := wstest.Dial(t, nodes[2].url+"?user=alice&room=r", nil)
	waitPresence(t, nodes, "r", "alice:3")
	k, err := nodes[0].hub.Disconnect(ctx, "alice", 4001, "logged out")
	if err != nil || k != 3 {
		t.Fatalf("Disconnect(alice) = %d, %v; want 3", k, err)
	}
	for _, c := range []*wstest.Conn{a1, a2, a3} {
		if reason := c.ExpectClose(t, 4001); reason != "logged out" {
			t.Fatalf("close reason %q", reason)
		}
	}
	waitPresence(t, nodes, "r", "")
	waitUntil(t, "alice offline", func() bool { k, _ := nodes[1].hub.Online(ctx, "alice"); return k == 0 })
	waitUntil(t, "five events", func() bool { return len(log.get()) == 5 })
	time.Sleep(200 * time.Millisecond) // a check of absence: no other event
	if got := log.String(); strings.Count(got, "r alice left") != 1 || strings.Count(got, "r bob left") != 1 || len(log.get()) != 5 {
		t.Fatalf("events: %s", got)
	}
}

// TestPresenceConverges: connections come and go at random across three
// hubs; presence ends equal to the truth, and per room and user the join
// and leave events alternate, one per transition, and match the end state.
func TestPresenceConverges(t *testing.T) {
	srv := redistest.Start(t)
	log := new(eventLog)
	nodes := presenceHubs(t, 3, redisbroker.Options{Addrs: []string{srv.Addr}}, log)
	cycles := 2000
	if testing.Short() {
		cycles = 300
	}
	var users []string
	for i := range 12 {
		users = append(users, fmt.Sprintf("u%02d", i))
	}
	rooms := []string{"ra", "rb"}
	r := rand.New(rand.NewPCG(1, 2))
	type live struct {
		c     *wstest.Conn
		node  int
		user  string
		rooms []string
	}
	var open []live
	for range cycles {
		if len(open) > 0 && r.IntN(2) == 0 {
			i := r.IntN(len(open))
			open[i].c.Close()
			open = slices.Delete(open, i, i+1)
			continue
		}
		l := live{node: r.IntN(len(nodes)), user: users[r.IntN(len(users))]}
		q := "?user=" + l.user
		for _, room := range rooms {
			if r.IntN(2) == 0 {
				l.rooms = append(l.rooms, room)
				q += "&room=" + room
			}
		}
		l.c = wstest.Dial(t, nodes[l.node].url+q, nil)
		open = append(open, l)
	}
	for _, room := range rooms {
		truth := map[string]int{}
		for _, l := range open {
			if slices.Contains(l.rooms, room) {
				truth[l.user]++
			}
		}
		var want []string
		for _, u := range users {
			if truth[u] > 0 {
				want = append(want, fmt.Sprintf("%s:%d", u, truth[u]))
			}
		}
		waitPresence(t, nodes, room, strings.Join(want, " "))
		waitUntil(t, "the events of "+room+" to match the end state", func() bool {
			for _, u := range users {
				if want := min(truth[u], 1); eventsBalance(log.get(), room, u) != want {
					return false
				}
			}
			return true
		})
		for _, u := range users {
			if err := alternation(log.get(), room, u); err != nil {
				t.Fatalf("%s %s: %v; events: %s", room, u, err, log)
			}
		}
	}
	online := map[string]int{}
	for _, l := range open {
		online[l.user]++
	}
	for _, u := range users {
		waitUntil(t, "Online("+u+")", func() bool {
			k, err := nodes[0].hub.Online(context.Background(), u)
			return err == nil && k == online[u]
		})
	}
	t.Logf("%d cycles, %d connections open at the end, %d events", cycles, len(open), len(log.get()))
}

// eventsBalance returns user's joins minus leaves in room: 1 if present,
// 0 if not, when every transition was reported once.
func eventsBalance(events []hubEvent, room, user string) int {
	n := 0
	for _, e := range events {
		if e.Room == room && e.UserID == user {
			if e.Joined {
				n++
			} else {
				n--
			}
		}
	}
	return n
}

// alternation checks that user's events in room alternate, starting with
// a join. Two events reported on different hubs reach the log in the order
// their hubs' goroutines ran after Redis answered, so two adjacent events
// from different hubs may be swapped: that is the one reordering allowed.
func alternation(events []hubEvent, room, user string) error {
	var seq []hubEvent
	for _, e := range events {
		if e.Room == room && e.UserID == user {
			seq = append(seq, e)
		}
	}
	present := false
	for i := 0; i < len(seq); i++ {
		if seq[i].Joined != present {
			present = seq[i].Joined
			continue
		}
		if i+1 < len(seq) && seq[i+1].Joined != present && seq[i+1].hub != seq[i].hub {
			seq[i], seq[i+1] = seq[i+1], seq[i]
			present = seq[i].Joined
			continue
		}
		return fmt.Errorf("event %d (joined %v on hub %d) repeats the previous transition", i, seq[i].Joined, seq[i].hub)
	}
	return nil
}
