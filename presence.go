package wsroom

// Presence: who is in a room, whether a user is online, which rooms have
// users — on one node from the index, across nodes from a PresenceBroker
// (no request to other nodes at query time) — and the per-user join and
// leave events, exactly once per transition.

import (
	"context"
	"encoding/hex"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultPresenceTimeout is how long a node may be silent before the
// cluster takes its users out of every room.
const DefaultPresenceTimeout = 30 * time.Second

// Presence is a user's presence in a room.
type Presence struct {
	UserID string
	Conns  int    // the user's connections in the room, on every node
	Info   []byte // what the app attached to the user (Conn.SetInfo): from one of its connections
}

// RoomCount is a room and how many users are in it.
type RoomCount struct {
	Room  string
	Users int
}

// PresenceEvent reports that a user's first connection entered a room
// (Joined) or its last one left it, anywhere in the cluster. See
// Options.OnPresence.
type PresenceEvent struct {
	Room   string
	UserID string
	Joined bool
	Info   []byte
}

// PresenceChange is what a presence update did to a user's presence in a
// room across the cluster.
type PresenceChange int8

const (
	PresenceUnchanged PresenceChange = iota // the user was and is in the room, or was not and is not
	PresenceJoined                          // the user is in the room and was not before: its first connection anywhere
	PresenceLeft                            // the user was in the room and is not any more: its last connection anywhere
)

// PresenceBroker is a Broker that also keeps cluster-wide presence:
// membroker and redisbroker are. With one, a Hub's presence queries and
// events cover every node; with a Broker that is not, they cover the
// node's own connections only.
//
// The Hub calls StartPresence once after Start, then SetPresence whenever
// its count of a user's connections in a room changed — concurrently for
// different (room, user) pairs, up to presenceWorkers at once, but never
// for one pair while an earlier call for it runs — the queries from any
// goroutine, and LeavePresence from Shutdown, after the last SetPresence
// returned and before Close.
type PresenceBroker interface {
	Broker

	// StartPresence makes node (the Hub's ID, for its lifetime) a member
	// of the cluster's presence. The broker keeps the node alive while it
	// runs, and removes the presence of a node silent for longer than ttl
	// (its process died): every user that thereby left a room across the
	// cluster is reported to left, once, on one surviving node.
	StartPresence(node string, ttl time.Duration, left func(room, user string, info []byte))

	// SetPresence records that this node has count connections (0: none)
	// of user in room, with the user's info, and reports whether that
	// changed the user's presence in the room across the cluster. Each
	// transition is reported to exactly one caller in the cluster.
	SetPresence(ctx context.Context, room, user string, count int, info []byte) (PresenceChange, error)

	// RoomPresence returns the users in room on live nodes with their
	// connection counts, sorted by user ID.
	RoomPresence(ctx context.Context, room string) ([]Presence, error)

	// UserNodes returns how many connections user has, per live node
	// (the node IDs given to StartPresence).
	UserNodes(ctx context.Context, user string) (map[string]int, error)

	// PresenceRooms returns the rooms that have users on live nodes, with
	// how many, sorted by room.
	PresenceRooms(ctx context.Context) ([]RoomCount, error)

	// LeavePresence removes this node's presence (a graceful stop) and
	// returns the users that thereby left a room across the cluster.
	LeavePresence(ctx context.Context) ([]PresenceEvent, error)
}

// SetInfo attaches info to the connection's user for presence: Presence
// and PresenceEvent carry it (from one of the user's connections). Call it
// before the connection joins rooms, typically in OnConnect. info is not
// copied; do not modify it afterwards.
func (c *Conn) SetInfo(info []byte) {
	h := c.hub
	h.mu.Lock()
	if info == nil {
		delete(h.info, c)
	} else {
		h.info[c] = info
	}
	h.mu.Unlock()
}

// infoLocked returns the info of user id's connections. Called with h.mu
// held.
func (h *Hub) infoLocked(id string) []byte {
	for _, c := range h.users[id] {
		if info, ok := h.info[c]; ok {
			return info
		}
	}
	return nil
}

// PresenceAppender is an optional interface of a PresenceBroker: one
// that implements it answers Room.AppendPresence into the caller's slice.
type PresenceAppender interface {
	// AppendRoomPresence appends what RoomPresence returns to dst and
	// returns the extended slice. The Infos may be shared with the
	// broker: the caller does not modify them.
	AppendRoomPresence(ctx context.Context, dst []Presence, room string) ([]Presence, error)
}

// Presence returns the users in the room, each once with its number of
// connections in the room, sorted by user ID: across the cluster with a
// PresenceBroker (one query to it, none to other nodes), else on this
// Hub. It costs O(users in the room), and allocates the answer: to ask
// often about a large room, use AppendPresence.
func (r *Room) Presence(ctx context.Context) ([]Presence, error) {
	if pb := r.hub.presenceBroker(); pb != nil {
		return pb.RoomPresence(ctx, r.name)
	}
	return r.appendLocalPresence(nil), nil
}

// AppendPresence appends what Presence returns to dst and returns the
// extended slice. Given the previous answer's slice (dst[:0]) each time,
// it allocates nothing once that slice is large enough: on this Hub, and
// with a broker that implements PresenceAppender (redisbroker does, for
// the rooms it keeps), so that asking often about a room of thousands of
// users does not make the garbage collector run (whose work would show
// in the answers' latency). The Infos are shared with the Hub or the
// broker: do not modify them.
func (r *Room) AppendPresence(ctx context.Context, dst []Presence) ([]Presence, error) {
	pb := r.hub.presenceBroker()
	if pa, ok := pb.(PresenceAppender); ok {
		return pa.AppendRoomPresence(ctx, dst, r.name)
	}
	if pb != nil {
		users, err := pb.RoomPresence(ctx, r.name)
		return append(dst, users...), err
	}
	return r.appendLocalPresence(dst), nil
}

// appendLocalPresence appends the room's users on this Hub to dst: one
// entry per member, sorted by user ID, then each user's entries merged.
func (r *Room) appendLocalPresence(dst []Presence) []Presence {
	h := r.hub
	h.mu.RLock()
	defer h.mu.RUnlock()
	rm := h.rooms[r.name]
	if rm == nil {
		return dst
	}
	start := len(dst)
	for _, c := range rm.members {
		dst = append(dst, Presence{UserID: c.id, Conns: 1})
	}
	users := dst[start:]
	slices.SortFunc(users, func(a, b Presence) int { return strings.Compare(a.UserID, b.UserID) })
	n := 0
	for i := range users {
		if n > 0 && users[n-1].UserID == users[i].UserID {
			users[n-1].Conns++
			continue
		}
		users[n] = Presence{UserID: users[i].UserID, Conns: 1, Info: h.infoLocked(users[i].UserID)}
		n++
	}
	clear(users[n:])
	return dst[:start+n]
}

// Online returns how many connections the user has, across the cluster
// with a PresenceBroker, else on this Hub; 0 means offline.
func (h *Hub) Online(ctx context.Context, userID string) (int, error) {
	if pb := h.presenceBroker(); pb != nil {
		nodes, err := pb.UserNodes(ctx, userID)
		total := 0
		for _, n := range nodes {
			total += n
		}
		return total, err
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.users[userID]), nil
}

// RoomCounts returns the rooms that have users, with how many, sorted by
// room: across the cluster with a PresenceBroker, else on this Hub.
func (h *Hub) RoomCounts(ctx context.Context) ([]RoomCount, error) {
	if pb := h.presenceBroker(); pb != nil {
		return pb.PresenceRooms(ctx)
	}
	h.mu.RLock()
	out := make([]RoomCount, 0, len(h.rooms))
	for name, rm := range h.rooms {
		users := make(map[string]struct{}, len(rm.members))
		for _, c := range rm.members {
			users[c.id] = struct{}{}
		}
		out = append(out, RoomCount{Room: name, Users: len(users)})
	}
	h.mu.RUnlock()
	slices.SortFunc(out, func(a, b RoomCount) int { return strings.Compare(a.Room, b.Room) })
	return out, nil
}

// presenceBroker returns the broker as a PresenceBroker, or nil.
func (h *Hub) presenceBroker() PresenceBroker {
	return h.pres.b
}

// nodeName is the hub's node ID as presence names it.
func (h *Hub) nodeName() string { return hex.EncodeToString(h.node[:]) }

// presenceState is the Hub's side of presence: the (room, user) pairs
// whose local count changed and are yet to be recorded, for the presence
// goroutine (with a PresenceBroker).
type presenceState struct {
	b PresenceBroker

	mu       sync.Mutex
	dirty    map[presenceKey]struct{} // changed and not yet being recorded
	order    []presenceKey            // dirty keys in the order they became dirty
	inflight map[presenceKey]bool     // being recorded; true: dirty again meanwhile, recorded again after
	kick     chan struct{}
	stop     chan struct{}
	exited   chan struct{} // closed when the presence goroutine has returned
	stopped  bool
}

// presenceWorkers bounds the pairs recorded with the broker at once. A
// broker pipelines them (redisbroker sends many in one round trip), so a
// burst of joins, such as every client of a restarted node coming back, is
// recorded at the broker's pace rather than one round trip at a time.
const presenceWorkers = 32

type presenceKey struct{ room, user string }

// startPresence starts cluster presence if the broker keeps it. Called by
// New after startBroker.
func (h *Hub) startPresence() {
	pb, ok := h.opts.Broker.(PresenceBroker)
	if !ok || !h.opts.Presence {
		return
	}
	ps := &h.pres
	ps.b = pb
	ps.dirty = make(map[presenceKey]struct{})
	ps.inflight = make(map[presenceKey]bool)
	ps.kick = make(chan struct{}, 1)
	ps.stop = make(chan struct{})
	ps.exited = make(chan struct{})
	pb.StartPresence(h.nodeName(), h.opts.PresenceTimeout, h.remoteLeft)
	h.wg.Add(1)
	go h.presenceLoop()
}

// presenceChanged is told that user's local connection count in room may
// have changed (room "": the user's connections on this node): without a
// PresenceBroker it reports a local transition at once (before is the
// count before the change, after the count now); with one, it marks the
// pair for the presence goroutine, which records the count the index has
// then. Called without locks.
func (h *Hub) presenceChanged(room, user string, before, after int, info []byte) {
	ps := &h.pres
	if ps.b == nil {
		if room == "" {
			return
		}
		switch {
		case before == 0 && after > 0:
			h.presenceEvent(PresenceEvent{Room: room, UserID: user, Joined: true, Info: info})
		case before > 0 && after == 0:
			h.presenceEvent(PresenceEvent{Room: room, UserID: user, Info: info})
		}
		return
	}
	k := presenceKey{room, user}
	ps.mu.Lock()
	if _, ok := ps.dirty[k]; !ok && !ps.stopped {
		ps.dirty[k] = struct{}{}
		ps.order = append(ps.order, k)
	}
	ps.mu.Unlock()
	select {
	case ps.kick <- struct{}{}:
	default:
	}
}

// userCountLocked returns how many of user id's connections are in rm.
// Called with h.mu held.
func (h *Hub) userCountLocked(rm *room, id string) int {
	if rm == nil {
		return 0
	}
	n := 0
	for _, c := range h.users[id] {
		if c.inRoomLocked(rm) {
			n++
		}
	}
	return n
}

// presenceLoop records dirty pairs with the broker, each with the count
// the index has when it is recorded, up to presenceWorkers at once and one
// pair at a time, until Shutdown; it joins the recordings it started
// before it returns.
func (h *Hub) presenceLoop() {
	defer h.wg.Done()
	ps := &h.pres
	defer close(ps.exited)
	var running sync.WaitGroup
	defer running.Wait()
	slots := make(chan struct{}, presenceWorkers)
	for {
		select {
		case <-ps.kick:
		case <-ps.stop:
			return
		}
		for {
			select {
			case slots <- struct{}{}:
			case <-ps.stop:
				return
			}
			k, ok := ps.next()
			if !ok {
				<-slots
				break
			}
			running.Go(func() {
				h.recordPresence(k)
				<-slots
				ps.recorded(k)
			})
		}
	}
}

// next takes the oldest dirty pair that is not being recorded, and marks
// it as being recorded. A pair that is goes back to waiting (see recorded).
func (ps *presenceState) next() (presenceKey, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for len(ps.order) > 0 {
		k := ps.order[0]
		ps.order = ps.order[1:]
		if _, ok := ps.inflight[k]; ok {
			ps.inflight[k] = true // stays dirty: recorded again once this one is
			continue
		}
		delete(ps.dirty, k)
		ps.inflight[k] = false
		return k, true
	}
	return presenceKey{}, false
}

// recorded ends a pair's recording; if it changed meanwhile, it is queued
// again.
func (ps *presenceState) recorded(k presenceKey) {
	ps.mu.Lock()
	again := ps.inflight[k]
	delete(ps.inflight, k)
	if again {
		ps.order = append(ps.order, k)
	}
	ps.mu.Unlock()
	if again {
		select {
		case ps.kick <- struct{}{}:
		default:
		}
	}
}

// recordPresence records a pair's current local count with the broker
// and reports the transition it caused, if any.
func (h *Hub) recordPresence(k presenceKey) {
	h.mu.RLock()
	n := len(h.users[k.user]) // room "": the user's connections here
	if k.room != "" {
		n = h.userCountLocked(h.rooms[k.room], k.user)
	}
	info := h.infoLocked(k.user)
	h.mu.RUnlock()
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.WriteTimeout)
	change, err := h.pres.b.SetPresence(ctx, k.room, k.user, n, info)
	cancel()
	if err != nil {
		h.brokerError("presence", k.room, err)
		return
	}
	if k.room == "" {
		return // online or not: no event
	}
	switch change {
	case PresenceJoined:
		h.presenceEvent(PresenceEvent{Room: k.room, UserID: k.user, Joined: true, Info: info})
	case PresenceLeft:
		h.presenceEvent(PresenceEvent{Room: k.room, UserID: k.user, Info: info})
	}
}

// remoteLeft reports a user that left a room because its node died.
func (h *Hub) remoteLeft(room, user string, info []byte) {
	h.presenceEvent(PresenceEvent{Room: room, UserID: user, Info: info})
}

// stopPresence removes this node's presence, reporting who left, and stops
// the presence goroutine. Called by Shutdown before the broker closes.
func (h *Hub) stopPresence() {
	ps := &h.pres
	if ps.b == nil {
		return
	}
	ps.mu.Lock()
	if ps.stopped {
		ps.mu.Unlock()
		return
	}
	ps.stopped = true
	ps.mu.Unlock()
	close(ps.stop)
	<-ps.exited // no SetPresence runs after LeavePresence
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.WriteTimeout)
	left, err := ps.b.LeavePresence(ctx)
	cancel()
	if err != nil {
		h.brokerError("presence", "", err)
	}
	for _, e := range left {
		h.presenceEvent(e)
	}
}

// presenceEvent hands a transition to OnPresence and, with
// AnnouncePresence, to the room's wsroom.v1 members.
func (h *Hub) presenceEvent(e PresenceEvent) {
	if f := h.opts.OnPresence; f != nil {
		func() {
			defer func() {
				if v := recover(); v != nil {
					h.stats.panics.Add(1)
					h.opts.Logger.Error("wsroom: panic in OnPresence", "panic", v)
				}
			}()
			f(e)
		}()
	}
	if h.opts.AnnouncePresence {
		h.announce(e)
	}
}

// watchesPresence reports whether membership changes must be counted for
// presence: someone listens to transitions, or the broker keeps presence.
func (h *Hub) watchesPresence() bool {
	return h.pres.b != nil || h.opts.OnPresence != nil || h.opts.AnnouncePresence
}

// announce tells the room's wsroom.v1 members about a transition, on
// every node.
func (h *Hub) announce(e PresenceEvent) {
	b := append([]byte(nil), `{"t":"presence","r":`...)
	b = appendJSONString(b, e.Room)
	b = append(b, `,"u":`...)
	b = appendJSONString(b, e.UserID)
	if e.Joined {
		b = append(b, `,"joined":true`...)
	} else {
		b = append(b, `,"joined":false`...)
	}
	b = append(b, '}')
	h.send(Message{Type: v1Control, Data: b}, target{room: e.Room})
}
