package wsroom

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/wsroom/wsroom/internal/wire"
)

// Broker connects the Hubs of several processes so that room, user and
// hub-wide sends reach connections on every node (see Options.Broker and
// the redisbroker module for a Redis implementation).
//
// The Hub owns the Broker it is given: it calls Start once from New, then
// Subscribe and Unsubscribe as local interest changes, Publish for every
// room, user and hub-wide send, and Close from Shutdown. Subscribe and
// Unsubscribe calls are serialized by the Hub and never made while it holds
// a lock; Publish is called concurrently by any number of senders.
type Broker interface {
	// Start registers the function that receives every message published
	// (by any node, this one included) on a subscribed topic. deliver is
	// called from one goroutine at a time; payload is read only during the
	// call and may be reused afterwards.
	Start(deliver func(topic string, payload []byte))

	// Publish starts sending payload on each topic and returns without
	// waiting for the network; the Hub delivers the send to its own
	// connections meanwhile, then calls wait exactly once. wait blocks
	// until the outcome is known: nil means the broker accepted payload
	// for every topic; an error means it may not have reached some or all
	// of them. payload is not modified and must not be kept after wait
	// returns.
	Publish(payload []byte, topics ...string) (wait func() error)

	// Subscribe and Unsubscribe add and remove topics from those delivered.
	// They must not wait for the network: a broker that is disconnected
	// records the change and applies it when it reconnects.
	Subscribe(topics ...string) error
	Unsubscribe(topics ...string) error

	// Close stops delivery and releases the broker's connections and
	// goroutines. The Hub calls it once, from Shutdown.
	Close() error
}

// ErrNotPublished is returned (wrapped together with the broker's own
// error; test with errors.Is) by a send that could not be published to
// the other nodes. It is counted in Stats.BrokerErrors. The send was
// delivered to this node's connections, except a broadcast in a room
// whose history a HistoryBroker keeps: every node, this one included,
// delivers those when the broker hands them back with their position, so
// a failed publish reaches no one.
var ErrNotPublished = errors.New("wsroom: delivered on this node only: publish to the broker failed")

// brokerState is the Hub's side of its Broker. Lock order: mu before Hub.mu.
type brokerState struct {
	b Broker

	self  string            // this node's topic (control replies), always subscribed
	async chan func() error // with Options.AsyncPublish: publishes whose outcome is still to read
	stop  chan struct{}     // closed by closeBroker: the completer drains and returns

	mu         sync.Mutex          // serializes Subscribe/Unsubscribe and guards the fields below
	subscribed map[string]struct{} // topics the broker has been asked to deliver
	closed     bool                // Close has been called
}

// startBroker starts the broker, if any. Called by New.
func (h *Hub) startBroker() {
	h.bk.b = h.opts.Broker
	if h.bk.b == nil {
		return
	}
	h.bk.subscribed = make(map[string]struct{})
	h.bk.stop = make(chan struct{})
	// Replies to this node's control requests come on its own topic.
	h.bk.self = nodeTopic(h.node)
	if h.opts.AsyncPublish {
		h.bk.async = make(chan func() error, asyncWindow)
		h.wg.Add(1)
		go h.complete()
	}
	h.startClusterHistory()
	h.bk.b.Start(h.receive)
	h.syncInterest(h.bk.self)
}

// closeBroker closes the broker once. Called by Shutdown.
func (h *Hub) closeBroker() {
	if h.bk.b == nil {
		return
	}
	h.bk.mu.Lock()
	defer h.bk.mu.Unlock()
	if h.bk.closed {
		return
	}
	h.bk.closed = true
	if err := h.bk.b.Close(); err != nil {
		h.opts.Logger.Warn("wsroom: closing the broker", "err", err)
	}
	close(h.bk.stop)
}

// syncInterest makes the broker's subscriptions to topics match the
// current local interest: a topic is subscribed while this node has a
// connection it concerns. Call it, without holding h.mu, after any change
// that may have made a topic's first local member arrive or its last one
// leave. Because calls are serialized and each reads the current state,
// the last call after a burst of changes leaves the right subscriptions.
func (h *Hub) syncInterest(topics ...string) {
	if h.bk.b == nil {
		return
	}
	h.bk.mu.Lock()
	defer h.bk.mu.Unlock()
	if h.bk.closed {
		return
	}
	var sub, unsub []string
	h.mu.RLock()
	for _, t := range topics {
		_, have := h.bk.subscribed[t]
		if want := h.interestedLocked(t); want && !have {
			sub = append(sub, t)
		} else if !want && have {
			unsub = append(unsub, t)
		}
	}
	h.mu.RUnlock()
	h.changeInterest(sub, true)
	h.changeInterest(unsub, false)
}

// changeInterest asks the broker to subscribe to topics (on) or to
// unsubscribe from them, and records the change if it succeeds. Called
// with h.bk.mu held.
func (h *Hub) changeInterest(topics []string, on bool) {
	if len(topics) == 0 {
		return
	}
	change, what := h.bk.b.Subscribe, "subscribe"
	if !on {
		change, what = h.bk.b.Unsubscribe, "unsubscribe"
	}
	if err := change(topics...); err != nil {
		h.brokerError(what, topics[0], err)
		h.opts.Logger.Error("wsroom: broker "+what+" failed", "topics", len(topics), "first", topics[0], "err", err)
		return
	}
	for _, t := range topics {
		if on {
			h.bk.subscribed[t] = struct{}{}
		} else {
			delete(h.bk.subscribed, t)
		}
	}
}

// interestedLocked reports whether this node has a connection topic
// concerns. Called with h.mu held.
func (h *Hub) interestedLocked(topic string) bool {
	switch kind, name := wire.ParseTopic(topic); kind {
	case wire.TopicRoom:
		return h.rooms[name] != nil
	case wire.TopicUser:
		return len(h.users[name]) > 0
	case wire.TopicHub:
		return len(h.conns) > 0
	}
	return topic == h.bk.self // always: replies may come whatever the connections
}

// connTopics returns the topics a connection's arrival or departure may
// change: the hub-wide one, its user's and its rooms'.
func connTopics(id string, rooms []*room) []string {
	t := make([]string, 0, 2+len(rooms))
	t = append(t, wire.TopicAll, wire.UserTopic(id))
	for _, rm := range rooms {
		t = append(t, wire.RoomTopic(rm.name))
	}
	return t
}

// topics returns the topics a send to t is published on.
func (t *target) topics() []string {
	switch {
	case t.all:
		return []string{wire.TopicAll}
	case t.room != "":
		return []string{wire.RoomTopic(t.room)}
	default:
		return wire.UserTopics(t.users)
	}
}

// publish starts publishing m, addressed to t, to the other nodes; the
// caller delivers locally meanwhile, then reads the outcome with result.
// Without a broker it does nothing.
func (h *Hub) publish(m Message, t target) publishing {
	if h.bk.b == nil {
		return publishing{}
	}
	payload, topics := nodeMessage(h.node, m, t)
	if len(topics) == 0 {
		return publishing{}
	}
	return publishing{h, h.bk.b.Publish(payload, topics...)}
}

// nodeMessage encodes m, addressed to t, as node publishes it, and returns
// the topics it goes to (see internal/wire).
func nodeMessage(node wire.NodeID, m Message, t target) (payload []byte, topics []string) {
	topics = t.topics()
	if len(topics) == 0 {
		return nil, nil
	}
	wm := wire.Message{Type: byte(m.Type), Node: node, Sent: time.Now().UnixNano(), Rooms: t.rooms, Data: m.Data}
	if t.byUser {
		wm.Users = t.users
		if wm.Users == nil {
			wm.Users = []string{}
		}
	}
	return wire.Append(nil, &wm), topics
}

// publishing is a publish in flight.
type publishing struct {
	h    *Hub
	wait func() error // nil: nothing was published
}

// result waits for the publish and counts its outcome; a failure wraps
// ErrNotPublished. With Options.AsyncPublish it does not wait: the outcome
// is read in order by the hub's completer, which counts and reports it.
func (p publishing) result() error {
	if p.wait == nil {
		return nil
	}
	if p.h.bk.async != nil {
		select {
		case p.h.bk.async <- p.wait:
			return nil
		case <-p.h.bk.stop:
		}
	}
	return p.h.publishOutcome(p.wait())
}

// publishOutcome counts the outcome of a publish and returns the error a
// sender gets.
func (h *Hub) publishOutcome(err error) error {
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrNotPublished, err)
		h.brokerError("publish", "", err)
		return err
	}
	h.stats.brokerOut.Add(1)
	return nil
}

// asyncWindow bounds the publishes whose outcome Options.AsyncPublish
// leaves to read: a sender that would exceed it waits.
const asyncWindow = 1 << 14

// complete reads the outcomes of asynchronous publishes, in publish
// order, until the broker is closed. It runs on its own goroutine, joined
// by Shutdown.
func (h *Hub) complete() {
	defer h.wg.Done()
	for {
		select {
		case wait := <-h.bk.async:
			h.publishOutcome(wait())
		case <-h.bk.stop:
			for {
				select {
				case wait := <-h.bk.async:
					h.publishOutcome(wait())
				default:
					return
				}
			}
		}
	}
}

// receive is the broker's deliver callback: it decodes a send published by
// another node and delivers it to this node's recipients, which the topic
// names and the message may narrow (see internal/wire).
func (h *Hub) receive(topic string, payload []byte) {
	if h.closed.Load() {
		return
	}
	wm, err := wire.Decode(payload)
	if err != nil {
		h.brokerError("receive", topic, err)
		h.opts.Logger.Warn("wsroom: dropped a malformed broker message", "topic", topic, "bytes", len(payload))
		return
	}
	if wm.Node == h.node {
		return // our own send, already delivered locally
	}
	if wm.Type == wire.Control {
		if err := h.receiveControl(wm.Node, wm.Data); err != nil {
			h.brokerError("receive", topic, err)
		}
		return
	}
	h.stats.brokerLag.observe(time.Duration(time.Now().UnixNano() - wm.Sent))
	var t target
	switch kind, name := wire.ParseTopic(topic); kind {
	case wire.TopicRoom:
		t = target{room: name, users: wm.Users, byUser: wm.Users != nil}
	case wire.TopicUser:
		t = target{users: []string{name}, rooms: wm.Rooms}
	case wire.TopicHub:
		t = target{all: true}
	default:
		h.brokerError("receive", topic, errUnknownTopic)
		h.opts.Logger.Warn("wsroom: dropped a broker message on an unknown topic", "topic", topic)
		return
	}
	p, err := h.prepare(Message{Type: MessageType(wm.Type), Data: wm.Data}, t)
	if err != nil {
		if !errors.Is(err, ErrHubClosed) {
			h.brokerError("receive", topic, err)
			h.opts.Logger.Warn("wsroom: dropped an invalid broker message", "topic", topic, "err", err)
		}
		return
	}
	h.stats.brokerIn.Add(1)
	h.deliverSend(p, t).apply(h) // as send does
}

var errUnknownTopic = errors.New("wsroom: unknown topic")

// brokerError counts a broker failure and tells the Observer.
func (h *Hub) brokerError(op, topic string, err error) {
	h.stats.brokerErrors.Add(1)
	h.observe(BrokerErrorEvent{Op: op, Topic: topic, Err: err})
}
