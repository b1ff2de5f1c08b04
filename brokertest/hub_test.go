package brokertest_test

import (
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/brokertest"
	"github.com/wsroom/wsroom/internal/wstest"
	"github.com/wsroom/wsroom/membroker"
)

// outageBroker is a membroker Broker with, optionally, one flaw in what
// it does with a publish that failed during an outage: "late" keeps it
// and publishes it with the next publish once the bus is back, "silent"
// reports it as a success.
type outageBroker struct {
	*membroker.Broker
	flaw string
	mu   sync.Mutex
	held [][]byte // "late": payloads to publish again, all to topic
	to   []string
}

func (b *outageBroker) Publish(p []byte, topics ...string) func() error {
	b.mu.Lock()
	held, to := b.held, b.to
	b.mu.Unlock()
	if held != nil && b.Broker.Publish(nil)() == nil { // the bus is back
		b.mu.Lock()
		b.held = nil
		b.mu.Unlock()
		for _, h := range held {
			b.Broker.Publish(h, to...)()
		}
	}
	wait := b.Broker.Publish(p, topics...)
	return func() error {
		err := wait()
		switch {
		case err != nil && b.flaw == "silent":
			return nil
		case err != nil && b.flaw == "late":
			b.mu.Lock()
			b.held, b.to = append(b.held, slices.Clone(p)), topics
			b.mu.Unlock()
		}
		return err
	}
}

// hubOutage runs CheckHubOutage on two Hubs on a membroker Bus whose
// brokers have flaw.
func hubOutage(t *testing.T, flaw string) {
	bus := membroker.NewBus()
	var urls []string
	var hubs []*wsroom.Hub
	for range 2 {
		hub := wsroom.New(wsroom.Options{
			Broker:    &outageBroker{Broker: bus.NewBroker(), flaw: flaw},
			Logger:    wstest.QuietLogger(),
			Identify:  func(r *http.Request) (string, error) { return r.URL.Query().Get("user"), nil },
			OnConnect: func(c *wsroom.Conn, r *http.Request) error { return c.Join(r.URL.Query().Get("room")) },
		})
		srv := wstest.Serve(t, hub, hub.Shutdown)
		hubs, urls = append(hubs, hub), append(urls, "ws"+strings.TrimPrefix(srv.URL, "http"))
	}
	brokertest.CheckHubOutage(t, brokertest.HubOutage{
		Hub:       hubs[0],
		Room:      "fault",
		LocalURL:  urls[0] + "?user=local&room=fault",
		RemoteURL: urls[1] + "?user=remote&room=fault",
		Subscribed: func(t *testing.T) {
			wstest.WaitFor(t, "both hubs subscribed", func() bool { return bus.Subscribers("room:fault") == 2 })
		},
		Outage: func(_ *testing.T, down bool) { bus.SetDown(down) },
	})
}

func TestCheckHubOutage(t *testing.T) { hubOutage(t, "") }

// TestFlawedHubOutage runs CheckHubOutage with the flaw that
// BROKERTEST_HUB_FLAW names (see TestCheckHubOutageCatchesFlaws).
func TestFlawedHubOutage(t *testing.T) {
	flaw := os.Getenv("BROKERTEST_HUB_FLAW")
	if flaw == "" {
		t.Skip("run by TestCheckHubOutageCatchesFlaws")
	}
	hubOutage(t, flaw)
}

// TestCheckHubOutageCatchesFlaws shows that CheckHubOutage fails a broker
// that delivers a send that failed during the outage once the backend is
// back, and one that reports such a send as a success.
func TestCheckHubOutageCatchesFlaws(t *testing.T) {
	for flaw, says := range map[string]string{
		"late":   "which was not confirmed since",
		"silent": "sends reported an error during the outage",
	} {
		t.Run(flaw, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestFlawedHubOutage$", "-test.v")
			cmd.Env = append(os.Environ(), "BROKERTEST_HUB_FLAW="+flaw)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("CheckHubOutage passed a broker with flaw %q\n%s", flaw, out)
			}
			if !strings.Contains(string(out), says) {
				t.Fatalf("flaw %q: the failure does not say %q:\n%s", flaw, says, out)
			}
		})
	}
}
