package membroker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"sync"
	"time"

	"github.com/wsroom/wsroom"
)

var _ wsroom.HistoryBroker = (*Broker)(nil)

// histories is the Bus's room history: a bounded ring per topic.
type histories struct {
	mu     sync.Mutex // guards topics and every topicHistory's entries
	topics map[string]*topicHistory
}

// topicHistory is one topic's history. order serializes its publishes, so
// that every subscriber receives them in position order; it is held while
// the message is handed to the subscribers' inboxes, which may wait, so
// readers (ReadHistory) take only histories.mu.
type topicHistory struct {
	order   sync.Mutex
	epoch   string
	first   uint64 // offset of entries[0]
	next    uint64 // offset of the next message
	entries []histEntry
	bytes   int
}

type histEntry struct {
	payload []byte
	at      time.Time
}

func newEpoch() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// topic returns topic's history, creating it.
func (hs *histories) topic(name string) *topicHistory {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.topics == nil {
		hs.topics = make(map[string]*topicHistory)
	}
	th := hs.topics[name]
	if th == nil {
		th = &topicHistory{epoch: newEpoch(), first: 1, next: 1}
		hs.topics[name] = th
	}
	return th
}

// expire drops entries beyond ttl. Called with histories.mu held.
func (th *topicHistory) expire(ttl time.Duration) {
	i := 0
	for i < len(th.entries) && time.Since(th.entries[i].at) > ttl {
		th.bytes -= len(th.entries[i].payload)
		i++
	}
	th.drop(i)
}

func (th *topicHistory) drop(k int) {
	th.entries = slices.Delete(th.entries, 0, k)
	th.first += uint64(k)
}

// StartHistory implements wsroom.HistoryBroker.
func (b *Broker) StartHistory(deliver func(topic string, pos wsroom.Position, payload []byte)) {
	b.mu.Lock()
	b.hdeliver = deliver
	b.mu.Unlock()
}

// PublishHistory implements wsroom.HistoryBroker. Payload sizes count
// against limits.Bytes.
func (b *Broker) PublishHistory(topic string, payload []byte, limits wsroom.History) func() (wsroom.Position, error) {
	if err := b.usable(context.Background()); err != nil {
		return func() (wsroom.Position, error) { return wsroom.Position{}, err }
	}
	bus := b.bus
	th := bus.hist.topic(topic)
	th.order.Lock()
	defer th.order.Unlock()
	bus.hist.mu.Lock()
	if limits.TTL > 0 {
		th.expire(limits.TTL)
	}
	p := slices.Clone(payload)
	th.entries = append(th.entries, histEntry{payload: p, at: time.Now()})
	th.bytes += len(p)
	pos := wsroom.Position{Epoch: th.epoch, Offset: th.next}
	th.next++
	for (limits.Messages > 0 && len(th.entries) > limits.Messages) || (limits.Bytes > 0 && th.bytes > limits.Bytes && len(th.entries) > 1) {
		th.bytes -= len(th.entries[0].payload)
		th.drop(1)
	}
	bus.hist.mu.Unlock()

	bus.mu.Lock()
	var subs []*Broker
	for s := range bus.subs[topic] {
		subs = append(subs, s)
	}
	bus.mu.Unlock()
	for _, s := range subs {
		select {
		case s.inbox <- message{topic: topic, payload: p, pos: &pos}:
		case <-s.stop:
		}
	}
	return func() (wsroom.Position, error) { return pos, nil }
}

// ReadHistory implements wsroom.HistoryBroker.
func (b *Broker) ReadHistory(ctx context.Context, topic string, since wsroom.Position, most int) (wsroom.HistoryRead, error) {
	if err := b.usable(ctx); err != nil {
		return wsroom.HistoryRead{}, err
	}
	th := b.bus.hist.topic(topic)
	hs := &b.bus.hist
	hs.mu.Lock()
	defer hs.mu.Unlock()
	rd := wsroom.HistoryRead{Current: wsroom.Position{Epoch: th.epoch, Offset: th.next - 1}}
	from := 0 // index of the first entry to return
	switch {
	case since.Epoch == "":
		from = max(len(th.entries)-most, 0)
	case since.Epoch != th.epoch || since.Offset > th.next-1:
		rd.Lost = "epoch"
		return rd, nil
	case since.Offset+1 < th.first:
		rd.Lost = "trimmed"
		return rd, nil
	default:
		from = int(since.Offset + 1 - th.first)
	}
	for i := from; i < len(th.entries) && len(rd.Entries) < most; i++ {
		rd.Entries = append(rd.Entries, wsroom.HistoryEntry{Offset: th.first + uint64(i), Payload: th.entries[i].payload})
	}
	return rd, nil
}

// LoseHistory forgets every room's history, as a Redis that lost its data
// would: the next message of each room starts a new epoch.
func (bus *Bus) LoseHistory() {
	bus.hist.mu.Lock()
	bus.hist.topics = nil
	bus.hist.mu.Unlock()
}
