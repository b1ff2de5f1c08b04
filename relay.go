package wsroom

import (
	"errors"
	"slices"

	"github.com/wsroom/wsroom/internal/envelope"
)

// RelayTarget is what a client's envelope addresses: a room, users, or
// the named users' connections within a room.
type RelayTarget struct {
	Room  string   // "" when the envelope names no room
	Users []string // nil when the envelope names no users; deduplicated
}

// RelayOptions configures Relay.
type RelayOptions struct {
	// Authorize decides whether from may address to. A non-nil error
	// refuses the envelope, and its text is sent back to the sender.
	// Default: the sending connection must be a member of the named room,
	// and every named user must have a connection in at least one room the
	// sending connection is in. (Another connection of the same user does
	// not lend its rooms.) With Options.Broker set, the named users may be
	// connected to other nodes, so the default policy checks them where
	// they are: each node delivers a direct message to its connections of
	// a named user only if one of them is in a room the sending connection
	// is in; the sender gets no error for a user who shares no room.
	Authorize func(from *Conn, to RelayTarget) error

	// MaxRecipients bounds the users one envelope may name. Default 100.
	MaxRecipients int
}

// Relay returns an OnMessage handler for clients that address each other.
// Each inbound text message must be a JSON envelope:
//
//	{"to":["bob","carol"],"data":…}   every connection of bob and carol
//	{"room":"lobby","data":…}         everyone in lobby but the sender
//	{"room":"lobby","to":["bob"],"data":…}  bob's connections in lobby
//
// with an optional "id" string. After Authorize allows it, the recipients
// receive {"from":"<sender's user ID>","room":"lobby","data":…}: from is
// stamped by the server from Identify, so no client can impersonate
// another, and the recipient list is not revealed. The sender receives
// {"error":"…","id":…} for a malformed, refused or undeliverable envelope.
// data is passed through as the client wrote it.
//
// Relay is off unless installed: set Options.OnMessage to it, or call it
// from your own OnMessage for the messages you want relayed.
func Relay(opts RelayOptions) func(c *Conn, m Message) {
	authorize := opts.Authorize
	if authorize == nil {
		authorize = shareRoom
	}
	return func(c *Conn, m Message) {
		if m.Type != TextMessage {
			c.Send(relayError("relay envelopes are JSON text messages", ""))
			return
		}
		env, err := envelope.Parse(m.Data, opts.MaxRecipients)
		if err != nil {
			c.Send(relayError(err.Error(), env.ID)) // Parse keeps a valid "id" read before the problem
			return
		}
		target := RelayTarget{Room: env.Room, Users: env.To}
		if err := authorize(c, target); err != nil {
			c.Send(relayError("forbidden: "+err.Error(), env.ID))
			return
		}
		out := Message{Type: TextMessage, Data: envelope.AppendRelay(nil, c.ID(), env.Room, env.Data)}
		h := c.hub
		switch {
		case env.Room != "" && len(env.To) > 0:
			err = h.Room(env.Room).SendTo(out, env.To...)
		case env.Room != "":
			err = h.Room(env.Room).BroadcastExcept(out, c)
		case opts.Authorize == nil && h.bk.b != nil:
			err = h.sendToSharing(out, c, env.To) // the default policy, checked on each node
		default:
			err = h.SendTo(out, env.To...)
		}
		if err != nil {
			c.Send(relayError(err.Error(), env.ID))
		}
	}
}

func relayError(reason, id string) Message {
	return Message{Type: TextMessage, Data: envelope.AppendError(nil, reason, id)}
}

// errNotMember and errNoSharedRoom are the default policy's refusals.
var (
	errNotMember    = errors.New("not a member of the room")
	errNoSharedRoom = errors.New("no shared room with a recipient")
)

// shareRoom is the default relay policy: the sender must be in the room,
// and every named user must share a room with the sender.
func shareRoom(from *Conn, to RelayTarget) error {
	h := from.hub
	h.mu.RLock()
	defer h.mu.RUnlock()
	if to.Room != "" && !slices.ContainsFunc(from.rooms, func(rm *room) bool { return rm.name == to.Room }) {
		return errNotMember
	}
	if h.bk.b != nil {
		return nil // users are checked on their nodes: see Relay's default case
	}
	for _, id := range to.Users {
		shared := false
		for _, c := range h.users[id] {
			for _, rm := range c.rooms {
				if from.inRoomLocked(rm) {
					shared = true
					break
				}
			}
		}
		if !shared {
			return errNoSharedRoom
		}
	}
	return nil
}
