package wsroom

import (
	"iter"
	"runtime"
	"slices"
	"sync"
)

// parallelFanout is the recipient count above which a send is split
// across GOMAXPROCS goroutines.
const parallelFanout = 4096

// room is the membership of one room. Guarded by Hub.mu.
type room struct {
	name    string
	members []*Conn
	index   map[*Conn]int // position in members
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
// message reached this node's members but could not be published to the
// other nodes (ErrNotPublished). The same holds for every room, user and
// hub-wide send below.
func (r *Room) Broadcast(m Message) error { return r.BroadcastExcept(m, nil) }

// BroadcastExcept is Broadcast to every connection in the room except one
// (typically the sender). except may be nil.
func (r *Room) BroadcastExcept(m Message, except *Conn) error {
	p, err := r.hub.prepare(m)
	if err != nil {
		return err
	}
	h := r.hub
	kind := byte(kindRoom)
	if except != nil {
		kind = kindRoomExcept
	}
	pub := h.publish(kind, m, nil, roomTopic(r.name))
	buf := getConns()
	h.mu.RLock()
	if rm := h.rooms[r.name]; rm != nil {
		*buf = append(*buf, rm.members...)
	}
	h.mu.RUnlock()
	h.fanout(p, *buf, except)
	putConns(buf)
	return pub.result()
}

// SendTo queues m for the connections of the given users that are in this
// room. Users not in the room receive nothing. The cost is proportional to
// the number of users named, not to the size of the room.
func (r *Room) SendTo(m Message, userIDs ...string) error {
	p, err := r.hub.prepare(m)
	if err != nil {
		return err
	}
	h := r.hub
	pub := h.publish(kindRoomUsers, m, userIDs, roomTopic(r.name))
	buf := getConns()
	h.mu.RLock()
	if rm := h.rooms[r.name]; rm != nil {
		*buf = h.appendUserConns(*buf, userIDs, rm)
	}
	h.mu.RUnlock()
	h.fanout(p, *buf, nil)
	putConns(buf)
	return pub.result()
}

// SendTo queues m for every connection of the given users, whatever rooms
// they are in, and for no one else. Naming a user twice delivers once.
// The cost is proportional to the number of users named.
func (h *Hub) SendTo(m Message, userIDs ...string) error {
	p, err := h.prepare(m)
	if err != nil {
		return err
	}
	pub := h.publish(kindUsers, m, nil, userTopics(userIDs)...)
	buf := getConns()
	h.mu.RLock()
	*buf = h.appendUserConns(*buf, userIDs, nil)
	h.mu.RUnlock()
	h.fanout(p, *buf, nil)
	putConns(buf)
	return pub.result()
}

// Broadcast queues m for every connection of the Hub.
func (h *Hub) Broadcast(m Message) error {
	p, err := h.prepare(m)
	if err != nil {
		return err
	}
	pub := h.publish(kindAll, m, nil, topicAll)
	buf := getConns()
	h.mu.RLock()
	*buf = append(*buf, h.conns...)
	h.mu.RUnlock()
	h.fanout(p, *buf, nil)
	putConns(buf)
	return pub.result()
}

// prepare encodes m once for a fan-out (and compresses it at most once
// per compression setting, when a recipient first needs it).
func (h *Hub) prepare(m Message) (prepared, error) {
	if h.closed.Load() {
		return prepared{}, ErrHubClosed
	}
	return m.prepare(h)
}

// appendUserConns appends the connections of userIDs (each user once),
// restricted to members of rm when rm is not nil. Called with h.mu held.
func (h *Hub) appendUserConns(dst []*Conn, userIDs []string, rm *room) []*Conn {
	var seen map[string]struct{} // only for long lists; short ones scan
	if len(userIDs) > 16 {
		seen = make(map[string]struct{}, len(userIDs))
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
		for _, c := range h.users[id] {
			if rm == nil || c.inRoomLocked(rm) {
				dst = append(dst, c)
			}
		}
	}
	return dst
}

// fanout queues the prepared message pm for every connection in conns
// except one. Large fan-outs are split across cores; the goroutines are
// joined before it returns.
func (h *Hub) fanout(pm prepared, conns []*Conn, except *Conn) {
	p := runtime.GOMAXPROCS(0)
	if len(conns) < h.parallelMin || p == 1 {
		h.enqueueAll(pm, conns, except)
		return
	}
	var wg sync.WaitGroup
	chunk := (len(conns) + p - 1) / p
	for lo := 0; lo < len(conns); lo += chunk {
		part := conns[lo:min(lo+chunk, len(conns))]
		wg.Go(func() { h.enqueueAll(pm, part, except) })
	}
	wg.Wait()
}

func (h *Hub) enqueueAll(pm prepared, conns []*Conn, except *Conn) {
	for _, c := range conns {
		if c != except {
			c.enqueue(pm.frameFor(c), false)
		}
	}
}

// Join adds the connection to the room called name (creating it). Joining
// a room twice is a no-op. It returns ErrClosed if the connection is gone.
func (c *Conn) Join(name string) error {
	h := c.hub
	h.mu.Lock()
	if c.removed {
		h.mu.Unlock()
		return ErrClosed
	}
	for _, rm := range c.rooms {
		if rm.name == name {
			h.mu.Unlock()
			return nil
		}
	}
	rm := h.rooms[name]
	created := rm == nil
	if created {
		rm = &room{name: name, index: make(map[*Conn]int)}
		h.rooms[name] = rm
	}
	rm.index[c] = len(rm.members)
	rm.members = append(rm.members, c)
	c.rooms = append(c.rooms, rm)
	h.mu.Unlock()
	if created {
		h.syncInterest(roomTopic(name))
	}
	c.presence(h.opts.OnJoin, "OnJoin", name)
	return nil
}

// Leave removes the connection from the room called name. Leaving a room
// the connection is not in is a no-op.
func (c *Conn) Leave(name string) error {
	h := c.hub
	h.mu.Lock()
	i := slices.IndexFunc(c.rooms, func(rm *room) bool { return rm.name == name })
	if i < 0 {
		h.mu.Unlock()
		return nil
	}
	rm := c.rooms[i]
	c.rooms = slices.Delete(c.rooms, i, i+1)
	h.removeMemberLocked(rm, c)
	emptied := len(rm.members) == 0
	h.mu.Unlock()
	if emptied {
		h.syncInterest(roomTopic(name))
	}
	c.presence(h.opts.OnLeave, "OnLeave", name)
	return nil
}

// Rooms returns the names of the rooms the connection is in, in join order.
func (c *Conn) Rooms() []string {
	c.hub.mu.RLock()
	defer c.hub.mu.RUnlock()
	names := make([]string, len(c.rooms))
	for i, rm := range c.rooms {
		names[i] = rm.name
	}
	return names
}

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
func (h *Hub) removeMemberLocked(rm *room, c *Conn) {
	i, ok := rm.index[c]
	if !ok {
		return
	}
	last := len(rm.members) - 1
	if i != last {
		moved := rm.members[last]
		rm.members[i] = moved
		rm.index[moved] = i
	}
	rm.members[last] = nil
	rm.members = rm.members[:last]
	delete(rm.index, c)
	if len(rm.members) == 0 {
		delete(h.rooms, rm.name)
	}
}

// A pool of recipient snapshots, so that a send allocates nothing in the
// steady state.
var connsPool = sync.Pool{New: func() any { s := make([]*Conn, 0, 64); return &s }}

func getConns() *[]*Conn { return connsPool.Get().(*[]*Conn) }

func putConns(p *[]*Conn) {
	if cap(*p) > 1<<16 {
		return // do not keep huge snapshots alive
	}
	clear(*p)
	*p = (*p)[:0]
	connsPool.Put(p)
}
