package main

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/wsroom/wsroom/internal/wstest"
	"github.com/wsroom/wsroom/natsbroker/internal/natstest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestTwoProcessesChat runs the demo binary twice on one nats-server:
// room messages and direct messages cross the nodes, and SIGTERM shuts
// each node down cleanly.
func TestTwoProcessesChat(t *testing.T) {
	srv := natstest.Start(t)
	bin := wstest.Build(t, ".")
	n1, n2 := wstest.StartProcess(t, bin, "-nats", srv.URL), wstest.StartProcess(t, bin, "-nats", srv.URL)
	alice := joinChat(t, n1.Addr, "alice", "lobby")
	bob := joinChat(t, n2.Addr, "bob", "lobby")
	lobby := "wsroom.room." + base64.RawURLEncoding.EncodeToString([]byte("lobby"))
	var n int
	var err error
	if !wstest.Poll(10*time.Millisecond, 10*time.Second, func() bool {
		n, err = srv.Subscribers(lobby)
		return err == nil && n == 2
	}) {
		t.Fatalf("%d nodes subscribe to %s (error %v), want 2", n, lobby, err)
	}

	alice.SendText(t, `{"room":"lobby","data":{"text":"hi bob"},"id":"1"}`)
	hear(t, bob, `{"from":"alice","room":"lobby","data":{"text":"hi bob"}}`)
	bob.SendText(t, `{"to":["alice"],"data":{"text":"psst","dm":true},"id":"2"}`)
	hear(t, alice, `{"from":"bob","data":{"text":"psst","dm":true}}`)
}

// joinChat connects to the node at addr as name, in room.
func joinChat(t *testing.T, addr, name, room string) *wstest.Conn {
	t.Helper()
	return wstest.Dial(t, "ws://"+addr+"/ws?name="+name+"&room="+room, nil)
}

// hear fails unless the next message on c that is not a presence update
// is want.
func hear(t *testing.T, c *wstest.Conn, want string) {
	t.Helper()
	if got := c.NextTextSkipping(t, isPresence); got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func isPresence(s string) bool { return strings.HasPrefix(s, `{"presence"`) }
