package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
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

// TestKilledNodeLeavesPresence: the demo runs as a process with cluster
// presence (timeout 3 s) beside two hubs in this process; it is killed
// with SIGKILL. Its users must be gone from presence within the timeout +
// 5 s, each reported leaving once, on one of the survivors; a user also
// connected to a survivor stays, without an event.
func TestKilledNodeLeavesPresence(t *testing.T) {
	const timeout = 3 * time.Second
	redisAddr := redistest.Start(t).Addr
	bin := wstest.Build(t, ".")
	var mu sync.Mutex
	var events []string
	var survivors []*wsroom.Hub
	var urls []string
	for i := range 2 {
		hub := wsroom.New(wsroom.Options{
			Broker:          redisbroker.New(redisbroker.Options{Addrs: []string{redisAddr}}),
			Presence:        true,
			PresenceTimeout: timeout,
			Identify:        func(r *http.Request) (string, error) { return r.URL.Query().Get("name"), nil },
			OnConnect:       func(c *wsroom.Conn, r *http.Request) error { return c.Join(r.URL.Query().Get("room")) },
			OnPresence: func(e wsroom.PresenceEvent) {
				mu.Lock()
				events = append(events, fmt.Sprintf("hub%d %s %s %v", i, e.Room, e.UserID, e.Joined))
				mu.Unlock()
			},
		})
		srv := httptest.NewServer(hub)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			hub.Shutdown(ctx)
			srv.Close()
		})
		survivors = append(survivors, hub)
		urls = append(urls, srv.URL[len("http://"):])
	}
	victim := wstest.StartProcess(t, bin, "-redis", redisAddr, "-presence", "-presence-timeout", timeout.String())
	join(t, victim.Addr, "gone1", "lobby")
	join(t, victim.Addr, "gone2", "lobby")
	join(t, victim.Addr, "both", "lobby")
	join(t, urls[0], "both", "lobby")
	presence := func(h *wsroom.Hub) string {
		p, err := h.Room("lobby").Presence(context.Background())
		if err != nil {
			t.Fatalf("Presence: %v", err)
		}
		var s []string
		for _, e := range p {
			s = append(s, fmt.Sprintf("%s:%d", e.UserID, e.Conns))
		}
		return strings.Join(s, " ")
	}
	waitFor := func(what string, within time.Duration, cond func() bool) {
		t.Helper()
		if !wstest.Poll(10*time.Millisecond, within, cond) {
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("timed out after %v waiting for %s; events %q", within, what, events)
		}
	}
	waitFor("presence before the kill", 10*time.Second, func() bool {
		return presence(survivors[0]) == "both:2 gone1:1 gone2:1" && presence(survivors[1]) == "both:2 gone1:1 gone2:1"
	})
	leaves := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, e := range events {
			if strings.HasSuffix(e, " false") {
				out = append(out, e[len("hub0 "):]) // whichever survivor reported it
			}
		}
		slices.Sort(out)
		return out
	}
	if l := leaves(); len(l) > 0 {
		t.Fatalf("leave events before the kill: %q", l)
	}

	victim.Kill()
	killed := time.Now()
	waitFor("the killed node's users gone", timeout+5*time.Second, func() bool {
		return presence(survivors[0]) == "both:1" && presence(survivors[1]) == "both:1"
	})
	t.Logf("users gone %v after SIGKILL (presence timeout %v)", time.Since(killed).Round(10*time.Millisecond), timeout)
	waitFor("two leave events", 5*time.Second, func() bool { return len(leaves()) >= 2 })
	time.Sleep(300 * time.Millisecond) // a check of absence: no second report
	if l := leaves(); fmt.Sprint(l) != "[lobby gone1 false lobby gone2 false]" {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("leave events after the kill: %q; want gone1 and gone2 leaving lobby, once each (all events: %q)", l, events)
	}
	if k, err := survivors[1].Online(context.Background(), "gone1"); k != 0 || err != nil {
		t.Fatalf("Online(gone1) = %d, %v after the kill", k, err)
	}
}
