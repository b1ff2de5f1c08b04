package main

import (
	"strings"
	"testing"
	"time"

	"github.com/wsroom/wsroom/internal/wstest"
	"github.com/wsroom/wsroom/redisbroker/redistest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// join connects to the node at addr as name, in room.
func join(t *testing.T, addr, name, room string) *wstest.Conn {
	t.Helper()
	return wstest.Dial(t, "ws://"+addr+"/ws?name="+name+"&room="+room, nil)
}

// next returns the next message on c that is not a presence update.
func next(t *testing.T, c *wstest.Conn) string {
	t.Helper()
	return c.NextTextSkipping(t, isPresence)
}

func isPresence(s string) bool { return strings.HasPrefix(s, `{"presence"`) }

// waitSubscribers waits until the room's channel has n subscribers.
func waitSubscribers(t *testing.T, redisAddr, room string, n int) {
	t.Helper()
	var got int64
	var err error
	if !wstest.Poll(10*time.Millisecond, 10*time.Second, func() bool {
		got, err = redistest.NumSub(redisAddr, "wsroom:room:"+room)
		return err == nil && got == int64(n)
	}) {
		t.Fatalf("room %s: NUMSUB %d (error %v), want %d", room, got, err, n)
	}
}

func TestTwoProcessesChatAndDM(t *testing.T) {
	redisAddr := redistest.Start(t).Addr
	bin := wstest.Build(t, ".")
	n1, n2 := wstest.StartProcess(t, bin, "-redis", redisAddr), wstest.StartProcess(t, bin, "-redis", redisAddr)
	alice := join(t, n1.Addr, "alice", "lobby")
	bob := join(t, n2.Addr, "bob", "lobby")
	eve := join(t, n2.Addr, "eve", "elsewhere")
	waitSubscribers(t, redisAddr, "lobby", 2)

	alice.SendText(t, `{"room":"lobby","data":{"text":"hi bob"},"id":"1"}`)
	if got, want := next(t, bob), `{"from":"alice","room":"lobby","data":{"text":"hi bob"}}`; got != want {
		t.Fatalf("bob got %s, want %s", got, want)
	}
	bob.SendText(t, `{"room":"lobby","data":{"text":"hi alice"},"id":"1"}`)
	if got, want := next(t, alice), `{"from":"bob","room":"lobby","data":{"text":"hi alice"}}`; got != want {
		t.Fatalf("alice got %s, want %s", got, want)
	}

	// A DM across nodes; eve shares no room with alice, so her node drops
	// the DM addressed to her.
	alice.SendText(t, `{"to":["eve"],"data":{"text":"psst eve","dm":true},"id":"2"}`)
	alice.SendText(t, `{"to":["bob"],"data":{"text":"psst","dm":true},"id":"3"}`)
	if got, want := next(t, bob), `{"from":"alice","data":{"text":"psst","dm":true}}`; got != want {
		t.Fatalf("bob got %s, want %s", got, want)
	}
	bob.SendText(t, `{"to":["alice"],"data":{"text":"ok","dm":true},"id":"4"}`)
	if got, want := next(t, alice), `{"from":"bob","data":{"text":"ok","dm":true}}`; got != want {
		t.Fatalf("alice got %s, want %s", got, want)
	}
	// By now alice's earlier DM to eve would have arrived: eve, who shares
	// no room with alice, must have received nothing but presence updates.
	eve.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	for {
		_, b, err := eve.ReadMessage()
		if err != nil {
			break
		}
		if !isPresence(string(b)) {
			t.Fatalf("eve received %s", b)
		}
	}
}
