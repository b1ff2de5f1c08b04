package wsroom

// Rooms and the index: which connections are in which room, which belong
// to which user, and, from those, who receives a send (target).

import (
	"errors"
	"iter"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/wsroom/wsroom/internal/wire"
)

// MaxRoomNameLen is the longest room name, in bytes, that Join accepts
// (the relay's limit too).
const MaxRoomNameLen = 256

// Errors returned by Join.
var (
	// ErrRoomName is returned for an empty room name or one longer than
	// MaxRoomNameLen.
	ErrRoomName = errors.New("wsroom: room name must be 1 to " + strconv.Itoa(MaxRoomNameLen) + " bytes")
	// ErrTooManyRooms is returned when the connection is in
	// Options.MaxRoomsPerConn rooms already.
	ErrTooManyRooms = errors.New("wsroom: connection is in too many rooms (Options.MaxRoomsPerConn)")
)

// room is the membership of one room. Guarded by Hub.mu.
type room struct {
	name    string
	members []*Conn // members[:active] get broadcasts in their queues; members[active:] are parked (park.go)
	active  int
	index   map[*Conn]membership
	log     *backlog // the parked members' backlog; nil while none is parked
}

// membership locates a connection in a room: its position in the room's
// members and the room's slot in the connection's rooms.
type membership struct {
	member, slot int
}

// Room addresses a named room of a Hub. A Room is a cheap handle: it is
// valid whether or not the room has members, and rooms exist only while
// they have members (an empty room is forgotten). All methods are safe for
// concurrent use.
type Room struct {
	hub  *Hub
	name string
}

// Room returns a handle for the room called name.
func (h *Hub) Room(name string) *Room { return &Room{hub: h, name: name} }

// Name returns the room's name.
func (r *Room) Name() string { return r.name }

// Len returns the number of connections in the room on this Hub. With
// a Broker it stays node-local: members connected to other nodes are not
// counted (nor listed by Members).
func (r *Room) Len() int {
	r.hub.mu.RLock()
	defer r.hub.mu.RUnlock()
	if rm := r.hub.rooms[r.name]; rm != nil {
		return len(rm.members)
	}
	return 0
}

// Members iterates over a snapshot of the room's connections, taken when
// iteration starts. Connections may close while the loop runs.
func (r *Room) Members() iter.Seq[*Conn] {
	return func(yield func(*Conn) bool) {
		r.hub.mu.RLock()
		var members []*Conn
		if rm := r.hub.rooms[r.name]; rm != nil {
			members = slices.Clone(rm.members)
		}
		r.hub.mu.RUnlock()
		for _, c := range members {
			if !yield(c) {
				return
			}
		}
	}
}

// Broadcast queues m for every connection in the room. The frame is
// encoded once and shared. It never blocks on a peer; recipients whose
// queue overflows are closed as slow consumers. It returns an error only
// for a malformed message, after Shutdown, or, with a Broker, when the
// message could not be published to the other nodes (ErrNotPublished; it
// reached this node's members, unless a HistoryBroker keeps the room's
// history, see ErrNotPublished). The same holds for every room, user and
// hub-wide send.
func (r *Room) Broadcast(m Message) error { return r.hub.send(m, target{room: r.name}) }

// BroadcastExcept is Broadcast to every connection in the room except one
// (typically the sender). except may be nil.
func (r *Room) BroadcastExcept(m Message, except *Conn) error {
	return r.hub.send(m, target{room: r.name, except: except})
}

// SendTo queues m for the connections of the given users that are in this
// room. Users not in the room receive nothing. The cost is proportional to
// the number of users named, not to the size of the room.
func (r *Room) SendTo(m Message, userIDs ...string) error {
	return r.hub.send(m, target{room: r.name, users: userIDs, byUser: true})
}

// Rooms returns the names of the rooms that have members on this Hub, in
// no particular order. It costs O(rooms). With a Broker it stays
// node-local.
func (h *Hub) Rooms() []string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	names := make([]string, 0, len(h.rooms))
	for name := range h.rooms {
		names = append(names, name)
	}
	return names
}

// UserConns returns the open connections of the user with this ID on this
// Hub (none if the user is not connected).
func (h *Hub) UserConns(userID string) []*Conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return slices.Clone(h.users[userID])
}

// Connected reports whether the user with this ID has an open connection
// on this Hub.
func (h *Hub) Connected(userID string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.users[userID]) > 0
}

// target says who receives a send: everyone, a room's members, or users'
// connections, optionally narrowed. The same target selects the
// recipients of a local send and, on every other node, of the published
// copy (see broker.go).
type target struct {
	all    bool     // every connection
	room   string   // the room's members ("" for none)
	users  []string // with room and byUser: only these users' members; without room: these users' connections
	byUser bool     // room send narrowed to users
	rooms  []string // user send narrowed to the users with a connection in one of these rooms (nil: no narrowing)
	except *Conn    // this connection is left out (it is on the sending node)
}

// appendRecipientsLocked appends t's recipients on this node to dst.
// Called with h.mu held.
func (h *Hub) appendRecipientsLocked(dst []*Conn, t target) []*Conn {
	switch {
	case t.all:
		return append(dst, h.conns...)
	case t.room != "":
		rm := h.rooms[t.room]
		if rm == nil {
			return dst
		}
		if t.byUser {
			return h.appendUserConns(dst, t.users, rm, nil)
		}
		return append(dst, rm.members[:rm.active]...)
	default:
		return h.appendUserConns(dst, t.users, nil, t.rooms)
	}
}

// appendUserConns appends the connections of userIDs (each user once),
// restricted to members of rm when rm is not nil. When inRooms is not nil
// it keeps only the users with a connection in one of the rooms so named,
// and then all of their connections. Called with h.mu held.
func (h *Hub) appendUserConns(dst []*Conn, userIDs []string, rm *room, inRooms []string) []*Conn {
	var seen map[string]struct{} // only for long lists; short ones scan
	if len(userIDs) > 16 {
		seen = make(map[string]struct{}, len(userIDs))
	}
	var among []*room // the rooms of inRooms that exist here
	if inRooms != nil {
		for _, name := range inRooms {
			if r := h.rooms[name]; r != nil {
				among = append(among, r)
			}
		}
		if len(among) == 0 {
			return dst
		}
	}
	for i, id := range userIDs {
		if seen != nil {
			if _, dup := seen[id]; dup {
				continue
			}
			seen[id] = struct{}{}
		} else if slices.Contains(userIDs[:i], id) {
			continue
		}
		conns := h.users[id]
		if among != nil && !slices.ContainsFunc(conns, func(c *Conn) bool { return slices.ContainsFunc(among, c.inRoomLocked) }) {
			continue
		}
		for _, c := range conns {
			if rm == nil || c.inRoomLocked(rm) {
				dst = append(dst, c)
			}
		}
	}
	return dst
}

// Join adds the connection to the room called name (creating it). Joining
// a room twice is a no-op. It returns ErrRoomName for a name that is empty,
// over MaxRoomNameLen bytes or not UTF-8, ErrTooManyRooms beyond
// Options.MaxRoomsPerConn, and ErrClosed if the connection is gone. It
// costs O(1), however many rooms the connection or the room holds.
//
// A wsroom.v1 client is told (a "joined" message). In a room with history,
// if its handshake asked to resume the room (docs/protocol.md), it first
// gets the broadcasts it missed, then live ones.
func (c *Conn) Join(name string) error { return c.join(name, joinOpts{}) }

// Leave removes the connection from the room called name. Leaving a room
// the connection is not in is a no-op. It costs O(1) amortized. A
// wsroom.v1 client is told (a "left" message).
func (c *Conn) Leave(name string) error { return c.leave(name, "") }

// validRoomName reports whether Join accepts name.
func validRoomName(name string) bool {
	return name != "" && len(name) <= MaxRoomNameLen && utf8.ValidString(name)
}

// joinOpts are the details of a join asked for by a wsroom.v1 client.
type joinOpts struct {
	from    *Position // resume after this position (nil: see Hub.resuming)
	prev    string    // ConnID of the client's previous connection
	id      string    // the request's id, echoed in the answer
	request bool      // asked for by the client (answered even if already in)

	seedLost lostReason // why the broker's history could not serve from (see seedForJoin)
}

func (c *Conn) join(name string, o joinOpts) error {
	if !validRoomName(name) {
		return ErrRoomName
	}
	h := c.hub
	// A room with history: hold its lock, so that no broadcast of the room
	// comes between the messages replayed and the live ones.
	hs := h.lockHistory(name)
	unlock := func() {} // the history's lock is held until the membership is in place, not during callbacks
	if hs != nil {
		unlock = hs.mu.Unlock
		if c.proto == protoV1 && h.ch.b != nil {
			o.seedLost = h.seedForJoin(c, hs, name, &o)
		}
	}
	h.mu.Lock()
	if c.removed {
		h.mu.Unlock()
		unlock()
		return ErrClosed
	}
	rm := h.rooms[name]
	if rm != nil && c.inRoomLocked(rm) {
		h.mu.Unlock()
		unlock()
		if o.request {
			c.sendControl(joinedHeader(name, nil, -1, "", o.id))
		}
		return nil
	}
	if most := h.opts.MaxRoomsPerConn; most > 0 && int(c.roomCount) >= most {
		h.mu.Unlock()
		unlock()
		return ErrTooManyRooms
	}
	created := rm == nil
	if created {
		rm = &room{name: name, index: make(map[*Conn]membership)}
		h.rooms[name] = rm
	}
	if c.park != nil {
		h.unparkLocked(c) // it pulls what its backlogs hold, then parks again if still behind
	}
	rm.index[c] = membership{member: len(rm.members), slot: len(c.rooms)}
	rm.members = append(rm.members, c)
	rm.unparkMember(c) // new members are active
	c.rooms = append(c.rooms, rm)
	c.roomCount++
	count := -1
	var info []byte
	if h.watchesPresence() {
		count, info = h.userCountLocked(rm, c.id), h.infoLocked(c.id)
	}
	if c.proto == protoV1 {
		if o.from == nil {
			if rs := h.resuming[c]; rs != nil {
				if pos, ok := rs.rooms[name]; ok {
					o.from, o.prev = &pos, rs.prev
				}
			}
		}
		c.sendJoinedLocked(name, hs, o)
	}
	h.mu.Unlock()
	unlock()
	if created {
		h.syncInterest(wire.RoomTopic(name))
	}
	c.presence(h.opts.OnJoin, "OnJoin", name)
	if count > 0 {
		h.presenceChanged(name, c.id, count-1, count, info)
	}
	return nil
}

// seedForJoin makes the node's copy of the broker's history of room able
// to serve a wsroom.v1 join: a copy that does not follow the room yet, or
// does not reach back to the position the client resumes from, is read
// from the broker — a round trip, with only the room's history lock held.
// It returns why the position cannot be resumed, if it cannot; then the
// copy holds the broker's newest messages, which the client gets. o.from
// is filled from the handshake's resume positions.
func (h *Hub) seedForJoin(c *Conn, hs *history, name string, o *joinOpts) lostReason {
	if o.from == nil {
		h.mu.RLock()
		if rs := h.resuming[c]; rs != nil {
			if pos, ok := rs.rooms[name]; ok {
				o.from, o.prev = &pos, rs.prev
			}
		}
		h.mu.RUnlock()
	}
	from := o.from
	if hs.synced && (from == nil || (from.Epoch == hs.epoch && from.Offset+1 >= hs.first)) {
		if from != nil && from.Offset > hs.last().Offset {
			// The client saw more than this node has: the node missed
			// messages it has not noticed yet.
			h.fillGapLocked(hs, name)
		}
		return ""
	}
	since := Position{} // the newest messages
	if from != nil {
		since = *from
	}
	lost, err := h.seedLocked(hs, name, since)
	if err == nil && lost != "" {
		// The client gets the newest messages, after the gap.
		_, err = h.seedLocked(hs, name, Position{})
	}
	if err != nil {
		h.brokerError("history", wire.RoomTopic(name), err)
		return lostUnavailable
	}
	if from == nil {
		return ""
	}
	return lost
}

// sendJoinedLocked tells a wsroom.v1 client it joined the room called
// name: after the broadcasts it missed, when it asked to resume. Called
// with h.mu and, for a room with history, hs.mu held.
func (c *Conn) sendJoinedLocked(name string, hs *history, o joinOpts) {
	if hs == nil {
		lost := lostReason("")
		if o.from != nil {
			lost = lostNoHistory
		}
		c.sendControl(joinedHeader(name, nil, -1, lost, o.id))
		return
	}
	last := hs.last()
	if o.from == nil {
		c.sendControl(joinedHeader(name, &last, -1, "", o.id))
		return
	}
	var entries []histMsg
	var first uint64
	lost := o.seedLost
	switch {
	case lost == "":
		entries, first, lost = hs.since(*o.from, c.hub.now())
	case lost != lostUnavailable:
		// The broker's history could not serve o.from; the node's copy
		// holds the newest messages it keeps (see seedForJoin).
		entries, first = hs.newest(hs.n), hs.first
	}
	replayed := 0
	for i, e := range entries {
		if e.except != "" && e.except == o.prev {
			continue // left out on purpose when it was sent
		}
		pos := Position{Epoch: hs.epoch, Offset: first + uint64(i)}
		f := appendV1Frame(nil, e.op, appendRoomHeader(nil, name, &pos), e.data)
		if _, err := c.enqueue(&f, false); err != nil {
			return // closed, or a slow consumer: nothing more to say
		}
		replayed++
	}
	c.hub.stats.historyReplayed.Add(uint64(replayed))
	if lost != "" {
		c.hub.stats.historyLost.Add(1)
		c.sendControl(joinedHeader(name, &last, -1, lost, o.id))
		return
	}
	c.hub.stats.historyResumed.Add(1)
	c.sendControl(joinedHeader(name, &last, replayed, "", o.id))
}

// leave removes the connection from the room; id answers a request.
func (c *Conn) leave(name, id string) error {
	h := c.hub
	h.mu.Lock()
	rm := h.rooms[name]
	if rm == nil || !c.inRoomLocked(rm) {
		h.mu.Unlock()
		if id != "" {
			c.sendControl(leftHeader(name, id))
		}
		return nil
	}
	h.removeMemberLocked(rm, c)
	emptied := len(rm.members) == 0
	if c.proto == protoV1 {
		c.sendControl(leftHeader(name, id))
	}
	count := -1
	var info []byte
	if h.watchesPresence() {
		count, info = h.userCountLocked(rm, c.id), h.infoLocked(c.id)
	}
	h.mu.Unlock()
	if emptied {
		h.syncInterest(wire.RoomTopic(name))
		h.unfollowHistory(name)
	}
	c.presence(h.opts.OnLeave, "OnLeave", name)
	if count >= 0 {
		h.presenceChanged(name, c.id, count+1, count, info)
	}
	return nil
}

// Rooms returns the names of the rooms the connection is in, in join order.
func (c *Conn) Rooms() []string {
	c.hub.mu.RLock()
	defer c.hub.mu.RUnlock()
	names := make([]string, 0, c.roomCount)
	for _, rm := range c.rooms {
		if rm != nil {
			names = append(names, rm.name)
		}
	}
	return names
}

// InRoom reports whether the connection is in the room called name.
func (c *Conn) InRoom(name string) bool {
	c.hub.mu.RLock()
	defer c.hub.mu.RUnlock()
	rm := c.hub.rooms[name]
	return rm != nil && c.inRoomLocked(rm)
}

// inRoomLocked reports whether c is a member of rm. Called with h.mu held.
func (c *Conn) inRoomLocked(rm *room) bool {
	_, ok := rm.index[c]
	return ok
}

// presence runs OnJoin or OnLeave, recovering panics.
func (c *Conn) presence(f func(*Room, *Conn), name, roomName string) {
	if f == nil {
		return
	}
	defer c.recoverCallback(name, nil)
	f(c.hub.Room(roomName), c)
}

// removeMemberLocked removes c from rm, forgetting rm once it is empty.
// Both sides cost O(1): c is swapped to the end of rm's members (keeping
// the active and parked parts apart), and c's slot for rm is cleared, the
// slots being compacted (which keeps the join order) once at least half
// of them are empty. A parked c is unparked first: what the room's
// backlog holds for it goes to its queue, as it would have had it not
// been parked.
func (h *Hub) removeMemberLocked(rm *room, c *Conn) {
	ms, ok := rm.index[c]
	if !ok {
		return
	}
	if c.park != nil {
		h.unparkLocked(c)
	}
	rm.parkMember(c) // now at members[active]
	last := len(rm.members) - 1
	rm.swapMembers(rm.index[c].member, last)
	rm.members[last] = nil
	rm.members = rm.members[:last]
	delete(rm.index, c)
	if len(rm.members) == 0 {
		delete(h.rooms, rm.name)
	}
	c.rooms[ms.slot] = nil
	c.roomCount--
	if c.roomCount == 0 {
		c.rooms = nil
	} else if int(c.roomCount) <= len(c.rooms)/2 {
		c.compactRoomsLocked()
	}
}

// swapMembers swaps rm.members[i] and rm.members[j] and their index.
func (rm *room) swapMembers(i, j int) {
	if i == j {
		return
	}
	a, b := rm.members[i], rm.members[j]
	rm.members[i], rm.members[j] = b, a
	ma, mb := rm.index[a], rm.index[b]
	ma.member, mb.member = j, i
	rm.index[a], rm.index[b] = ma, mb
}

// parkMember moves an active member to the parked part (a no-op for a
// parked one).
func (rm *room) parkMember(c *Conn) {
	if i := rm.index[c].member; i < rm.active {
		rm.swapMembers(i, rm.active-1)
		rm.active--
	}
}

// unparkMember moves a parked member to the active part (a no-op for an
// active one).
func (rm *room) unparkMember(c *Conn) {
	if i := rm.index[c].member; i >= rm.active {
		rm.swapMembers(i, rm.active)
		rm.active++
	}
}

// compactRoomsLocked drops the empty slots of c.rooms, keeping the order,
// and updates the slots the rooms record.
func (c *Conn) compactRoomsLocked() {
	live := c.rooms[:0]
	for _, rm := range c.rooms {
		if rm != nil {
			ms := rm.index[c]
			ms.slot = len(live)
			rm.index[c] = ms
			live = append(live, rm)
		}
	}
	clear(c.rooms[len(live):])
	c.rooms = live
}

// liveRooms returns c's rooms (c.rooms without its empty slots). Called
// with h.mu held; the result is a new slice.
func (c *Conn) liveRoomsLocked() []*room {
	rooms := make([]*room, 0, c.roomCount)
	for _, rm := range c.rooms {
		if rm != nil {
			rooms = append(rooms, rm)
		}
	}
	return rooms
}
