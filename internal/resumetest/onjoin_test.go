package resumetest

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/wsroom/wsroom"
)

// TestOnJoinBroadcastsInHistoryRoom shows a server-side problem found
// while moving examples/chat to rooms with history: Conn.join holds the
// room's history lock (deferred unlock) while it runs OnJoin, so an OnJoin
// that broadcasts to the room it reports (the usual presence update, as
// the chat did) deadlocks on that lock, and the connection's OnConnect never
// returns. Options documents OnJoin as running "outside any lock". The
// fix belongs in room.go: unlock the history before syncInterest and
// presence. Until then this test fails after 5 s (without hanging: the
// stuck goroutines are left behind, and the hub is not shut down).
func TestOnJoinBroadcastsInHistoryRoom(t *testing.T) {
	hub := wsroom.New(wsroom.Options{
		History:   func(string) wsroom.History { return wsroom.History{Messages: 10} },
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error { return c.Join("lobby") },
		OnJoin: func(room *wsroom.Room, c *wsroom.Conn) {
			room.Broadcast(wsroom.Text(c.UserID() + " joined"))
		},
	})
	srv := httptest.NewServer(hub)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, br, _, err := ws.Dialer{}.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"))
	if err != nil {
		t.Fatalf("dial: the handshake never completed (OnConnect → Join → OnJoin → Broadcast is stuck on the history lock): %v", err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var src io.Reader = conn
	if br != nil { // bytes that came with the handshake's answer
		src = io.MultiReader(br, conn)
	}
	if _, err := wsutil.NewReader(src, ws.StateClientSide).NextFrame(); err != nil {
		t.Fatalf("the presence broadcast never came: %v", err)
	}
	conn.Close()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := hub.Shutdown(sctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
