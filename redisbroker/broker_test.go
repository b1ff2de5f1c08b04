package redisbroker_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/brokertest"
	"github.com/wsroom/wsroom/internal/wstest"
	"github.com/wsroom/wsroom/redisbroker"
	"github.com/wsroom/wsroom/redisbroker/redistest"
)

func TestTwoNodesExactlyOnce(t *testing.T) {
	addr := redistest.Shared(t)
	rc := newRedisClient(t, addr)
	room := "two-" + t.Name()
	a, b := newNode(t, addr, nil), newNode(t, addr, nil)
	alice := wstest.Dial(t, a.url+"?user=alice2&room="+room, nil)
	bob := wstest.Dial(t, b.url+"?user=bob2&room="+room, nil)
	bobA := wstest.Dial(t, a.url+"?user=bob2&room="+room, nil) // bob on both nodes
	wantMembers(t, a, room, 2)
	wantMembers(t, b, room, 1)
	waitNumSub(t, rc, map[string]int64{"room:" + room: 2, "user:bob2": 2, "user:alice2": 1})
	all := []*wstest.Conn{alice, bob, bobA}

	if err := a.hub.Room(room).Broadcast(wsroom.Text("hello")); err != nil {
		t.Fatal(err)
	}
	for _, c := range all {
		c.ExpectText(t, "hello")
	}
	expectNothing(t, all...)

	if err := a.hub.Room(room).BroadcastExcept(wsroom.Text("except"), a.hub.UserConns("alice2")[0]); err != nil {
		t.Fatal(err)
	}
	bob.ExpectText(t, "except")
	bobA.ExpectText(t, "except")
	expectNothing(t, all...)

	if err := b.hub.SendTo(wsroom.Text("dm"), "bob2"); err != nil {
		t.Fatal(err)
	}
	bob.ExpectText(t, "dm")
	bobA.ExpectText(t, "dm")
	expectNothing(t, all...)
}

func TestThreeNodesExactlyOnce(t *testing.T) {
	addr := redistest.Shared(t)
	rc := newRedisClient(t, addr)
	lobby, other := "lobby-"+t.Name(), "other-"+t.Name()
	a, b, c := newNode(t, addr, nil), newNode(t, addr, nil), newNode(t, addr, nil)
	alice := wstest.Dial(t, a.url+"?user=alice3&room="+lobby, nil)
	bob := wstest.Dial(t, b.url+"?user=bob3&room="+lobby, nil)
	bobC := wstest.Dial(t, c.url+"?user=bob3&room="+other, nil) // bob on two nodes, two rooms
	carol := wstest.Dial(t, c.url+"?user=carol3&room="+other, nil)
	dave := wstest.Dial(t, b.url+"?user=dave3&room="+lobby, nil)
	wantMembers(t, a, lobby, 1)
	wantMembers(t, b, lobby, 2)
	wantMembers(t, c, other, 2)
	waitNumSub(t, rc, map[string]int64{"room:" + lobby: 2, "room:" + other: 1, "user:bob3": 2})
	all := []*wstest.Conn{alice, bob, bobC, carol, dave}

	// A room broadcast from a node without members still reaches them.
	if err := c.hub.Room(lobby).Broadcast(wsroom.Text("r")); err != nil {
		t.Fatal(err)
	}
	alice.ExpectText(t, "r")
	bob.ExpectText(t, "r")
	dave.ExpectText(t, "r")
	expectNothing(t, all...)

	// Broadcast except the sender: b's bob3 is excluded, everyone else in lobby gets it.
	if err := b.hub.Room(lobby).BroadcastExcept(wsroom.Text("x"), b.hub.UserConns("bob3")[0]); err != nil {
		t.Fatal(err)
	}
	alice.ExpectText(t, "x")
	dave.ExpectText(t, "x")
	expectNothing(t, all...)

	// Hub.SendTo a user connected to two nodes, named twice.
	if err := a.hub.SendTo(wsroom.Text("u"), "bob3", "carol3", "bob3"); err != nil {
		t.Fatal(err)
	}
	bob.ExpectText(t, "u")
	bobC.ExpectText(t, "u")
	carol.ExpectText(t, "u")
	expectNothing(t, all...)

	// Room.SendTo: only bob's connection that is in lobby, plus alice.
	if err := c.hub.Room(lobby).SendTo(wsroom.Text("rs"), "bob3", "alice3"); err != nil {
		t.Fatal(err)
	}
	bob.ExpectText(t, "rs")
	alice.ExpectText(t, "rs")
	expectNothing(t, all...)

	// Hub.Broadcast reaches every connection on every node.
	if err := b.hub.Broadcast(wsroom.Text("all")); err != nil {
		t.Fatal(err)
	}
	for _, cl := range all {
		cl.ExpectText(t, "all")
	}
	expectNothing(t, all...)
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
	alice := wstest.Dial(t, a.url+"?user=alice-i&room="+room, nil)
	bob := wstest.Dial(t, b.url+"?user=bob-i", nil) // on node B, in no room
	waitNumSub(t, rc, map[string]int64{"room:" + room: 1, "user:alice-i": 1, "user:bob-i": 1})

	const n = 50
	for i := range n {
		if err := a.hub.Room(room).Broadcast(wsroom.Text(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		alice.ExpectText(t, fmt.Sprint(i))
	}
	expectNothing(t, bob)
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
	c1 := wstest.Dial(t, a.url+"?user=u1&room="+room, nil)
	c2 := wstest.Dial(t, a.url+"?user=u2&room="+room, nil)
	waitNumSub(t, rc, map[string]int64{"room:" + room: 1, "user:u1": 1, "user:u2": 1})
	c1.Close()
	waitNumSub(t, rc, map[string]int64{"user:u1": 0})
	if got := numSub(t, rc, "room:"+room); got != 1 {
		t.Fatalf("room unsubscribed while a member is left: NUMSUB %d", got)
	}
	c2.Close()
	waitNumSub(t, rc, map[string]int64{"room:" + room: 0, "user:u2": 0, "all": 0})
}

// While Redis is down, sends reach local members and report
// ErrNotPublished; after it restarts, cross-node delivery resumes, and
// nothing published during the outage arrives late (see
// brokertest.CheckHubOutage).
func TestRedisOutageAndRecovery(t *testing.T) {
	srv := redistest.Start(t) // always our own: we kill it
	rc := newRedisClient(t, srv.Addr)
	a, b := newNode(t, srv.Addr, nil), newNode(t, srv.Addr, nil)
	brokertest.CheckHubOutage(t, brokertest.HubOutage{
		Hub:        a.hub,
		Room:       "fault",
		LocalURL:   a.url + "?user=local&room=fault",
		RemoteURL:  b.url + "?user=remote&room=fault",
		Subscribed: func(t *testing.T) { waitNumSub(t, rc, map[string]int64{"room:fault": 2}) },
		Outage:     func(_ *testing.T, down bool) { outage(down, srv) },
		Down: func(t *testing.T, failed int) {
			if s := a.broker.Stats(); s.PublishErrors < uint64(failed) {
				t.Errorf("broker counted %d publish errors for %d failed sends", s.PublishErrors, failed)
			}
		},
		Resume: 2 * time.Second,
	})
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
