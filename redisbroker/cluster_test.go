package redisbroker_test

import (
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
	"github.com/wsroom/wsroom/redisbroker"
	"github.com/wsroom/wsroom/redisbroker/redistest"
)

// TestClusterSlots checks, against a real cluster, that Redis puts each
// channel in the slot the broker chose, and that room topics spread
// evenly over the three masters.
func TestClusterSlots(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	b := redisbroker.New(redisbroker.Options{Addrs: c.Addrs()[:1], Cluster: true, Logger: quietLogger()})
	b.Start(func(string, []byte) {})
	t.Cleanup(func() { b.Close() })
	// The layout is read asynchronously; a publish waits for it.
	if err := b.Publish([]byte("x"), "room:warmup")(); err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"room:lobby", "room:{tag}x", "room:x{tag}", "user:42", "all", "room:" + string(make([]byte, 256))} {
		got, err := redistest.Command(c.Nodes[0].Addr, "CLUSTER", "KEYSLOT", b.ChannelOf(topic))
		if err != nil {
			t.Fatal(err)
		}
		if want := ":" + strconv.Itoa(redisbroker.SlotOf(topic)); got != want {
			t.Errorf("%q: Redis puts channel %q in slot %s, the broker in %s", topic, b.ChannelOf(topic), got, want)
		}
	}
	count := map[string]int{}
	const n = 10000
	for i := range n {
		count[b.ShardOf("room:"+strconv.Itoa(i))]++
	}
	if len(count) != 3 {
		t.Fatalf("room topics on %d masters: %v", len(count), count)
	}
	for addr, k := range count {
		if k < n/3*9/10 || k > n/3*11/10 {
			t.Errorf("master %s holds %d of %d room topics", addr, k, n)
		}
	}
	t.Logf("%d room topics over 3 masters: %v", n, count)
}

// TestClusterShardDown kills one master of three: sends to its topics
// report ErrNotPublished while the others flow; after a restart its
// topics flow again.
func TestClusterShardDown(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	bo := &redisbroker.Options{Addrs: c.Addrs(), Cluster: true}
	a, b := newNodeWith(t, bo, nil), newNodeWith(t, bo, nil)
	// One room per master.
	rooms := map[string]string{} // master → room
	for i := 0; len(rooms) < 3; i++ {
		room := "r" + strconv.Itoa(i)
		topic := "room:" + room
		// The broker reads the cluster's layout asynchronously.
		wstest.WaitFor(t, "the cluster layout", func() bool { return a.broker.ShardOf(topic) != "" })
		if master := a.broker.ShardOf(topic); rooms[master] == "" {
			rooms[master] = room
		}
	}
	clients := map[string]*wstest.Conn{}
	for master, room := range rooms {
		clients[master] = wstest.Dial(t, b.url+"?user=u-"+room+"&room="+room, nil)
		wantMembers(t, b, room, 1)
	}
	for master, room := range rooms { // subscriptions are in place once a send gets through
		waitDelivery(t, a, room, clients[master])
	}
	dead := c.Nodes[0]
	deadRoom := rooms[dead.Addr]
	dead.Stop()
	for i := range 20 {
		m := fmt.Sprint("down ", i)
		if err := a.hub.Room(deadRoom).Broadcast(wsroom.Text(m)); !errors.Is(err, wsroom.ErrNotPublished) {
			if i == 0 && err == nil {
				continue // the first may find the dying connection writable
			}
			t.Fatalf("send %d to a room of the dead master: %v, want ErrNotPublished", i, err)
		}
	}
	for master, room := range rooms {
		if master == dead.Addr {
			continue
		}
		if err := a.hub.Room(room).Broadcast(wsroom.Text("flows")); err != nil {
			t.Fatalf("send to a room of a live master: %v", err)
		}
		clients[master].ExpectText(t, "flows")
	}
	dead.Restart()
	restarted := time.Now()
	waitDelivery(t, a, deadRoom, clients[dead.Addr])
	t.Logf("the restarted master's rooms flow again %v after its restart", time.Since(restarted).Round(time.Millisecond))
}

// waitDelivery sends numbered messages to room from n until one reaches
// c (sends may fail meanwhile), then checks that c gets nothing it was
// not sent. The one that arrived is whichever Redis accepted first.
func waitDelivery(t *testing.T, n *node, room string, c *wstest.Conn) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	sent := map[string]bool{}
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("room %s: no delivery within 10 s", room)
		}
		m := fmt.Sprint("probe ", room, " ", i)
		if err := n.hub.Room(room).Broadcast(wsroom.Text(m)); err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		sent[m] = true
		if _, got, err := c.ReadWithin(20 * time.Millisecond); err == nil {
			if !sent[string(got)] {
				t.Fatalf("room %s: got %q, never sent or twice", room, got)
			}
			delete(sent, string(got))
			break
		}
	}
	for { // the rest of the probes that got through, each once
		_, got, err := c.ReadWithin(100 * time.Millisecond)
		if err != nil {
			return
		}
		if !sent[string(got)] {
			t.Fatalf("room %s: got %q, never sent or twice", room, got)
		}
		delete(sent, string(got))
	}
}

// TestClusterSlotMoves moves the slot of a subscribed topic to another
// master (CLUSTER SETSLOT … NODE): the broker notices (Redis unsubscribes
// the channel, publishes get MOVED), reads the new layout, subscribes on
// the new master, and the topic flows again.
func TestClusterSlotMoves(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	pub, sub, got := brokerPair(t, redisbroker.Options{Addrs: c.Addrs()[:1], Cluster: true})
	const topic = "room:moving"
	sub.Subscribe(topic)
	expectMsg(t, pub, got, topic)

	from := sub.ShardOf(topic)
	var to string
	for _, a := range c.Addrs() {
		if a != from {
			to = a
			break
		}
	}
	toID, err := redistest.Command(to, "CLUSTER", "MYID")
	if err != nil {
		t.Fatal(err)
	}
	slot := strconv.Itoa(redisbroker.SlotOf(topic))
	// The slot holds no keys: assigning it is the whole migration. The new
	// owner first, then the others.
	order := []string{to, from}
	for _, a := range c.Addrs() {
		if a != to && a != from {
			order = append(order, a)
		}
	}
	for _, a := range order {
		if _, err := redistest.Command(a, "CLUSTER", "SETSLOT", slot, "NODE", toID); err != nil {
			t.Fatalf("CLUSTER SETSLOT on %s: %v", a, err)
		}
	}
	if !wstest.Poll(20*time.Millisecond, 15*time.Second, func() bool {
		if sub.ShardOf(topic) == to && pub.ShardOf(topic) == to {
			return true
		}
		pub.Publish([]byte("nudge"), topic)() // a MOVED reply prompts a new layout
		return false
	}) {
		t.Fatalf("the brokers still put %s on %s / %s, want %s", topic, sub.ShardOf(topic), pub.ShardOf(topic), to)
	}
	for len(got) > 0 {
		<-got
	}
	expectMsg(t, pub, got, topic)
}
