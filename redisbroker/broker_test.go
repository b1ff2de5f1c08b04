package redisbroker_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/redisbroker"
	"github.com/wsroom/wsroom/redisbroker/redistest"
)

// member returns the connection of user in room on n.
func (n *node) member(t testing.TB, room, user string) *wsroom.Conn {
	t.Helper()
	for c := range n.hub.Room(room).Members() {
		if c.UserID() == user {
			return c
		}
	}
	t.Fatalf("%s is not in %s", user, room)
	return nil
}

func TestTwoNodesExactlyOnce(t *testing.T) {
	addr := redistest.Shared(t)
	rc := newRedisClient(t, addr)
	room := "two-" + t.Name()
	a, b := newNode(t, addr, nil), newNode(t, addr, nil)
	alice := dialWS(t, a.url+"?user=alice2&room="+room)
	bob := dialWS(t, b.url+"?user=bob2&room="+room)
	bobA := dialWS(t, a.url+"?user=bob2&room="+room) // bob on both nodes
	waitMembers(t, a, room, 2)
	waitMembers(t, b, room, 1)
	waitNumSub(t, rc, map[string]int64{"room:" + room: 2, "user:bob2": 2, "user:alice2": 1})
	all := []*wsClient{alice, bob, bobA}
	quiet := func() {
		t.Helper()
		for _, c := range all {
			c.expectNothing()
		}
	}

	if err := a.hub.Room(room).Broadcast(wsroom.Text("hello")); err != nil {
		t.Fatal(err)
	}
	for _, c := range all {
		c.expect("hello")
	}
	quiet()

	if err := a.hub.Room(room).BroadcastExcept(wsroom.Text("except"), a.member(t, room, "alice2")); err != nil {
		t.Fatal(err)
	}
	bob.expect("except")
	bobA.expect("except")
	quiet()

	if err := b.hub.SendTo(wsroom.Text("dm"), "bob2"); err != nil {
		t.Fatal(err)
	}
	bob.expect("dm")
	bobA.expect("dm")
	quiet()
}

func TestThreeNodesExactlyOnce(t *testing.T) {
	addr := redistest.Shared(t)
	rc := newRedisClient(t, addr)
	lobby, other := "lobby-"+t.Name(), "other-"+t.Name()
	a, b, c := newNode(t, addr, nil), newNode(t, addr, nil), newNode(t, addr, nil)
	alice := dialWS(t, a.url+"?user=alice3&room="+lobby)
	bob := dialWS(t, b.url+"?user=bob3&room="+lobby)
	bobC := dialWS(t, c.url+"?user=bob3&room="+other) // bob on two nodes, two rooms
	carol := dialWS(t, c.url+"?user=carol3&room="+other)
	dave := dialWS(t, b.url+"?user=dave3&room="+lobby)
	waitMembers(t, a, lobby, 1)
	waitMembers(t, b, lobby, 2)
	waitMembers(t, c, other, 2)
	waitNumSub(t, rc, map[string]int64{"room:" + lobby: 2, "room:" + other: 1, "user:bob3": 2})
	all := []*wsClient{alice, bob, bobC, carol, dave}
	quiet := func() {
		t.Helper()
		for _, cl := range all {
			cl.expectNothing()
		}
	}

	// A room broadcast from a node without members still reaches them.
	if err := c.hub.Room(lobby).Broadcast(wsroom.Text("r")); err != nil {
		t.Fatal(err)
	}
	alice.expect("r")
	bob.expect("r")
	dave.expect("r")
	quiet()

	// Broadcast except the sender: b's bob3 is excluded, everyone else in lobby gets it.
	if err := b.hub.Room(lobby).BroadcastExcept(wsroom.Text("x"), b.member(t, lobby, "bob3")); err != nil {
		t.Fatal(err)
	}
	alice.expect("x")
	dave.expect("x")
	quiet()

	// Hub.SendTo a user connected to two nodes, named twice.
	if err := a.hub.SendTo(wsroom.Text("u"), "bob3", "carol3", "bob3"); err != nil {
		t.Fatal(err)
	}
	bob.expect("u")
	bobC.expect("u")
	carol.expect("u")
	quiet()

	// Room.SendTo: only bob's connection that is in lobby, plus alice.
	if err := c.hub.Room(lobby).SendTo(wsroom.Text("rs"), "bob3", "alice3"); err != nil {
		t.Fatal(err)
	}
	bob.expect("rs")
	alice.expect("rs")
	quiet()

	// Hub.Broadcast reaches every connection on every node.
	if err := b.hub.Broadcast(wsroom.Text("all")); err != nil {
		t.Fatal(err)
	}
	for _, cl := range all {
		cl.expect("all")
	}
	quiet()
	for i, n := range []*node{a, b, c} {
		if s := n.hub.Stats(); s.BrokerErrors != 0 {
			t.Errorf("node %d: %d broker errors", i, s.BrokerErrors)
		}
	}
}

func TestInterestOnlyWhereMembersAre(t *testing.T) {
	addr := redistest.Shared(t)
	rc := newRedisClient(t, addr)
	room := "interest-" + t.Name()
	a, b := newNode(t, addr, nil), newNode(t, addr, nil)
	alice := dialWS(t, a.url+"?user=alice-i&room="+room)
	bob := dialWS(t, b.url+"?user=bob-i") // on node B, in no room
	waitNumSub(t, rc, map[string]int64{"room:" + room: 1, "user:alice-i": 1, "user:bob-i": 1})

	const n = 50
	for i := range n {
		if err := a.hub.Room(room).Broadcast(wsroom.Text(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		alice.expect(fmt.Sprint(i))
	}
	bob.expectNothing()
	if s := b.broker.Stats(); s.Received != 0 {
		t.Errorf("node B's broker received %d messages of a room it has no member in", s.Received)
	}
	if s := b.hub.Stats(); s.BrokerIn != 0 {
		t.Errorf("node B's hub received %d sends", s.BrokerIn)
	}
}

func TestUnsubscribeWhenLastMemberLeaves(t *testing.T) {
	addr := redistest.Start(t).Addr // our own: it checks that nobody subscribes to "all"
	rc := newRedisClient(t, addr)
	room := "leave-" + t.Name()
	a := newNode(t, addr, nil)
	c1 := dialWS(t, a.url+"?user=u1&room="+room)
	c2 := dialWS(t, a.url+"?user=u2&room="+room)
	waitNumSub(t, rc, map[string]int64{"room:" + room: 1, "user:u1": 1, "user:u2": 1})
	c1.nc.Close()
	waitNumSub(t, rc, map[string]int64{"user:u1": 0})
	if got := numSub(t, rc, "room:"+room); got != 1 {
		t.Fatalf("room unsubscribed while a member is left: NUMSUB %d", got)
	}
	c2.nc.Close()
	waitNumSub(t, rc, map[string]int64{"room:" + room: 0, "user:u2": 0, "all": 0})
}

func TestRedisOutageAndRecovery(t *testing.T) {
	srv := redistest.Start(t) // always our own: we kill it
	rc := newRedisClient(t, srv.Addr)
	room := "fault"
	a, b := newNode(t, srv.Addr, nil), newNode(t, srv.Addr, nil)
	local := dialWS(t, a.url+"?user=local&room="+room)
	remote := dialWS(t, b.url+"?user=remote&room="+room)
	waitNumSub(t, rc, map[string]int64{"room:" + room: 2})

	seq := 0
	send := func() (string, error) {
		seq++
		m := fmt.Sprint("m", seq)
		return m, a.hub.Room(room).Broadcast(wsroom.Text(m))
	}
	for range 20 { // mid-stream
		m, err := send()
		if err != nil {
			t.Fatal(err)
		}
		local.expect(m)
		remote.expect(m)
	}

	srv.Stop()
	failed := 0
	for range 20 {
		m, err := send()
		if err != nil {
			if !errors.Is(err, wsroom.ErrNotPublished) {
				t.Fatalf("send during the outage: %v, want ErrNotPublished", err)
			}
			failed++
		}
		local.expect(m) // local delivery goes on
	}
	if failed < 19 { // the first send may still find the dying connection writable
		t.Fatalf("%d of 20 sends reported an error during the outage", failed)
	}
	if s := a.hub.Stats(); s.BrokerErrors < uint64(failed) {
		t.Errorf("hub counted %d broker errors for %d failed sends", s.BrokerErrors, failed)
	}
	if s := a.broker.Stats(); s.PublishErrors < uint64(failed) {
		t.Errorf("broker counted %d publish errors for %d failed sends", s.PublishErrors, failed)
	}
	remote.expectNothing() // nothing from the outage arrives late (at most once)

	srv.Restart()
	restarted := time.Now()
	published := map[string]bool{} // sends since the restart that Redis acknowledged
	for resumed := false; !resumed; {
		if time.Since(restarted) > 2*time.Second {
			t.Fatalf("cross-node delivery did not resume within 2 s of Redis coming back")
		}
		m, err := send()
		local.expect(m)
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		published[m] = true
		if s, err := remote.read(50 * time.Millisecond); err == nil {
			if !published[s] {
				t.Fatalf("after recovery got %q, which was not published since", s)
			}
			delete(published, s)
			resumed = true
		}
	}
	t.Logf("cross-node delivery resumed %v after redis-server restarted", time.Since(restarted).Round(time.Millisecond))
	for { // late arrivals of acknowledged sends, each once
		s, err := remote.read(200 * time.Millisecond)
		if err != nil {
			break
		}
		if !published[s] {
			t.Fatalf("after recovery got %q twice or unpublished", s)
		}
		delete(published, s)
	}
	for range 10 {
		m, err := send()
		if err != nil {
			t.Fatal(err)
		}
		local.expect(m)
		remote.expect(m)
	}
}

func TestShutdownClosesTheBroker(t *testing.T) {
	addr := redistest.Shared(t)
	a := newNode(t, addr, nil)
	if err := a.broker.Publish([]byte("x"), "room:nobody")(); err != nil {
		t.Fatalf("publish before shutdown: %v", err)
	}
	if err := a.hub.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := a.broker.Publish([]byte("x"), "room:nobody")(); !errors.Is(err, redisbroker.ErrClosed) {
		t.Fatalf("publish after shutdown: %v, want ErrClosed", err)
	}
	if err := a.broker.Subscribe("room:r"); !errors.Is(err, redisbroker.ErrClosed) {
		t.Fatalf("subscribe after shutdown: %v, want ErrClosed", err)
	}
	if err := a.hub.Room("r").Broadcast(wsroom.Text("x")); !errors.Is(err, wsroom.ErrHubClosed) {
		t.Fatalf("send after shutdown: %v", err)
	}
}
