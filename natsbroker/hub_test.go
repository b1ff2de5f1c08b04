package natsbroker_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/brokertest"
	"github.com/wsroom/wsroom/internal/wstest"
	"github.com/wsroom/wsroom/natsbroker"
	"github.com/wsroom/wsroom/natsbroker/internal/natstest"
)

// Three hubs on one nats-server: every kind of send reaches each intended
// connection on every node exactly once, and no one else.
func TestThreeNodesEverySendKindExactlyOnce(t *testing.T) {
	srv := natstest.Start(t)
	lobby, other := "lobby", "other.*" // a name with NATS wildcard characters
	a, b, c := newHubNode(t, srv.URL, nil), newHubNode(t, srv.URL, nil), newHubNode(t, srv.URL, nil)
	alice := a.dial(t, "alice", lobby)
	bob := b.dial(t, "bob", lobby)
	bobC := c.dial(t, "bob", other) // bob on two nodes, in two rooms
	carol := c.dial(t, "carol", other)
	dave := b.dial(t, "dave", lobby)
	wantMembers(t, a, lobby, 1)
	wantMembers(t, b, lobby, 2)
	wantMembers(t, c, other, 2)
	waitSubscribers(t, srv, map[string]int{"room:" + lobby: 2, "room:" + other: 1, "user:bob": 2, "all": 3})
	all := []*wstest.Conn{alice, bob, bobC, carol, dave}

	// Room.Broadcast from a node without members still reaches them.
	if err := c.hub.Room(lobby).Broadcast(wsroom.Text("room")); err != nil {
		t.Fatal(err)
	}
	alice.ExpectText(t, "room")
	bob.ExpectText(t, "room")
	dave.ExpectText(t, "room")
	expectNothing(t, all...)

	// Room.BroadcastExcept: b's bob is excluded, the rest of lobby gets it.
	if err := b.hub.Room(lobby).BroadcastExcept(wsroom.Text("except"), b.hub.UserConns("bob")[0]); err != nil {
		t.Fatal(err)
	}
	alice.ExpectText(t, "except")
	dave.ExpectText(t, "except")
	expectNothing(t, all...)

	// Hub.SendTo a user connected to two nodes, named twice.
	if err := a.hub.SendTo(wsroom.Text("users"), "bob", "carol", "bob"); err != nil {
		t.Fatal(err)
	}
	bob.ExpectText(t, "users")
	bobC.ExpectText(t, "users")
	carol.ExpectText(t, "users")
	expectNothing(t, all...)

	// Room.SendTo: only bob's connection that is in lobby, and alice.
	if err := c.hub.Room(lobby).SendTo(wsroom.Text("room-users"), "bob", "alice"); err != nil {
		t.Fatal(err)
	}
	bob.ExpectText(t, "room-users")
	alice.ExpectText(t, "room-users")
	expectNothing(t, all...)

	// Hub.Broadcast reaches every connection on every node.
	if err := b.hub.Broadcast(wsroom.Text("everyone")); err != nil {
		t.Fatal(err)
	}
	for _, cl := range all {
		cl.ExpectText(t, "everyone")
	}
	expectNothing(t, all...)
	for i, n := range []*hubNode{a, b, c} {
		if s := n.hub.Stats(); s.BrokerErrors != 0 {
			t.Errorf("node %d: %d broker errors", i, s.BrokerErrors)
		}
	}
}

// A node subscribes to a room and a user only while it has a member, and
// receives nothing for rooms it has no member in.
func TestInterestFollowsMembers(t *testing.T) {
	srv := natstest.Start(t)
	a, b := newHubNode(t, srv.URL, nil), newHubNode(t, srv.URL, nil)
	u1 := a.dial(t, "u1", "r")
	u2 := a.dial(t, "u2", "r")
	bob := b.dial(t, "bob", "") // in no room
	wantMembers(t, a, "r", 2)
	waitSubscribers(t, srv, map[string]int{"room:r": 1, "user:u1": 1, "user:u2": 1, "user:bob": 1, "all": 2})

	const n = 50
	for i := range n {
		if err := a.hub.Room("r").Broadcast(wsroom.Text(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		u1.ExpectText(t, fmt.Sprint(i))
		u2.ExpectText(t, fmt.Sprint(i))
	}
	expectNothing(t, bob)
	if s := b.broker.Stats(); s.Received != 0 {
		t.Errorf("node B's broker received %d messages of a room it has no member in", s.Received)
	}

	u1.Close()
	waitSubscribers(t, srv, map[string]int{"user:u1": 0, "room:r": 1})
	u2.Close()
	waitSubscribers(t, srv, map[string]int{"user:u2": 0, "room:r": 0, "all": 1})
	bob.Close()
	waitSubscribers(t, srv, map[string]int{"user:bob": 0, "all": 0})
}

// While nats-server is down, sends reach local members and report
// ErrNotPublished; after it restarts, cross-node delivery resumes, and
// nothing published during the outage arrives late (see
// brokertest.CheckHubOutage).
func TestOutageAndRecovery(t *testing.T) {
	srv := natstest.Start(t)
	a, b := newHubNode(t, srv.URL, nil), newHubNode(t, srv.URL, nil)
	brokertest.CheckHubOutage(t, brokertest.HubOutage{
		Hub:        a.hub,
		Room:       "fault",
		LocalURL:   a.joinURL("local", "fault"),
		RemoteURL:  b.joinURL("remote", "fault"),
		Subscribed: func(t *testing.T) { waitSubscribers(t, srv, map[string]int{"room:fault": 2}) },
		Outage:     func(_ *testing.T, down bool) { outage(srv, down) },
		Down: func(t *testing.T, failed int) {
			if s := a.broker.Stats(); s.PublishErrors < uint64(failed) || s.Connected {
				t.Errorf("broker stats %+v after %d failed sends", s, failed)
			}
		},
	})
	if s := a.broker.Stats(); !s.Connected || s.Reconnects == 0 {
		t.Errorf("broker stats after recovery: %+v", s)
	}
}

func TestShutdownClosesTheBroker(t *testing.T) {
	srv := natstest.Start(t)
	a := newHubNode(t, srv.URL, nil)
	if err := a.broker.Publish([]byte("x"), "room:nobody")(); err != nil {
		t.Fatalf("publish before shutdown: %v", err)
	}
	if err := a.hub.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := a.broker.Publish([]byte("x"), "room:nobody")(); !errors.Is(err, natsbroker.ErrClosed) {
		t.Fatalf("publish after shutdown: %v, want ErrClosed", err)
	}
	if err := a.broker.Subscribe("room:r"); !errors.Is(err, natsbroker.ErrClosed) {
		t.Fatalf("subscribe after shutdown: %v, want ErrClosed", err)
	}
	if err := a.hub.Room("r").Broadcast(wsroom.Text("x")); !errors.Is(err, wsroom.ErrHubClosed) {
		t.Fatalf("send after shutdown: %v", err)
	}
	if s := a.broker.Stats(); s.Connected {
		t.Error("the broker is still connected after Shutdown")
	}
}
