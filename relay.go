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
	// sending connection is in (another connection of the same user does
	// not lend its rooms); such a user then gets the message on all of its
	// connections. With Options.Broker set, the named users may be
	// connected to other nodes, so the check is made where they are: each
	// node delivers to its connections of a named user if one of them is
	// in a room the sending connection is in; the sender gets no error for
	// a user who shares no room.
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
		if err := authorize(c, RelayTarget{Room: env.Room, Users: env.To}); err != nil {
			c.Send(relayError("forbidden: "+err.Error(), env.ID))
			return
		}
		out := Message{Type: TextMessage, Data: envelope.AppendRelay(nil, c.UserID(), env.Room, env.Data)}
		t := target{room: env.Room, users: env.To, byUser: env.Room != "" && len(env.To) > 0}
		switch {
		case env.Room != "" && !t.byUser:
			t.except = c
		case env.Room == "" && opts.Authorize == nil && c.hub.bk.b != nil:
			// The default policy, checked on every node: the users who
			// share a room with the sender there. (Without a broker
			// shareRoom has checked every user already.) This costs
			// O(the sender's rooms) per envelope.
			t.rooms = c.Rooms()
		}
		err = c.hub.send(out, t)
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
// and, without a broker, every named user must share a room with the
// sender here (with one, Relay narrows delivery to users who share a room
// with the sender, on every node).
func shareRoom(from *Conn, to RelayTarget) error {
	h := from.hub
	h.mu.RLock()
	defer h.mu.RUnlock()
	if to.Room != "" {
		if rm := h.rooms[to.Room]; rm == nil || !from.inRoomLocked(rm) {
			return errNotMember
		}
	}
	if h.bk.b != nil {
		return nil
	}
	for _, id := range to.Users {
		if !slices.ContainsFunc(h.users[id], func(c *Conn) bool { return shareARoomLocked(from, c) }) {
			return errNoSharedRoom
		}
	}
	return nil
}

// shareARoomLocked reports whether a and b are in a common room. It
// looks through the rooms of the one in fewer. Called with h.mu held.
func shareARoomLocked(a, b *Conn) bool {
	if a.roomCount > b.roomCount {
		a, b = b, a
	}
	for _, rm := range a.rooms {
		if rm != nil && b.inRoomLocked(rm) {
			return true
		}
	}
	return false
}
