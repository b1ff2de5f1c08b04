package brokertest

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
)

// runHistory runs the history checks on brokers that are
// wsroom.HistoryBrokers; others skip them.
func (s *suite) runHistory(t *testing.T) {
	probe := s.cfg.NewBroker(t)
	_, ok := probe.(wsroom.HistoryBroker)
	probe.Start(func(string, []byte) {})
	probe.Close()
	if !ok {
		t.Skip("brokertest: not a wsroom.HistoryBroker: history not checked")
	}
	for _, c := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"Positions", s.historyPositions},
		{"Read", s.historyRead},
		{"ConcurrentPublishers", s.historyConcurrent},
	} {
		t.Run(c.name, c.run)
	}
}

// historyNode is a started HistoryBroker and the positioned messages it
// delivered.
type historyNode struct {
	t *testing.T
	b wsroom.HistoryBroker
	n *node // for plain deliveries and probes

	mu  sync.Mutex
	got []positioned
	ch  chan struct{}
}

type positioned struct {
	topic   string
	pos     wsroom.Position
	payload string
}

func (s *suite) historyNode(t *testing.T, name string) *historyNode {
	t.Helper()
	hn := &historyNode{t: t, ch: make(chan struct{}, 1)}
	n := &node{t: t, s: s, name: name, b: s.cfg.NewBroker(t), probes: make(map[string]bool), change: make(chan struct{})}
	hn.n, hn.b = n, n.b.(wsroom.HistoryBroker)
	hn.b.StartHistory(func(topic string, pos wsroom.Position, payload []byte) {
		hn.mu.Lock()
		hn.got = append(hn.got, positioned{topic, pos, string(payload)})
		hn.mu.Unlock()
		select {
		case hn.ch <- struct{}{}:
		default:
		}
	})
	n.b.Start(n.deliver)
	t.Cleanup(func() { n.b.Close() })
	return hn
}

// waitCount waits until hn delivered k positioned messages.
func (hn *historyNode) waitCount(k int, timeout time.Duration) []positioned {
	hn.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		hn.mu.Lock()
		got := append([]positioned(nil), hn.got...)
		hn.mu.Unlock()
		if len(got) >= k {
			return got
		}
		if time.Now().After(deadline) {
			hn.t.Fatalf("%d positioned messages after %v, want %d", len(got), timeout, k)
		}
		select {
		case <-hn.ch:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var historyLimits = wsroom.History{Messages: 100, Bytes: 1 << 20, TTL: time.Minute}

func (s *suite) historyPositions(t *testing.T) {
	a, b := s.historyNode(t, "A"), s.historyNode(t, "B")
	topic := "room:hist-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	a.n.subscribe(b.n, topic) // probes are plain: they do not enter history
	var last wsroom.Position
	for i := range 20 {
		pos, err := b.b.PublishHistory(topic, []byte("m"+strconv.Itoa(i)), historyLimits)()
		if err != nil {
			t.Fatalf("PublishHistory %d: %v", i, err)
		}
		if pos.Epoch == "" || (i > 0 && (pos.Epoch != last.Epoch || pos.Offset != last.Offset+1)) {
			t.Fatalf("message %d at %+v after %+v: want the same epoch and the next offset", i, pos, last)
		}
		last = pos
	}
	got := a.waitCount(20, s.cfg.Timeout)
	for i, p := range got[:20] {
		if p.topic != topic || p.payload != "m"+strconv.Itoa(i) || p.pos.Epoch != last.Epoch || p.pos.Offset != last.Offset-19+uint64(i) {
			t.Fatalf("delivery %d: %+v; want m%d at offset %d", i, p, i, last.Offset-19+uint64(i))
		}
	}
}

func (s *suite) historyRead(t *testing.T) {
	a := s.historyNode(t, "A")
	topic := "room:read-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	limits := wsroom.History{Messages: 10, Bytes: 1 << 20, TTL: time.Minute}
	var pos []wsroom.Position
	for i := range 15 {
		p, err := a.b.PublishHistory(topic, []byte("m"+strconv.Itoa(i)), limits)()
		if err != nil {
			t.Fatal(err)
		}
		pos = append(pos, p)
	}
	ctx := context.Background()
	read := func(since wsroom.Position, most int) wsroom.HistoryRead {
		t.Helper()
		rd, err := a.b.ReadHistory(ctx, topic, since, most)
		if err != nil {
			t.Fatalf("ReadHistory(%+v, %d): %v", since, most, err)
		}
		if rd.Current != pos[14] {
			t.Fatalf("ReadHistory current %+v, want %+v", rd.Current, pos[14])
		}
		return rd
	}
	payloads := func(rd wsroom.HistoryRead) string {
		s := ""
		for _, e := range rd.Entries {
			s += fmt.Sprintf("%d:%s ", e.Offset, e.Payload)
		}
		return s
	}
	if rd := read(pos[11], 100); rd.Lost != "" || payloads(rd) != fmt.Sprintf("%d:m12 %d:m13 %d:m14 ", pos[12].Offset, pos[13].Offset, pos[14].Offset) {
		t.Fatalf("after m11: %q lost %q", payloads(rd), rd.Lost)
	}
	if rd := read(pos[11], 2); payloads(rd) != fmt.Sprintf("%d:m12 %d:m13 ", pos[12].Offset, pos[13].Offset) {
		t.Fatalf("after m11, at most 2: %q", payloads(rd))
	}
	if rd := read(pos[14], 100); rd.Lost != "" || len(rd.Entries) != 0 {
		t.Fatalf("after the last: %q lost %q", payloads(rd), rd.Lost)
	}
	if rd := read(pos[2], 100); rd.Lost != "trimmed" {
		t.Fatalf("after m2 (10 kept of 15): lost %q, want trimmed", rd.Lost)
	}
	if rd := read(wsroom.Position{Epoch: "another", Offset: 3}, 100); rd.Lost != "epoch" {
		t.Fatalf("from another epoch: lost %q, want epoch", rd.Lost)
	}
	if rd := read(wsroom.Position{}, 3); rd.Lost != "" || payloads(rd) != fmt.Sprintf("%d:m12 %d:m13 %d:m14 ", pos[12].Offset, pos[13].Offset, pos[14].Offset) {
		t.Fatalf("the newest 3: %q lost %q", payloads(rd), rd.Lost)
	}
}

// historyConcurrent: two nodes publish to one topic at once; every
// subscriber gets positions in order, each once, with no gap.
func (s *suite) historyConcurrent(t *testing.T) {
	a, b, c := s.historyNode(t, "A"), s.historyNode(t, "B"), s.historyNode(t, "C")
	topic := "room:conc-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	c.n.subscribe(a.n, topic)
	const each = 100
	var wg sync.WaitGroup
	for _, pub := range []*historyNode{a, b} {
		wg.Go(func() {
			for i := range each {
				if _, err := pub.b.PublishHistory(topic, []byte(strconv.Itoa(i)), historyLimits)(); err != nil {
					t.Errorf("PublishHistory: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	got := c.waitCount(2*each, s.cfg.Timeout)
	for i := 1; i < len(got); i++ {
		if got[i].pos.Epoch != got[0].pos.Epoch || got[i].pos.Offset != got[i-1].pos.Offset+1 {
			t.Fatalf("delivery %d at %+v after %+v: want the next offset", i, got[i].pos, got[i-1].pos)
		}
	}
}
