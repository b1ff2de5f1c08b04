package wsroom

import (
	"crypto/rand"
	"fmt"

	"github.com/wsroom/wsroom/internal/wire"
)

// Emitter publishes to the rooms and users of a cluster of Hubs from a
// process that has no Hub and no connections: a cron job, a worker,
// another service. Its sends reach the connections of every node, in the
// format Hubs publish in, exactly as if a Hub had sent them (a relay
// message's "from", if any, is for the caller to put in the data).
//
// Give it a Broker of the same kind and configuration (address, prefix)
// as the Hubs'. All methods are safe for concurrent use.
type Emitter struct {
	b    Broker
	node wire.NodeID
	opts EmitterOptions
}

// EmitterOptions configures an Emitter.
type EmitterOptions struct {
	// History is the Hubs' Options.History. With a HistoryBroker, a
	// RoomBroadcast to a room that keeps history enters the room's history
	// like a Hub's broadcast. Default nil: no room keeps history.
	History func(room string) History
}

// NewEmitter starts b and returns an Emitter that publishes through it.
// The Emitter owns b: Close closes it. It subscribes to nothing.
func NewEmitter(b Broker, opts EmitterOptions) *Emitter {
	e := &Emitter{b: b, opts: opts}
	rand.Read(e.node[:])
	if hb, ok := b.(HistoryBroker); ok {
		hb.StartHistory(func(string, Position, []byte) {})
	}
	b.Start(func(string, []byte) {})
	return e
}

// Broadcast sends m to every connection of every Hub.
func (e *Emitter) Broadcast(m Message) error { return e.emit(m, target{all: true}) }

// SendTo sends m to every connection of the given users, wherever they are
// connected.
func (e *Emitter) SendTo(m Message, userIDs ...string) error {
	return e.emit(m, target{users: userIDs})
}

// RoomBroadcast sends m to every member of the room called room.
func (e *Emitter) RoomBroadcast(room string, m Message) error {
	return e.emit(m, target{room: room})
}

// RoomSendTo sends m to the connections of the given users that are in
// the room called room.
func (e *Emitter) RoomSendTo(room string, m Message, userIDs ...string) error {
	return e.emit(m, target{room: room, users: userIDs, byUser: true})
}

// Close closes the broker.
func (e *Emitter) Close() error { return e.b.Close() }

func (e *Emitter) emit(m Message, t target) error {
	if err := m.check(); err != nil {
		return err
	}
	payload, topics := nodeMessage(e.node, m, t)
	if len(topics) == 0 {
		return nil
	}
	if hb, ok := e.b.(HistoryBroker); ok && t.room != "" && !t.byUser && e.opts.History != nil {
		if limits := e.opts.History(t.room); limits.Messages > 0 && validRoomName(t.room) {
			if _, err := hb.PublishHistory(topics[0], payload, limits.withDefaults())(); err != nil {
				return fmt.Errorf("wsroom: emit: %w", err)
			}
			return nil
		}
	}
	if err := e.b.Publish(payload, topics...)(); err != nil {
		return fmt.Errorf("wsroom: emit: %w", err)
	}
	return nil
}
