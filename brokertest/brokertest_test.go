package brokertest_test

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/brokertest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// flawedBus is a small in-memory pub/sub whose brokers can be given one
// flaw each, to show that the suite catches it.
type flawedBus struct {
	flaw string
	mu   sync.Mutex
	subs map[string]map[*flawed]bool
}

type flawed struct {
	bus     *flawedBus
	deliver func(string, []byte)
	mu      sync.Mutex // serializes deliveries unless the flaw is "concurrent"
	closed  bool
	held    []func() // "reorder": a delivery held back to go after the next
}

func (b *flawed) Start(d func(string, []byte)) { b.deliver = d }

func (b *flawed) Publish(p []byte, topics ...string) func() error {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return func() error { return errors.New("closed") }
	}
	bus := b.bus
	bus.mu.Lock()
	var to []*flawed
	var tt []string
	for _, t := range topics {
		for s := range bus.subs[t] {
			to, tt = append(to, s), append(tt, t)
		}
		if bus.flaw == "prefix" { // matches subscriptions that are prefixes of the topic
			for sub, ss := range bus.subs {
				if sub != t && strings.HasPrefix(t, sub) {
					for s := range ss {
						to, tt = append(to, s), append(tt, sub)
					}
				}
			}
		}
	}
	bus.mu.Unlock()
	payload := slices.Clone(p)
	if bus.flaw == "keepsBuffer" {
		payload = p
	}
	var wg sync.WaitGroup
	for i, s := range to {
		if s == b && bus.flaw == "noEcho" {
			continue
		}
		deliver := func() {
			if bus.flaw != "concurrent" {
				s.mu.Lock()
				defer s.mu.Unlock()
			}
			if s.closed && bus.flaw != "late" {
				return
			}
			s.deliver(tt[i], payload)
			if bus.flaw == "duplicate" {
				s.deliver(tt[i], payload)
			}
		}
		switch bus.flaw {
		case "keepsBuffer": // delivered after wait returned, from the caller's buffer
			defer func() { go deliver() }()
		case "concurrent":
			wg.Go(func() { deliver(); deliver() })
		case "reorder":
			s.mu.Lock()
			s.held = append(s.held, deliver)
			var run []func()
			if len(s.held) == 2 {
				run = []func(){s.held[1], s.held[0]}
				s.held = nil
			}
			s.mu.Unlock()
			for _, f := range run {
				f()
			}
		default:
			deliver()
		}
	}
	wg.Wait()
	return func() error { return nil }
}

func (b *flawed) Subscribe(topics ...string) error {
	b.bus.mu.Lock()
	defer b.bus.mu.Unlock()
	for _, t := range topics {
		if b.bus.subs[t] == nil {
			b.bus.subs[t] = map[*flawed]bool{}
		}
		b.bus.subs[t][b] = true
	}
	return nil
}

func (b *flawed) Unsubscribe(topics ...string) error {
	if b.bus.flaw == "sticky" {
		return nil
	}
	b.bus.mu.Lock()
	defer b.bus.mu.Unlock()
	for _, t := range topics {
		delete(b.bus.subs[t], b)
	}
	return nil
}

func (b *flawed) Close() error {
	b.Unsubscribe()
	b.bus.mu.Lock()
	for _, s := range b.bus.subs {
		if b.bus.flaw != "late" {
			delete(s, b)
		}
	}
	b.bus.mu.Unlock()
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// TestFlawedBroker runs the suite on one flawed broker when
// BROKERTEST_FLAW names the flaw (see TestSuiteCatchesFlaws).
func TestFlawedBroker(t *testing.T) {
	flaw := os.Getenv("BROKERTEST_FLAW")
	if flaw == "" {
		t.Skip("run by TestSuiteCatchesFlaws")
	}
	bus := &flawedBus{flaw: flaw, subs: map[string]map[*flawed]bool{}}
	brokertest.Run(t, brokertest.Config{
		NewBroker: func(*testing.T) wsroom.Broker { return &flawed{bus: bus} },
		Timeout:   2 * time.Second, // a flaw that loses messages fails sooner
	})
}

// TestSuiteCatchesFlaws shows that the suite fails each flawed broker in
// the check meant to catch its flaw, and passes the same broker without
// a flaw.
func TestSuiteCatchesFlaws(t *testing.T) {
	for flaw, check := range map[string]string{
		"none":        "",
		"noEcho":      "EchoesToPublisher",
		"prefix":      "ExactTopicNames",
		"reorder":     "KeepsPublisherOrder",
		"duplicate":   "DeliversToSubscribers",
		"keepsBuffer": "Payloads",
		"concurrent":  "ConcurrentPublishers",
		"sticky":      "Unsubscribe",
		"late":        "Close",
	} {
		t.Run(flaw, func(t *testing.T) {
			t.Parallel()
			run := "^TestFlawedBroker$"
			if check != "" {
				run += "/^" + check + "$" // the check meant to catch the flaw
			}
			cmd := exec.Command(os.Args[0], "-test.run="+run, "-test.v")
			cmd.Env = append(os.Environ(), "BROKERTEST_FLAW="+flaw)
			out, err := cmd.CombinedOutput()
			if check == "" {
				if err != nil {
					t.Fatalf("the suite failed a broker without flaws: %v\n%s", err, out)
				}
				return
			}
			if err == nil {
				t.Fatalf("the suite passed a broker with flaw %q\n%s", flaw, out)
			}
			if !strings.Contains(string(out), "--- FAIL: TestFlawedBroker/"+check) {
				t.Fatalf("flaw %q was not caught by %s:\n%s", flaw, check, out)
			}
		})
	}
}
