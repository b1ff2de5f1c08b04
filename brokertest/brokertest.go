// Package brokertest checks that a wsroom.Broker meets the contract the
// Hub relies on, in the spirit of testing/slogtest. A broker's tests run
// it against a real backend:
//
//	func TestContract(t *testing.T) {
//		addr := startRedis(t)
//		brokertest.Run(t, brokertest.Config{
//			NewBroker: func(t *testing.T) wsroom.Broker {
//				return redisbroker.New(redisbroker.Options{Addrs: []string{addr}})
//			},
//		})
//	}
//
// Each call of NewBroker is one node; the suite starts several, wires them
// to a recording deliver function, and checks, each in a subtest: delivery
// to subscribers only, the publisher's own echo, exact topic names (no
// wildcards, any bytes a room name may hold), one publish to several
// topics, per-publisher order, concurrent publishers, payloads (empty,
// binary, 256 KiB, the caller's buffer reused after wait), unsubscribing,
// many topics, serialized delivery, Close, and, when Config.Outage is
// set, failure reporting during an outage and recovery after it. For a
// wsroom.PresenceBroker it also checks presence: transitions reported
// once, queries, leaving, concurrent updates from three nodes, and, when
// Config.Crash is set, the cleanup after a node dies.
//
// Subscribe does not wait for the network, so before a subtest relies on a
// subscription it publishes probe messages on the topic until one arrives;
// probes are not counted as deliveries. Checks that something is NOT
// delivered wait for a quiet period (Config.Quiet) after the deliveries
// that must happen have happened.
//
// CheckHubOutage checks the broker through two Hubs instead: what a Hub's
// sends do while the backend is down and once it is back.
package brokertest

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
)

// MinMaxPayload is the largest payload every broker must carry, in bytes:
// a Hub publishes a message's data plus a small header. A broker with a
// lower limit (NATS's default max_payload is 1 MiB) fails the Payloads check.
const MinMaxPayload = 256 << 10

// Config tells Run how to make brokers of the implementation under test.
type Config struct {
	// NewBroker returns a new, unstarted Broker on the shared backend:
	// each call is one more node, and what one node publishes must reach
	// the others. The suite calls Start and Close on each.
	NewBroker func(t *testing.T) wsroom.Broker

	// Outage, if set, makes the backend unreachable (down true) or
	// reachable again (down false), and returns once the change is made.
	// The suite then checks that publishes fail while it is down, that
	// Subscribe does not block meanwhile, and that delivery (including
	// the subscriptions made during the outage) comes back after it.
	Outage func(t *testing.T, down bool)

	// Timeout bounds every wait for something that must happen (a
	// delivery, a publish's outcome, recovery after an outage).
	// Default 10 s.
	Timeout time.Duration

	// Quiet is how long a check that something is not delivered waits.
	// Default 200 ms.
	Quiet time.Duration

	// Crash, if set, makes broker b stop as if its process had died:
	// without leaving presence (for wsroom.PresenceBrokers, whose
	// crash-cleanup check it enables). Closing b's connections abruptly,
	// for instance. The suite does not use b afterwards.
	Crash func(t *testing.T, b wsroom.Broker)
}

// Run runs the contract suite, each check in a subtest of t.
func Run(t *testing.T, cfg Config) {
	if cfg.NewBroker == nil {
		t.Fatal("brokertest: Config.NewBroker is required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Quiet <= 0 {
		cfg.Quiet = 200 * time.Millisecond
	}
	s := &suite{cfg: cfg}
	for _, c := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"DeliversToSubscribers", s.deliversToSubscribers},
		{"EchoesToPublisher", s.echoesToPublisher},
		{"ExactTopicNames", s.exactTopicNames},
		{"OnePublishSeveralTopics", s.onePublishSeveralTopics},
		{"KeepsPublisherOrder", s.keepsPublisherOrder},
		{"ConcurrentPublishers", s.concurrentPublishers},
		{"Payloads", s.payloads},
		{"Unsubscribe", s.unsubscribe},
		{"ManyTopics", s.manyTopics},
		{"Close", s.close},
		{"Outage", s.outage},
		{"Presence", s.runPresence},
		{"History", s.runHistory},
	} {
		t.Run(c.name, c.run)
	}
}

type suite struct {
	cfg Config
}

// delivery is one call of a node's deliver function.
type delivery struct {
	topic   string
	payload string
}

// probePrefix starts every probe payload; probes are not deliveries.
const probePrefix = "\x00brokertest-probe\x00"

// node is one started broker and what it has delivered.
type node struct {
	t       *testing.T
	s       *suite
	name    string
	b       wsroom.Broker
	running atomic.Int32 // deliver calls in progress
	overlap atomic.Bool  // deliver was called while another call ran
	closed  atomic.Bool  // Close has returned
	late    atomic.Int32 // deliver calls after Close returned

	mu     sync.Mutex
	got    []delivery
	probes map[string]bool // topics a probe arrived on
	change chan struct{}   // closed and replaced on every delivery
}

// newNode starts a broker; cleanup closes it (if the test has not) and
// checks that deliver was never called concurrently or after Close.
func (s *suite) newNode(t *testing.T, name string) *node {
	t.Helper()
	n := &node{t: t, s: s, name: name, b: s.cfg.NewBroker(t), probes: make(map[string]bool), change: make(chan struct{})}
	n.b.Start(n.deliver)
	t.Cleanup(func() {
		if !n.closed.Load() {
			if err := n.b.Close(); err != nil {
				t.Errorf("node %s: Close: %v", name, err)
			}
			n.closed.Store(true)
		}
		if n.overlap.Load() {
			t.Errorf("node %s: deliver was called while another call was running (it must be called from one goroutine at a time)", name)
		}
		if k := n.late.Load(); k > 0 {
			t.Errorf("node %s: deliver was called %d times after Close returned", name, k)
		}
	})
	return n
}

func (n *node) deliver(topic string, payload []byte) {
	if n.running.Add(1) > 1 {
		n.overlap.Store(true)
	}
	defer n.running.Add(-1)
	if n.closed.Load() {
		n.late.Add(1)
		return
	}
	n.mu.Lock()
	if p, ok := bytes.CutPrefix(payload, []byte(probePrefix)); ok {
		if nonce, probed, ok := strings.Cut(string(p), "\x00"); ok && probed == topic {
			n.probes[nonce+"\x00"+probed] = true
		}
	} else {
		n.got = append(n.got, delivery{topic, string(payload)}) // a copy: payload is only lent
	}
	close(n.change)
	n.change = make(chan struct{})
	n.mu.Unlock()
}

// waitUntil waits until cond, called with n.mu held, holds.
func (n *node) waitUntil(what string, cond func() bool) {
	n.t.Helper()
	deadline := time.NewTimer(n.s.cfg.Timeout)
	defer deadline.Stop()
	for {
		n.mu.Lock()
		ok, ch := cond(), n.change
		n.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			n.mu.Lock()
			got := summarize(n.got)
			n.mu.Unlock()
			n.t.Fatalf("node %s: timed out after %v waiting for %s; delivered so far: %s", n.name, n.s.cfg.Timeout, what, got)
		}
	}
}

// waitCount waits until n has delivered at least k messages.
func (n *node) waitCount(k int) {
	n.t.Helper()
	n.waitUntil(strconv.Itoa(k)+" deliveries", func() bool { return len(n.got) >= k })
}

// deliveries returns a copy of what n has delivered.
func (n *node) deliveries() []delivery {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.got)
}

// expectExactly checks, after a quiet period, that n delivered exactly
// want (in any order), each once.
func (n *node) expectExactly(want ...delivery) {
	n.t.Helper()
	n.waitCount(len(want))
	time.Sleep(n.s.cfg.Quiet) // a check of absence: nothing more may arrive
	got := n.deliveries()
	if !sameMultiset(got, want) {
		n.t.Fatalf("node %s delivered %s, want exactly %s", n.name, summarize(got), summarize(want))
	}
}

// subscribe subscribes n to topics and waits until each subscription is
// in effect: via publishes from prober until a probe arrives on each.
func (n *node) subscribe(prober *node, topics ...string) {
	n.t.Helper()
	if err := n.b.Subscribe(topics...); err != nil {
		n.t.Fatalf("node %s: Subscribe: %v", n.name, err)
	}
	n.settle(prober, topics...)
}

// settle publishes probes on topics from prober until n has received one
// on each. A probe carries a nonce of this call and its topic, so that
// neither a probe of an earlier subscription nor one that arrived on the
// wrong topic counts.
func (n *node) settle(prober *node, topics ...string) {
	n.t.Helper()
	var b [8]byte
	rand.Read(b[:])
	nonce := fmt.Sprintf("%x\x00", b)
	deadline := time.Now().Add(n.s.cfg.Timeout)
	for round := 0; ; round++ {
		missing := n.missingProbes(nonce, topics)
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("node %s: subscriptions not in effect after %v: %d topics, e.g. %q", n.name, n.s.cfg.Timeout, len(missing), missing[0])
		}
		var waits []func() error
		for _, topic := range missing {
			waits = append(waits, prober.b.Publish([]byte(probePrefix+nonce+topic), topic))
		}
		for _, w := range waits {
			w() // a probe that failed is retried in the next round
		}
		// Give this round's probes time to arrive before sending more:
		// wait for a change, at most a little while.
		n.mu.Lock()
		ch := n.change
		n.mu.Unlock()
		select {
		case <-ch:
		case <-time.After(time.Duration(min(round+1, 10)) * 20 * time.Millisecond):
		}
	}
}

func (n *node) missingProbes(nonce string, topics []string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var missing []string
	for _, t := range topics {
		if !n.probes[nonce+t] {
			missing = append(missing, t)
		}
	}
	return missing
}

// publish publishes payload on topics from n and checks the outcome.
func (n *node) publish(payload string, topics ...string) {
	n.t.Helper()
	if err := n.b.Publish([]byte(payload), topics...)(); err != nil {
		n.t.Fatalf("node %s: publish %q to %q: %v", n.name, short(payload), topics, err)
	}
}

func (s *suite) deliversToSubscribers(t *testing.T) {
	a, b, c := s.newNode(t, "A"), s.newNode(t, "B"), s.newNode(t, "C")
	a.subscribe(c, "room:lobby")
	b.subscribe(c, "room:other")
	c.publish("to lobby", "room:lobby")
	c.publish("to other", "room:other")
	a.expectExactly(delivery{"room:lobby", "to lobby"})
	b.expectExactly(delivery{"room:other", "to other"})
}

func (s *suite) echoesToPublisher(t *testing.T) {
	a, b := s.newNode(t, "A"), s.newNode(t, "B")
	a.subscribe(b, "user:alice")
	a.publish("own", "user:alice")
	a.expectExactly(delivery{"user:alice", "own"})
}

// oddNames are room names a Hub may hand to a broker: wildcard and
// separator characters of common brokers, spaces, non-ASCII, hash tags,
// the longest name Join accepts (256 bytes).
var oddNames = []string{
	"a.b", "a.*", "a.>", "*", ">", "a b", "ünïcødé", "{tag}x", "x{tag}", "a:b", "#", "a/b", "%2e",
	strings.Repeat("n", 256),
}

func (s *suite) exactTopicNames(t *testing.T) {
	a, b := s.newNode(t, "A"), s.newNode(t, "B")
	var topics []string
	for _, name := range oddNames {
		topics = append(topics, "room:"+name)
	}
	topics = append(topics, "user:a.b", "user:*", "all")
	a.subscribe(b, topics...)
	var want []delivery
	for i, topic := range topics {
		p := "payload " + strconv.Itoa(i)
		b.publish(p, topic)
		want = append(want, delivery{topic, p})
	}
	// Unsubscribed names that wildcard or prefix matching would confuse
	// with the subscribed ones.
	for _, topic := range []string{"room:a.c", "room:a.b.c", "room:a", "room:ab", "user:a", "room:x", "room:{tag}y", "al"} {
		b.publish("must not arrive", topic)
	}
	a.expectExactly(want...)
}

func (s *suite) onePublishSeveralTopics(t *testing.T) {
	a, b, c := s.newNode(t, "A"), s.newNode(t, "B"), s.newNode(t, "C")
	a.subscribe(c, "room:1", "user:u")
	b.subscribe(c, "room:2")
	c.publish("multi", "room:1", "room:2", "user:u", "room:nobody")
	a.expectExactly(delivery{"room:1", "multi"}, delivery{"user:u", "multi"})
	b.expectExactly(delivery{"room:2", "multi"})
}

func (s *suite) keepsPublisherOrder(t *testing.T) {
	a, b := s.newNode(t, "A"), s.newNode(t, "B")
	a.subscribe(b, "room:order")
	const n = 2000
	// Publish without waiting in between, as a busy Hub does, then read
	// every outcome once.
	waits := make([]func() error, n)
	for i := range n {
		waits[i] = b.b.Publish([]byte(strconv.Itoa(i)), "room:order")
	}
	for i, w := range waits {
		if err := w(); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	a.waitCount(n)
	for i, d := range a.deliveries()[:n] {
		if d.topic != "room:order" || d.payload != strconv.Itoa(i) {
			t.Fatalf("delivery %d is %q on %q, want %d in order", i, short(d.payload), d.topic, i)
		}
	}
	a.expectExactly(a.deliveries()[:n]...) // and nothing more
}

func (s *suite) concurrentPublishers(t *testing.T) {
	a, b, c := s.newNode(t, "A"), s.newNode(t, "B"), s.newNode(t, "C")
	a.subscribe(b, "room:busy")
	const senders, each = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, senders*each)
	for i := range senders {
		pub := []*node{b, c}[i%2]
		wg.Go(func() {
			for j := range each {
				if err := pub.b.Publish([]byte(fmt.Sprintf("%d/%d", i, j)), "room:busy")(); err != nil {
					errs <- fmt.Errorf("sender %d message %d: %w", i, j, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	a.waitCount(senders * each)
	next := make([]int, senders)
	for _, d := range a.deliveries() {
		var i, j int
		if _, err := fmt.Sscanf(d.payload, "%d/%d", &i, &j); err != nil || i < 0 || i >= senders {
			t.Fatalf("unexpected delivery %q", short(d.payload))
		}
		if j != next[i] {
			t.Fatalf("sender %d: got message %d, want %d (lost, duplicated or reordered)", i, j, next[i])
		}
		next[i]++
	}
	a.expectExactly(a.deliveries()[:senders*each]...)
}

func (s *suite) payloads(t *testing.T) {
	a, b := s.newNode(t, "A"), s.newNode(t, "B")
	a.subscribe(b, "room:bytes")
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	big := make([]byte, MinMaxPayload)
	rand.Read(big)
	payloads := [][]byte{{}, {0}, all, big, []byte("text ✓")}
	var want []delivery
	for _, p := range payloads {
		buf := slices.Clone(p)
		if err := b.b.Publish(buf, "room:bytes")(); err != nil {
			t.Fatalf("publish %d bytes: %v", len(p), err)
		}
		// The caller may reuse its buffer once wait has returned.
		for i := range buf {
			buf[i] ^= 0xff
		}
		want = append(want, delivery{"room:bytes", string(p)})
	}
	a.waitCount(len(want))
	got := a.deliveries()
	for i, w := range want {
		if got[i] != w {
			t.Fatalf("payload %d (%d bytes) arrived as %d bytes %q, want %q", i, len(w.payload), len(got[i].payload), short(got[i].payload), short(w.payload))
		}
	}
	a.expectExactly(want...)
}

func (s *suite) unsubscribe(t *testing.T) {
	a, b, c := s.newNode(t, "A"), s.newNode(t, "B"), s.newNode(t, "C")
	a.subscribe(c, "room:u", "room:kept")
	b.subscribe(c, "room:u")
	if err := a.b.Unsubscribe("room:u"); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	// A later subscription is in effect only after the unsubscription in
	// a broker that applies changes in order; one that does not must still
	// have stopped within the settle time.
	a.subscribe(c, "room:later")
	c.publish("after unsubscribe", "room:u")
	c.publish("kept", "room:kept")
	b.waitCount(1)
	a.expectExactly(delivery{"room:kept", "kept"})
	b.expectExactly(delivery{"room:u", "after unsubscribe"})

	// Subscribing again works.
	a.subscribe(c, "room:u")
	c.publish("again", "room:u")
	a.expectExactly(delivery{"room:kept", "kept"}, delivery{"room:u", "again"})
}

func (s *suite) manyTopics(t *testing.T) {
	a, b := s.newNode(t, "A"), s.newNode(t, "B")
	const n = 2000
	topics := make([]string, n)
	for i := range topics {
		topics[i] = "room:many-" + strconv.Itoa(i)
	}
	a.subscribe(b, topics...)
	waits := make([]func() error, n)
	want := make([]delivery, n)
	for i, topic := range topics {
		waits[i] = b.b.Publish([]byte(topic), topic)
		want[i] = delivery{topic, topic}
	}
	for i, w := range waits {
		if err := w(); err != nil {
			t.Fatalf("publish to %s: %v", topics[i], err)
		}
	}
	a.expectExactly(want...)
	if err := a.b.Unsubscribe(topics...); err != nil {
		t.Fatalf("Unsubscribe of %d topics: %v", n, err)
	}
}

func (s *suite) close(t *testing.T) {
	a, b := s.newNode(t, "A"), s.newNode(t, "B")
	a.subscribe(b, "room:c")
	b.subscribe(a, "room:c")
	if err := a.b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	a.closed.Store(true)
	// Publishing after Close fails, within the timeout.
	done := make(chan error, 1)
	go func() { done <- a.b.Publish([]byte("after close"), "room:c")() }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a publish after Close succeeded; want an error")
		}
	case <-time.After(s.cfg.Timeout):
		t.Fatal("a publish after Close did not return")
	}
	// The others go on, and the closed node receives nothing more (its
	// cleanup reports any late delivery).
	b.publish("still works", "room:c")
	b.expectExactly(delivery{"room:c", "still works"})
}

func (s *suite) outage(t *testing.T) {
	if s.cfg.Outage == nil {
		t.Skip("brokertest: Config.Outage not set: outage behaviour not checked")
	}
	a, b := s.newNode(t, "A"), s.newNode(t, "B")
	a.subscribe(b, "room:before")
	s.cfg.Outage(t, true)
	restored := false
	t.Cleanup(func() {
		if !restored {
			s.cfg.Outage(t, false)
		}
	})

	// Publishing fails, within the timeout: wait must report an error.
	var failedErr error
	deadline := time.Now().Add(s.cfg.Timeout)
	for failedErr == nil {
		if time.Now().After(deadline) {
			t.Fatal("every publish during the outage succeeded; want errors")
		}
		start := time.Now()
		failedErr = b.b.Publish([]byte("during"), "room:before")()
		if d := time.Since(start); d > s.cfg.Timeout {
			t.Fatalf("a publish during the outage took %v (Timeout %v)", d, s.cfg.Timeout)
		}
	}
	// Subscribing does not wait for the network.
	start := time.Now()
	if err := a.b.Subscribe("room:during"); err != nil {
		t.Logf("Subscribe during the outage: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Subscribe during the outage took %v; it must not wait for the network", d)
	}

	s.cfg.Outage(t, false)
	restored = true
	// Both the old subscription and the one made during the outage work
	// again (settle retries until they do, within the timeout).
	a.settle(b, "room:before", "room:during")
	b.publish("after", "room:before")
	b.publish("after", "room:during")
	a.waitUntil("deliveries after the outage", func() bool {
		var before, during bool
		for _, d := range a.got {
			before = before || d == delivery{"room:before", "after"}
			during = during || d == delivery{"room:during", "after"}
		}
		return before && during
	})
}

// sameMultiset reports whether a and b hold the same deliveries, counting
// duplicates.
func sameMultiset(a, b []delivery) bool {
	if len(a) != len(b) {
		return false
	}
	count := make(map[delivery]int, len(a))
	for _, d := range a {
		count[d]++
	}
	for _, d := range b {
		if count[d]--; count[d] < 0 {
			return false
		}
	}
	return true
}

func summarize(ds []delivery) string {
	var sb strings.Builder
	sb.WriteString(strconv.Itoa(len(ds)) + " [")
	for i, d := range ds {
		if i == 8 {
			sb.WriteString(" …")
			break
		}
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "%s: %q", d.topic, short(d.payload))
	}
	sb.WriteString("]")
	return sb.String()
}

func short(s string) string {
	if len(s) > 40 {
		return s[:40] + "…(" + strconv.Itoa(len(s)) + " bytes)"
	}
	return s
}
