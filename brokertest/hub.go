package brokertest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
)

// HubOutage describes, for CheckHubOutage, two Hubs whose Brokers share a
// backend that can be taken down.
type HubOutage struct {
	// Hub sends to Room. Required.
	Hub  *wsroom.Hub
	Room string

	// LocalURL is a ws:// URL at which a client connection joins Room on
	// Hub, RemoteURL one at which it joins Room on another Hub on the
	// same backend. Required.
	LocalURL, RemoteURL string

	// Subscribed returns once both Hubs' Brokers have subscribed to the
	// Room's topic on the backend; CheckHubOutage calls it once both
	// clients are connected. Required: Subscribe does not wait for the
	// network.
	Subscribed func(t *testing.T)

	// Outage makes the backend unreachable (down true) or reachable
	// again (down false), and returns once the change is made, as
	// Config.Outage. Required.
	Outage func(t *testing.T, down bool)

	// Down, if set, is called during the outage, once the sends made
	// then have returned, with how many of them reported
	// wsroom.ErrNotPublished: to check the Broker's own counters, say.
	Down func(t *testing.T, failed int)

	// Resume bounds how long cross-node delivery may take to come back
	// once Outage(false) has returned. Default 5 s.
	Resume time.Duration
}

// hubQuiet is how long CheckHubOutage waits to see that nothing arrives.
const hubQuiet = 200 * time.Millisecond

// CheckHubOutage checks a Hub's room broadcasts across an outage of its
// Broker's backend, with a client connection on the Hub and one on
// another Hub. Before the outage, 20 broadcasts reach both. During it, 20
// broadcasts still reach the local client; all but the first (which may
// find a dying connection writable) return an error matching
// wsroom.ErrNotPublished, the Hub counts at least that many
// Stats.BrokerErrors, and none reaches the remote client, then or later.
// Once the backend is back, broadcasts reach the remote client again
// within Resume; it receives only broadcasts that reported success after
// the outage, each at most once; then 10 more reach both. If the check
// fails during the outage, cleanup ends the outage.
func CheckHubOutage(t *testing.T, o HubOutage) {
	t.Helper()
	if o.Hub == nil || o.LocalURL == "" || o.RemoteURL == "" || o.Subscribed == nil || o.Outage == nil {
		t.Fatal("brokertest: HubOutage needs Hub, LocalURL, RemoteURL, Subscribed and Outage")
	}
	if o.Resume <= 0 {
		o.Resume = 5 * time.Second
	}
	local := wstest.Dial(t, o.LocalURL, nil)
	remote := wstest.Dial(t, o.RemoteURL, nil)
	o.Subscribed(t)

	seq := 0
	send := func() (string, error) {
		seq++
		m := fmt.Sprint("m", seq)
		return m, o.Hub.Room(o.Room).Broadcast(wsroom.Text(m))
	}
	readRemote := func(d time.Duration) (string, error) {
		_, p, err := remote.ReadWithin(d)
		return string(p), err
	}
	both := func(n int) {
		t.Helper()
		for range n {
			m, err := send()
			if err != nil {
				t.Fatal(err)
			}
			local.ExpectText(t, m)
			remote.ExpectText(t, m)
		}
	}
	both(20) // mid-stream

	o.Outage(t, true)
	restored := false
	t.Cleanup(func() {
		if !restored {
			o.Outage(t, false)
		}
	})
	failed := 0
	for range 20 {
		m, err := send()
		if err != nil {
			if !errors.Is(err, wsroom.ErrNotPublished) {
				t.Fatalf("send during the outage: %v, want ErrNotPublished", err)
			}
			failed++
		}
		local.ExpectText(t, m) // local delivery goes on
	}
	if failed < 19 { // the first send may still find the dying connection writable
		t.Fatalf("%d of 20 sends reported an error during the outage", failed)
	}
	if s := o.Hub.Stats(); s.BrokerErrors < uint64(failed) {
		t.Errorf("hub counted %d broker errors for %d failed sends", s.BrokerErrors, failed)
	}
	if o.Down != nil {
		o.Down(t, failed)
	}
	remote.ExpectSilence(t, hubQuiet) // nothing from the outage arrives late (at most once)

	o.Outage(t, false)
	restored = true
	back := time.Now()
	confirmed := map[string]bool{} // sends since the outage that reported success
	for resumed := false; !resumed; {
		if time.Since(back) > o.Resume {
			t.Fatalf("cross-node delivery did not resume within %v of the backend coming back", o.Resume)
		}
		m, err := send()
		local.ExpectText(t, m)
		if err != nil {
			time.Sleep(20 * time.Millisecond) // pace the attempts; the loop is bounded above
			continue
		}
		confirmed[m] = true
		if s, err := readRemote(50 * time.Millisecond); err == nil {
			if !confirmed[s] {
				t.Fatalf("after recovery got %q, which was not confirmed since", s)
			}
			delete(confirmed, s)
			resumed = true
		}
	}
	t.Logf("cross-node delivery resumed %v after the backend came back", time.Since(back).Round(time.Millisecond))
	for { // late arrivals of confirmed sends, each once
		s, err := readRemote(hubQuiet)
		if err != nil {
			break
		}
		if !confirmed[s] {
			t.Fatalf("after recovery got %q twice or unconfirmed", s)
		}
		delete(confirmed, s)
	}
	both(10)
}
