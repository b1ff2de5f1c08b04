package brokertest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
)

// runPresence runs the presence checks on brokers that are
// wsroom.PresenceBrokers; others skip them.
func (s *suite) runPresence(t *testing.T) {
	probe := s.cfg.NewBroker(t)
	_, ok := probe.(wsroom.PresenceBroker)
	probe.Start(func(string, []byte) {})
	probe.Close()
	if !ok {
		t.Skip("brokertest: not a wsroom.PresenceBroker: presence not checked")
	}
	for _, c := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"Transitions", s.presenceTransitions},
		{"Queries", s.presenceQueries},
		{"ExactlyOnce", s.presenceExactlyOnce},
		{"Leave", s.presenceLeave},
		{"Crash", s.presenceCrash},
	} {
		t.Run(c.name, c.run)
	}
}

// presenceNode is one started PresenceBroker and the departures it was
// told about.
type presenceNode struct {
	t    *testing.T
	name string
	b    wsroom.PresenceBroker

	mu   sync.Mutex
	left []wsroom.PresenceEvent
}

// presenceTTL is the node timeout the checks use (Crash waits for it).
const presenceTTL = 2 * time.Second

func (s *suite) presenceNode(t *testing.T, name string) *presenceNode {
	t.Helper()
	b := s.cfg.NewBroker(t).(wsroom.PresenceBroker)
	b.Start(func(string, []byte) {})
	n := &presenceNode{t: t, name: name + "-" + strconv.FormatUint(rand.Uint64(), 36), b: b}
	b.StartPresence(n.name, presenceTTL, func(room, user string, info []byte) {
		n.mu.Lock()
		n.left = append(n.left, wsroom.PresenceEvent{Room: room, UserID: user, Info: info})
		n.mu.Unlock()
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
		defer cancel()
		b.LeavePresence(ctx)
		b.Close()
	})
	return n
}

func (n *presenceNode) set(room, user string, count int, info string) wsroom.PresenceChange {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch, err := n.b.SetPresence(ctx, room, user, count, []byte(info))
	if err != nil {
		n.t.Fatalf("node %s: SetPresence(%q, %q, %d): %v", n.name, room, user, count, err)
	}
	return ch
}

func (n *presenceNode) expectSet(room, user string, count int, want wsroom.PresenceChange) {
	n.t.Helper()
	if got := n.set(room, user, count, "info-"+user); got != want {
		n.t.Fatalf("node %s: SetPresence(%q, %q, %d) = %v, want %v", n.name, room, user, count, got, want)
	}
}

func (s *suite) presenceTransitions(t *testing.T) {
	a, b := s.presenceNode(t, "A"), s.presenceNode(t, "B")
	room := "tr-" + a.name
	a.expectSet(room, "u", 1, wsroom.PresenceJoined)
	b.expectSet(room, "u", 2, wsroom.PresenceUnchanged)
	a.expectSet(room, "u", 3, wsroom.PresenceUnchanged)
	a.expectSet(room, "u", 0, wsroom.PresenceUnchanged)
	a.expectSet(room, "u", 0, wsroom.PresenceUnchanged) // again: idempotent
	b.expectSet(room, "u", 0, wsroom.PresenceLeft)
	b.expectSet(room, "u", 0, wsroom.PresenceUnchanged)
	b.expectSet(room, "u", 1, wsroom.PresenceJoined)
	b.expectSet(room, "u", 0, wsroom.PresenceLeft)
}

func (s *suite) presenceQueries(t *testing.T) {
	a, b := s.presenceNode(t, "A"), s.presenceNode(t, "B")
	ctx := context.Background()
	room, other := "q-"+a.name, "q2-"+a.name
	a.set(room, "bob", 1, "B")
	a.set(room, "alice", 2, "A")
	b.set(room, "alice", 1, "A")
	b.set(other, "carol", 1, "C")
	a.set("", "alice", 3, "")
	b.set("", "alice", 1, "")
	got, err := a.b.RoomPresence(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	want := []wsroom.Presence{{UserID: "alice", Conns: 3, Info: []byte("A")}, {UserID: "bob", Conns: 1, Info: []byte("B")}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("RoomPresence = %v, want %v", got, want)
	}
	if pa, ok := a.b.(wsroom.PresenceAppender); ok {
		// The same answer after dst's entries, twice (the second time
		// into the first answer's slice: a kept answer, for a broker
		// that keeps them).
		var buf []wsroom.Presence
		for range 2 {
			buf = append(buf[:0], wsroom.Presence{UserID: "-"})
			if buf, err = pa.AppendRoomPresence(ctx, buf, room); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(buf) != fmt.Sprint(append([]wsroom.Presence{{UserID: "-"}}, want...)) {
				t.Fatalf("AppendRoomPresence = %v, want %v after {-}", buf, want)
			}
		}
	}
	nodes, err := b.b.UserNodes(ctx, "alice")
	if err != nil || len(nodes) != 2 || nodes[a.name] != 3 || nodes[b.name] != 1 {
		t.Fatalf("UserNodes(alice) = %v, %v; want %s:3 and %s:1", nodes, err, a.name, b.name)
	}
	if nodes, err := a.b.UserNodes(ctx, "nobody"); err != nil || len(nodes) != 0 {
		t.Fatalf("UserNodes(nobody) = %v, %v; want none", nodes, err)
	}
	rooms, err := a.b.PresenceRooms(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]int{}
	for _, rc := range rooms {
		found[rc.Room] = rc.Users
	}
	if found[room] != 2 || found[other] != 1 || found[""] != 0 {
		t.Fatalf("PresenceRooms = %v; want %s with 2 users and %s with 1", rooms, room, other)
	}
	for i := 1; i < len(rooms); i++ {
		if rooms[i-1].Room >= rooms[i].Room {
			t.Fatalf("PresenceRooms not sorted: %v", rooms)
		}
	}
}

// presenceExactlyOnce: three nodes change the counts of a few users in a
// few rooms concurrently; every transition is reported once: per pair,
// joins and leaves alternate in total, and the end state matches.
func (s *suite) presenceExactlyOnce(t *testing.T) {
	nodes := []*presenceNode{s.presenceNode(t, "A"), s.presenceNode(t, "B"), s.presenceNode(t, "C")}
	const ops = 300
	rooms := []string{"x1-" + nodes[0].name, "x2-" + nodes[0].name}
	users := []string{"u1", "u2", "u3"}
	type key struct{ room, user string }
	var mu sync.Mutex
	joins, leaves := map[key]int{}, map[key]int{}
	final := make([]map[key]int, len(nodes)) // each node's last count
	var wg sync.WaitGroup
	for i, n := range nodes {
		final[i] = map[key]int{}
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 7))
			for range ops {
				k := key{rooms[r.IntN(len(rooms))], users[r.IntN(len(users))]}
				count := r.IntN(3)
				ch := n.set(k.room, k.user, count, "")
				mu.Lock()
				final[i][k] = count
				switch ch {
				case wsroom.PresenceJoined:
					joins[k]++
				case wsroom.PresenceLeft:
					leaves[k]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, room := range rooms {
		for _, user := range users {
			k := key{room, user}
			total := 0
			for i := range nodes {
				total += final[i][k]
			}
			present := 0
			if total > 0 {
				present = 1
			}
			if joins[k]-leaves[k] != present {
				t.Errorf("%v: %d joins and %d leaves reported, but the user is %s", k, joins[k], leaves[k], map[int]string{0: "absent", 1: "present"}[present])
			}
		}
		got, err := nodes[0].b.RoomPresence(context.Background(), room)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range got {
			want := 0
			for i := range nodes {
				want += final[i][key{room, p.UserID}]
			}
			if p.Conns != want {
				t.Errorf("%s: %s has %d connections, want %d", room, p.UserID, p.Conns, want)
			}
		}
	}
}

func (s *suite) presenceLeave(t *testing.T) {
	a, b := s.presenceNode(t, "A"), s.presenceNode(t, "B")
	room := "l-" + a.name
	a.set(room, "only-a", 1, "x")
	a.set(room, "both", 1, "")
	b.set(room, "both", 1, "")
	ctx := context.Background()
	left, err := a.b.LeavePresence(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0].Room != room || left[0].UserID != "only-a" || string(left[0].Info) != "x" {
		t.Fatalf("LeavePresence reported %v; want only-a leaving %s", left, room)
	}
	got, err := b.b.RoomPresence(ctx, room)
	if err != nil || len(got) != 1 || got[0].UserID != "both" || got[0].Conns != 1 {
		t.Fatalf("after A left: RoomPresence = %v, %v; want both with 1 connection", got, err)
	}
}

// presenceCrash: a node that dies without leaving is taken out after its
// timeout, and each of its users' departures is reported once, on one
// surviving node.
func (s *suite) presenceCrash(t *testing.T) {
	if s.cfg.Crash == nil {
		t.Skip("brokertest: Config.Crash not set: crash cleanup not checked")
	}
	a, b, c := s.presenceNode(t, "A"), s.presenceNode(t, "B"), s.presenceNode(t, "C")
	room := "c-" + a.name
	a.set(room, "gone", 2, "g")
	a.set(room, "stays", 1, "")
	b.set(room, "stays", 1, "")
	a.set("", "gone", 2, "")
	s.cfg.Crash(t, a.b)
	deadline := time.Now().Add(presenceTTL + s.cfg.Timeout)
	for {
		b.mu.Lock()
		c.mu.Lock()
		left := append(append([]wsroom.PresenceEvent(nil), b.left...), c.left...)
		c.mu.Unlock()
		b.mu.Unlock()
		if len(left) > 0 {
			time.Sleep(s.cfg.Quiet) // a check of absence: no second report
			b.mu.Lock()
			c.mu.Lock()
			left = append(append([]wsroom.PresenceEvent(nil), b.left...), c.left...)
			c.mu.Unlock()
			b.mu.Unlock()
			if len(left) != 1 || left[0].Room != room || left[0].UserID != "gone" {
				t.Fatalf("after the crash the survivors reported %v; want one departure of gone from %s", left, room)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no departure reported %v after the crash (timeout %v)", presenceTTL+s.cfg.Timeout, presenceTTL)
		}
		time.Sleep(20 * time.Millisecond) // polling the reports, bounded by the deadline
	}
	ctx := context.Background()
	got, err := b.b.RoomPresence(ctx, room)
	if err != nil || len(got) != 1 || got[0].UserID != "stays" || got[0].Conns != 1 {
		t.Fatalf("after the crash: RoomPresence = %v, %v; want stays with 1 connection", got, err)
	}
	if nodes, err := b.b.UserNodes(ctx, "gone"); err != nil || len(nodes) != 0 {
		t.Fatalf("after the crash: UserNodes(gone) = %v, %v; want none", nodes, err)
	}
}
