package redisbroker_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/redisbroker"
	"github.com/wsroom/wsroom/redisbroker/redistest"
)

// presenceNode is a started broker with presence, and the departures it
// reported.
type presenceNode struct {
	name string
	b    *redisbroker.Broker

	mu   sync.Mutex
	left []string // "room user"
}

const testTTL = time.Second

func startPresenceNode(t *testing.T, addr, name string) *presenceNode {
	t.Helper()
	n := &presenceNode{name: name, b: redisbroker.New(redisbroker.Options{Addrs: []string{addr}, Logger: quietLogger()})}
	n.b.Start(func(string, []byte) {})
	n.b.StartPresence(name, testTTL, func(room, user string, _ []byte) {
		n.mu.Lock()
		n.left = append(n.left, room+" "+user)
		n.mu.Unlock()
	})
	t.Cleanup(func() { n.b.Close() })
	return n
}

func (n *presenceNode) set(t *testing.T, room, user string, count int) wsroom.PresenceChange {
	t.Helper()
	ch, err := n.b.SetPresence(context.Background(), room, user, count, nil)
	if err != nil {
		t.Fatalf("%s: SetPresence(%s, %s, %d): %v", n.name, room, user, count, err)
	}
	return ch
}

func (n *presenceNode) departures() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.left)
}

// roomText returns a room's presence as "user:conns …".
func roomText(t *testing.T, b *redisbroker.Broker, room string) string {
	t.Helper()
	p, err := b.RoomPresence(context.Background(), room)
	if err != nil {
		return "error: " + err.Error()
	}
	var s []string
	for _, e := range p {
		s = append(s, fmt.Sprintf("%s:%d", e.UserID, e.Conns))
	}
	return strings.Join(s, " ")
}

// TestPresenceAfterRedisLostData: Redis restarts empty; every node finds
// its registration gone at its next beat and writes its presence again.
func TestPresenceAfterRedisLostData(t *testing.T) {
	srv := redistest.Start(t)
	a, b := startPresenceNode(t, srv.Addr, "a"), startPresenceNode(t, srv.Addr, "b")
	a.set(t, "r", "u1", 2)
	b.set(t, "r", "u1", 1)
	b.set(t, "r", "u2", 1)
	a.set(t, "", "u1", 2)
	srv.Stop()
	srv.Restart()
	waitUntil(t, "presence written again", func() bool { return roomText(t, a.b, "r") == "u1:3 u2:1" })
	waitUntil(t, "online counts written again", func() bool {
		nodes, err := b.b.UserNodes(context.Background(), "u1")
		return err == nil && nodes["a"] == 2
	})
	// The transitions go on from there.
	if ch := a.set(t, "r", "u1", 0); ch != wsroom.PresenceUnchanged {
		t.Fatalf("u1 leaves a: %v, want unchanged (1 left on b)", ch)
	}
	if ch := b.set(t, "r", "u1", 0); ch != wsroom.PresenceLeft {
		t.Fatalf("u1 leaves b: %v, want left", ch)
	}
	if d := append(a.departures(), b.departures()...); len(d) != 0 {
		t.Fatalf("departures reported: %v", d)
	}
}

// TestPresenceNodePresumedDead: a node that is alive but was claimed for
// cleanup (its beats did not reach Redis in time) is cleaned up, its
// users reported leaving once; the node then writes its presence again,
// as it stands.
func TestPresenceNodePresumedDead(t *testing.T) {
	srv := redistest.Start(t)
	a, b := startPresenceNode(t, srv.Addr, "a"), startPresenceNode(t, srv.Addr, "b")
	a.set(t, "r", "only-a", 1)
	a.set(t, "r", "both", 1)
	b.set(t, "r", "both", 1)
	// As if a's beats had stopped and a cleaner had claimed it and died
	// at once (its lease expired): b claims it again.
	claimed(t, srv.Addr, a.b, "a")
	departures := func() []string { return append(a.departures(), b.departures()...) }
	waitUntil(t, "only-a reported leaving", func() bool { return len(departures()) > 0 })
	waitUntil(t, "a's presence written again", func() bool { return roomText(t, b.b, "r") == "both:2 only-a:1" })
	if ch := a.set(t, "r", "only-a", 0); ch != wsroom.PresenceLeft {
		t.Fatalf("only-a leaves: %v, want left", ch)
	}
	if d := departures(); !slices.Equal(d, []string{"r only-a"}) {
		t.Fatalf("departures: %v; want only-a leaving r, reported once (by a or b)", d)
	}
}

// TestPresenceCleanupResumed: a node is dead and its cleaner died before
// finishing (its lease ran out); another node resumes, reporting each
// departure once.
func TestPresenceCleanupResumed(t *testing.T) {
	srv := redistest.Start(t)
	dead := startPresenceNode(t, srv.Addr, "dead")
	for _, room := range []string{"r1", "r2", "r3"} {
		dead.set(t, room, "u", 1)
	}
	dead.set(t, "", "u", 1)
	dead.b.Close()
	// A cleaner claimed it, removed r1 (reporting u's departure there),
	// and died: r1 is out of the index, and the lease has run out.
	b := startPresenceNode(t, srv.Addr, "b")
	rk, nk := b.b.RoomKeys("dead", "r1")
	for _, cmd := range [][]string{
		{"ZREMRANGEBYLEX", rk, "[u\x00", "(u\x01"},
		{"DEL", nk},
		{"SREM", b.b.RegistryKey("p:idx:dead"), "r1"},
	} {
		if _, err := redistest.Command(srv.Addr, cmd...); err != nil {
			t.Fatal(err)
		}
	}
	claimed(t, srv.Addr, b.b, "dead")
	waitUntil(t, "the cleanup resumed", func() bool {
		return roomText(t, b.b, "r2") == "" && roomText(t, b.b, "r3") == ""
	})
	waitUntil(t, "the cleanup finished", func() bool {
		n, err := redistest.Command(srv.Addr, "ZCARD", b.b.RegistryKey("p:dead"))
		return err == nil && n == ":0"
	})
	d := b.departures()
	slices.Sort(d)
	if fmt.Sprint(d) != "[r2 u r3 u]" {
		t.Fatalf("departures %v; want u leaving r2 and r3 once each", d)
	}
	if got := roomText(t, b.b, "r1"); got != "" {
		t.Fatalf("r1: %q", got)
	}
	if nodes, err := b.b.UserNodes(context.Background(), "u"); err != nil || len(nodes) != 0 {
		t.Fatalf("UserNodes(u) = %v, %v; want none", nodes, err)
	}
}

// claimed moves node from the registered nodes to those being cleaned
// up, with a lease that has run out, atomically.
func claimed(t *testing.T, addr string, b *redisbroker.Broker, node string) {
	t.Helper()
	const move = "redis.call('ZREM', KEYS[1], ARGV[1]) redis.call('ZADD', KEYS[2], 1, ARGV[1]) return 1"
	if _, err := redistest.Command(addr, "EVAL", move, "2", b.RegistryKey("p:nodes"), b.RegistryKey("p:dead"), node); err != nil {
		t.Fatal(err)
	}
}

// TestRoomPresenceCache: a big enough room's presence is answered from
// the kept answer while the room does not change, and read again as soon
// as it does, from whichever node, even when it empties and fills again.
func TestRoomPresenceCache(t *testing.T) {
	srv := redistest.Start(t)
	newNode := func(name string) *presenceNode {
		n := &presenceNode{name: name, b: redisbroker.New(redisbroker.Options{Addrs: []string{srv.Addr}, Logger: quietLogger(), PresenceCacheMin: 2})}
		n.b.Start(func(string, []byte) {})
		n.b.StartPresence(name, testTTL, nil)
		t.Cleanup(func() { n.b.Close() })
		return n
	}
	a, b := newNode("a"), newNode("b")
	a.set(t, "r", "u1", 1)
	a.set(t, "r", "u2", 1)
	for range 4 { // kept at the first read, answered from it after
		if got := roomText(t, b.b, "r"); got != "u1:1 u2:1" {
			t.Fatalf("presence %q", got)
		}
	}
	if h := b.b.Stats().PresenceHits; h != 3 {
		t.Fatalf("%d answers from the cache, want 3", h)
	}
	p, _ := b.b.RoomPresence(context.Background(), "r")
	p[0].UserID = "changed by the caller"
	steps := []struct {
		do   func()
		want string
	}{
		{func() { a.set(t, "r", "u2", 3) }, "u1:1 u2:3"},
		{func() { a.b.SetPresence(context.Background(), "r", "u1", 1, []byte("info")) }, "u1:1 u2:3"},
		{func() { a.set(t, "r", "u1", 0); a.set(t, "r", "u2", 0) }, ""},
		{func() { a.set(t, "r", "u1", 1); a.set(t, "r", "u2", 1) }, "u1:1 u2:1"},
	}
	for i, s := range steps {
		hits := b.b.Stats().PresenceHits
		s.do()
		if got := roomText(t, b.b, "r"); got != s.want {
			t.Fatalf("step %d: presence %q, want %q", i, got, s.want)
		}
		if b.b.Stats().PresenceHits != hits {
			t.Fatalf("step %d: answered from the cache after a change", i)
		}
	}
	hits := b.b.Stats().PresenceHits
	for range 2 {
		p, _ = b.b.RoomPresence(context.Background(), "r")
	}
	if b.b.Stats().PresenceHits != hits+2 || p[0].UserID != "u1" {
		t.Fatalf("the cache answered %v", p)
	}
}

// TestPresenceRedisSilentLongerThanTTL: Redis stops answering (SIGSTOP)
// for longer than the nodes' ttl, its data intact: when it answers again
// every deadline has passed, yet no node takes another for dead, and no
// departure is reported.
func TestPresenceRedisSilentLongerThanTTL(t *testing.T) {
	srv := redistest.Start(t)
	a, b := startPresenceNode(t, srv.Addr, "a"), startPresenceNode(t, srv.Addr, "b")
	a.set(t, "r", "ua", 1)
	b.set(t, "r", "ub", 1)
	srv.Pause()
	time.Sleep(2 * testTTL) // the outage must outlast the ttl
	srv.Resume()
	// Long enough for a janitor to have claimed a node taken for dead:
	// both had to beat for a ttl first, then look every ttl/5.
	waitUntil(t, "both nodes beating", func() bool {
		n, err := redistest.Command(srv.Addr, "ZCOUNT", a.b.RegistryKey("p:nodes"), "1", "+inf")
		return err == nil && n == ":2"
	})
	time.Sleep(2 * testTTL) // a check of absence: no node is claimed
	if d := append(a.departures(), b.departures()...); len(d) != 0 {
		t.Fatalf("departures after Redis came back: %v", d)
	}
	if got := roomText(t, a.b, "r"); got != "ua:1 ub:1" {
		t.Fatalf("presence after Redis came back: %q", got)
	}
}
