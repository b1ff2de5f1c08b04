package wsroom

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
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
// error; test with errors.Is) by a send that was delivered to this node's
// connections but could not be published to the other nodes. It is
// counted in Stats.BrokerErrors.
var ErrNotPublished = errors.New("wsroom: delivered on this node only: publish to the broker failed")

// Topics, as the Hub names them to its Broker. A broker may prefix them
// on the wire (redisbroker does).
const (
	topicAll        = "all"
	topicRoomPrefix = "room:"
	topicUserPrefix = "user:"
)

func roomTopic(name string) string { return topicRoomPrefix + name }
func userTopic(id string) string   { return topicUserPrefix + id }

// The wire envelope of a published send:
//
//	version  1 byte   envelopeVersion
//	kind     1 byte   kindRoom … kindUsersSharing
//	type     1 byte   the MessageType
//	node     16 bytes the publishing Hub's random ID (its own echo is ignored)
//	names    for kindRoomUsers (users) and kindUsersSharing (rooms) only:
//	         uvarint count, then count × (uvarint length, bytes)
//	payload  the rest: the message's data, not yet framed
//
// The target room or user is the topic itself; the connection excluded by
// BroadcastExcept is on the sending node, so the envelope does not name it.
// Each send is encoded once, however many topics it goes to, and decoded
// once by each receiving node, which frames it once for its local members.
const (
	envelopeVersion = 1
	nodeIDLen       = 16
	envelopeHeader  = 3 + nodeIDLen
)

// Envelope kinds.
const (
	kindRoom         = 1 // Room.Broadcast: every member
	kindRoomExcept   = 2 // Room.BroadcastExcept: every member (the excluded one is remote)
	kindRoomUsers    = 3 // Room.SendTo: the named users' connections in the room
	kindUsers        = 4 // Hub.SendTo: every connection of the topic's user
	kindAll          = 5 // Hub.Broadcast: every connection
	kindUsersSharing = 6 // Relay's default policy: the topic's user, if it shares one of the named rooms
)

// brokerState is the Hub's side of its Broker. Lock order: mu before Hub.mu.
type brokerState struct {
	b    Broker
	node [nodeIDLen]byte

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
	rand.Read(h.bk.node[:])
	h.bk.subscribed = make(map[string]struct{})
	h.bk.b.Start(h.receive)
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
		h.stats.brokerErrors.Add(1)
		h.opts.Logger.Error("wsroom: broker "+what+" failed", "topics", topics, "err", err)
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
	if name, ok := strings.CutPrefix(topic, topicRoomPrefix); ok {
		return h.rooms[name] != nil
	}
	if id, ok := strings.CutPrefix(topic, topicUserPrefix); ok {
		return len(h.users[id]) > 0
	}
	return topic == topicAll && len(h.conns) > 0
}

// connTopics returns the topics a connection's arrival or departure may
// change: the hub-wide one, its user's and its rooms'.
func connTopics(id string, rooms []*room) []string {
	t := make([]string, 0, 2+len(rooms))
	t = append(t, topicAll, userTopic(id))
	for _, rm := range rooms {
		t = append(t, roomTopic(rm.name))
	}
	return t
}

// publish starts sending m to the other nodes on topics; the caller
// delivers locally meanwhile, then reads the outcome with result. names
// are the users of kindRoomUsers or the rooms of kindUsersSharing.
// Without a broker it does nothing.
func (h *Hub) publish(kind byte, m Message, names []string, topics ...string) publishing {
	if h.bk.b == nil || len(topics) == 0 {
		return publishing{}
	}
	p := appendEnvelope(nil, kind, m.Type, &h.bk.node, names, m.Data)
	return publishing{h, h.bk.b.Publish(p, topics...)}
}

// publishing is a publish in flight.
type publishing struct {
	h    *Hub
	wait func() error // nil: nothing was published
}

// result waits for the publish and counts its outcome. A failure wraps
// ErrNotPublished.
func (p publishing) result() error {
	if p.wait == nil {
		return nil
	}
	if err := p.wait(); err != nil {
		p.h.stats.brokerErrors.Add(1)
		return fmt.Errorf("%w: %w", ErrNotPublished, err)
	}
	p.h.stats.brokerOut.Add(1)
	return nil
}

// userTopics returns the topics of the distinct users in ids.
func userTopics(ids []string) []string {
	t := make([]string, 0, len(ids))
	for _, id := range ids {
		if s := userTopic(id); !slices.Contains(t, s) {
			t = append(t, s)
		}
	}
	return t
}

// receive is the broker's deliver callback: it decodes a send published by
// another node and queues it for the local connections it concerns.
func (h *Hub) receive(topic string, payload []byte) {
	if h.closed.Load() {
		return
	}
	env, ok := parseEnvelope(payload)
	if !ok {
		h.stats.brokerErrors.Add(1)
		h.opts.Logger.Warn("wsroom: dropped a malformed broker message", "topic", topic, "bytes", len(payload))
		return
	}
	if env.node == h.bk.node {
		return // our own send, already delivered locally
	}
	b, err := h.prepare(Message{Type: env.typ, Data: env.data})
	if err != nil {
		if !errors.Is(err, ErrHubClosed) {
			h.stats.brokerErrors.Add(1)
			h.opts.Logger.Warn("wsroom: dropped an invalid broker message", "topic", topic, "err", err)
		}
		return
	}
	h.stats.brokerIn.Add(1)
	buf := getConns()
	h.mu.RLock()
	*buf = h.appendTargetsLocked(*buf, topic, &env)
	h.mu.RUnlock()
	h.fanout(b, *buf, nil)
	putConns(buf)
}

// appendTargetsLocked appends the local recipients of env received on
// topic. A kind that does not match its topic reaches no one.
func (h *Hub) appendTargetsLocked(dst []*Conn, topic string, env *brokerMsg) []*Conn {
	if name, ok := strings.CutPrefix(topic, topicRoomPrefix); ok {
		rm := h.rooms[name]
		switch {
		case rm == nil:
		case env.kind == kindRoom || env.kind == kindRoomExcept:
			dst = append(dst, rm.members...)
		case env.kind == kindRoomUsers:
			dst = h.appendUserConns(dst, env.names, rm)
		}
		return dst
	}
	if id, ok := strings.CutPrefix(topic, topicUserPrefix); ok {
		switch env.kind {
		case kindUsers:
			dst = append(dst, h.users[id]...)
		case kindUsersSharing:
			if h.sharesRoomLocked(id, env.names) {
				dst = append(dst, h.users[id]...)
			}
		}
		return dst
	}
	if topic == topicAll && env.kind == kindAll {
		dst = append(dst, h.conns...)
	}
	return dst
}

// sharesRoomLocked reports whether a local connection of user id is in
// one of rooms.
func (h *Hub) sharesRoomLocked(id string, rooms []string) bool {
	for _, c := range h.users[id] {
		for _, rm := range c.rooms {
			if slices.Contains(rooms, rm.name) {
				return true
			}
		}
	}
	return false
}

// sendToSharing is Relay's default-policy direct message when a broker is
// set: every node (this one included) delivers m to its connections of
// each user in ids, provided one of them shares a room with from. The
// check has to be made where the recipient is connected.
func (h *Hub) sendToSharing(m Message, from *Conn, ids []string) error {
	b, err := h.prepare(m)
	if err != nil {
		return err
	}
	rooms := from.Rooms()
	pub := h.publish(kindUsersSharing, m, rooms, userTopics(ids)...)
	buf := getConns()
	h.mu.RLock()
	for i, id := range ids {
		if !slices.Contains(ids[:i], id) && h.sharesRoomLocked(id, rooms) {
			*buf = append(*buf, h.users[id]...)
		}
	}
	h.mu.RUnlock()
	h.fanout(b, *buf, nil)
	putConns(buf)
	return pub.result()
}

// brokerMsg is a decoded broker message. data and names refer to the
// received payload.
type brokerMsg struct {
	kind  byte
	typ   MessageType
	node  [nodeIDLen]byte
	names []string
	data  []byte
}

// appendEnvelope appends the wire form of a send to dst.
func appendEnvelope(dst []byte, kind byte, typ MessageType, node *[nodeIDLen]byte, names []string, data []byte) []byte {
	n := envelopeHeader + len(data)
	for _, s := range names {
		n += binary.MaxVarintLen64 + len(s)
	}
	dst = slices.Grow(dst, n+binary.MaxVarintLen64)
	dst = append(dst, envelopeVersion, kind, byte(typ))
	dst = append(dst, node[:]...)
	if kind == kindRoomUsers || kind == kindUsersSharing {
		dst = binary.AppendUvarint(dst, uint64(len(names)))
		for _, s := range names {
			dst = binary.AppendUvarint(dst, uint64(len(s)))
			dst = append(dst, s...)
		}
	}
	return append(dst, data...)
}

// parseEnvelope decodes p. ok is false for anything malformed, including
// an unknown version. It allocates only the names, at most one per byte
// actually present.
func parseEnvelope(p []byte) (env brokerMsg, ok bool) {
	if len(p) < envelopeHeader || p[0] != envelopeVersion {
		return env, false
	}
	env.kind, env.typ = p[1], MessageType(p[2])
	if env.kind < kindRoom || env.kind > kindUsersSharing || (env.typ != TextMessage && env.typ != BinaryMessage) {
		return env, false
	}
	copy(env.node[:], p[3:envelopeHeader])
	p = p[envelopeHeader:]
	if env.kind == kindRoomUsers || env.kind == kindUsersSharing {
		count, n := binary.Uvarint(p)
		if n <= 0 || count > uint64(len(p)-n) {
			return env, false
		}
		p = p[n:]
		env.names = make([]string, 0, count)
		for range count {
			l, n := binary.Uvarint(p)
			if n <= 0 || l > uint64(len(p)-n) {
				return env, false
			}
			env.names = append(env.names, string(p[n:n+int(l)]))
			p = p[n+int(l):]
		}
	}
	env.data = p
	return env, true
}
