// Package membroker is an in-process wsroom.Broker. Several Hubs in one
// process, each given its own Broker from one Bus, behave like the nodes
// of a cluster: room, user and hub-wide sends reach the connections of
// every Hub on the Bus.
//
// Use it to test multi-node behaviour without Redis, to run a few Hubs in
// one process (several listeners, say), or as the reference a broker
// implementation is compared with: it passes the brokertest contract suite.
//
//	bus := membroker.NewBus()
//	a := wsroom.New(wsroom.Options{Broker: bus.NewBroker()})
//	b := wsroom.New(wsroom.Options{Broker: bus.NewBroker()})
//
// Delivery is exactly once and in publish order per publisher while the
// Bus is up. The Bus also keeps presence and room history for the whole
// cluster (it is a wsroom.PresenceBroker and a wsroom.HistoryBroker):
// Bus.Kill simulates a node's crash, Bus.LoseHistory a lost history. Each Broker delivers from one goroutine, through a bounded
// inbox (Options.Inbox, default 4096 messages): a publisher whose
// subscriber's inbox is full waits for room, so memory stays bounded and
// nothing is dropped.
package membroker

import (
	"errors"
	"slices"
	"sync"

	"github.com/wsroom/wsroom"
)

// DefaultInbox is the default bound of a Broker's inbox, in messages.
const DefaultInbox = 4096

var (
	// ErrDown is returned by publishes while the Bus is down (see SetDown).
	ErrDown = errors.New("membroker: bus is down")
	// ErrClosed is returned by publishes after the publishing Broker was
	// closed.
	ErrClosed = errors.New("membroker: broker is closed")
)

// Bus connects the Brokers made from it. Its methods are safe for
// concurrent use. The zero Bus is not usable; call NewBus.
type Bus struct {
	inbox int

	mu   sync.Mutex
	subs map[string]map[*Broker]struct{} // topic → subscribed brokers
	down bool

	pres presence  // cluster presence (presence.go)
	hist histories // room history (history.go)
}

// Options configures a Bus.
type Options struct {
	// Inbox bounds each Broker's queue of messages not yet delivered to
	// its Hub. Default 4096 (DefaultInbox).
	Inbox int
}

// NewBus returns an empty Bus with default options.
func NewBus() *Bus { return NewBusWith(Options{}) }

// NewBusWith returns an empty Bus configured by opts.
func NewBusWith(opts Options) *Bus {
	if opts.Inbox <= 0 {
		opts.Inbox = DefaultInbox
	}
	return &Bus{inbox: opts.Inbox, subs: make(map[string]map[*Broker]struct{})}
}

// NewBroker returns a Broker on the bus, for one Hub (one node).
func (bus *Bus) NewBroker() *Broker {
	return &Broker{
		bus:   bus,
		inbox: make(chan message, bus.inbox),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
}

// SetDown simulates an outage of the bus: while it is down every publish
// fails with ErrDown and nothing is delivered. Subscriptions are kept.
func (bus *Bus) SetDown(down bool) {
	bus.mu.Lock()
	bus.down = down
	bus.mu.Unlock()
}

// Subscribers returns how many Brokers subscribe to topic.
func (bus *Bus) Subscribers(topic string) int {
	bus.mu.Lock()
	defer bus.mu.Unlock()
	return len(bus.subs[topic])
}

// Topics returns how many topics have at least one subscriber.
func (bus *Bus) Topics() int {
	bus.mu.Lock()
	defer bus.mu.Unlock()
	return len(bus.subs)
}

type message struct {
	topic   string
	payload []byte
	pos     *wsroom.Position // a history message's (PublishHistory)
}

// Broker is one node's side of a Bus; it implements wsroom.Broker. Give
// each Broker to one Hub, which starts and closes it.
type Broker struct {
	bus   *Bus
	inbox chan message
	stop  chan struct{} // closed by Close: publishers stop waiting for room
	done  chan struct{} // closed when the delivering goroutine has returned

	mu      sync.Mutex // guards the fields below
	started bool
	closed  bool
	node    string // StartPresence's

	hdeliver func(topic string, pos wsroom.Position, payload []byte) // StartHistory's

	janitor sync.WaitGroup // the presence cleaner (presence.go)
}

var _ wsroom.Broker = (*Broker)(nil)

// Start implements wsroom.Broker: it starts the goroutine that delivers
// this node's messages, one at a time, in the order they arrived. Close
// joins it.
func (b *Broker) Start(deliver func(topic string, payload []byte)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		panic("membroker: Start called twice: use one Broker per Hub")
	}
	b.started = true
	go func() {
		defer close(b.done)
		for {
			select {
			case m := <-b.inbox:
				b.mu.Lock()
				hdeliver := b.hdeliver
				b.mu.Unlock()
				if m.pos != nil && hdeliver != nil {
					hdeliver(m.topic, *m.pos, m.payload)
				} else {
					deliver(m.topic, m.payload)
				}
			case <-b.stop:
				return
			}
		}
	}()
}

// Publish implements wsroom.Broker. It copies payload into the inbox of
// every Broker subscribed to each topic (waiting for room in a full
// inbox) before it returns, so the outcome is already known: wait returns
// nil, ErrDown while the bus is down, or ErrClosed after Close.
func (b *Broker) Publish(payload []byte, topics ...string) (wait func() error) {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return failed(ErrClosed)
	}
	type target struct {
		b     *Broker
		topic string
	}
	var targets []target
	bus := b.bus
	bus.mu.Lock()
	if bus.down {
		bus.mu.Unlock()
		return failed(ErrDown)
	}
	for _, t := range topics {
		for s := range bus.subs[t] {
			targets = append(targets, target{s, t})
		}
	}
	bus.mu.Unlock()
	for _, t := range targets {
		select {
		case t.b.inbox <- message{topic: t.topic, payload: slices.Clone(payload)}:
		case <-t.b.stop: // the subscriber closed meanwhile: it wants nothing
		}
	}
	return succeeded
}

func succeeded() error { return nil }

func failed(err error) func() error { return func() error { return err } }

// Subscribe implements wsroom.Broker.
func (b *Broker) Subscribe(topics ...string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	bus := b.bus
	bus.mu.Lock()
	defer bus.mu.Unlock()
	for _, t := range topics {
		s := bus.subs[t]
		if s == nil {
			s = make(map[*Broker]struct{})
			bus.subs[t] = s
		}
		s[b] = struct{}{}
	}
	return nil
}

// Unsubscribe implements wsroom.Broker.
func (b *Broker) Unsubscribe(topics ...string) error {
	bus := b.bus
	bus.mu.Lock()
	defer bus.mu.Unlock()
	for _, t := range topics {
		bus.unsubscribeLocked(b, t)
	}
	return nil
}

func (bus *Bus) unsubscribeLocked(b *Broker, topic string) {
	s := bus.subs[topic]
	delete(s, b)
	if len(s) == 0 {
		delete(bus.subs, topic)
	}
}

// Close implements wsroom.Broker: it drops every subscription, discards
// what was not yet delivered and joins the delivering goroutine, so
// deliver is not called after Close returns. Later publishes fail with
// ErrClosed.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	started := b.started
	b.mu.Unlock()
	bus := b.bus
	bus.mu.Lock()
	for t, s := range bus.subs {
		if _, ok := s[b]; ok {
			bus.unsubscribeLocked(b, t)
		}
	}
	bus.mu.Unlock()
	close(b.stop)
	if started {
		<-b.done
	}
	b.janitor.Wait()
	return nil
}

// kill closes b as a dead process would stop: see Bus.Kill.
func (b *Broker) kill() { b.Close() }
