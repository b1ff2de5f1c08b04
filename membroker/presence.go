package membroker

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wsroom/wsroom"
)

var _ wsroom.PresenceBroker = (*Broker)(nil)

// presence is the Bus's presence store: per room (""; a user's
// connections anywhere), per user, per node, a count and the user's info.
type presence struct {
	mu    sync.Mutex
	rooms map[string]map[string]map[string]entry // room → user → node → entry
	nodes map[string]*nodeLife                   // node → liveness
}

type entry struct {
	count int
	info  []byte
}

// nodeLife is a node's liveness: dead once it was killed (Bus.Kill) and
// ttl has passed.
type nodeLife struct {
	ttl    time.Duration
	killed time.Time // zero while alive
	left   func(room, user string, info []byte)
}

func (p *presence) init() {
	if p.rooms == nil {
		p.rooms = make(map[string]map[string]map[string]entry)
		p.nodes = make(map[string]*nodeLife)
	}
}

// StartPresence implements wsroom.PresenceBroker. A node's presence lasts
// until LeavePresence or, after Bus.Kill, ttl; another node's broker then
// removes it and reports who left.
func (b *Broker) StartPresence(node string, ttl time.Duration, left func(room, user string, info []byte)) {
	p := &b.bus.pres
	p.mu.Lock()
	p.init()
	p.nodes[node] = &nodeLife{ttl: ttl, left: left}
	p.mu.Unlock()
	b.mu.Lock()
	b.node = node
	b.mu.Unlock()
	b.janitor.Add(1)
	go b.cleanLoop(ttl)
}

// cleanLoop removes the presence of dead nodes until the broker closes.
func (b *Broker) cleanLoop(ttl time.Duration) {
	defer b.janitor.Done()
	t := time.NewTicker(max(ttl/8, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.bus.pres.clean(b.node)
		}
	}
}

// clean removes the nodes killed more than their ttl ago and reports, to
// the cleaning node's left function, each user that thereby left a room.
func (p *presence) clean(cleaner string) {
	p.mu.Lock()
	me := p.nodes[cleaner]
	var gone []string
	for n, l := range p.nodes {
		if !l.killed.IsZero() && time.Since(l.killed) > l.ttl {
			gone = append(gone, n)
			delete(p.nodes, n)
		}
	}
	var left []wsroom.PresenceEvent
	for _, n := range gone {
		left = append(left, p.removeNodeLocked(n)...)
	}
	p.mu.Unlock()
	if me == nil {
		return
	}
	for _, e := range left {
		me.left(e.Room, e.UserID, e.Info)
	}
}

// removeNodeLocked drops node's entries and returns the users whose
// presence in a room ended with them.
func (p *presence) removeNodeLocked(node string) []wsroom.PresenceEvent {
	var left []wsroom.PresenceEvent
	for room, users := range p.rooms {
		for user, nodes := range users {
			e, ok := nodes[node]
			if !ok {
				continue
			}
			delete(nodes, node)
			if len(nodes) == 0 {
				delete(users, user)
				if room != "" {
					left = append(left, wsroom.PresenceEvent{Room: room, UserID: user, Info: e.info})
				}
			}
		}
		if len(users) == 0 {
			delete(p.rooms, room)
		}
	}
	return left
}

// SetPresence implements wsroom.PresenceBroker.
func (b *Broker) SetPresence(ctx context.Context, room, user string, count int, info []byte) (wsroom.PresenceChange, error) {
	if err := b.usable(ctx); err != nil {
		return wsroom.PresenceUnchanged, err
	}
	p := &b.bus.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	p.init()
	users := p.rooms[room]
	nodes := users[user]
	before := len(nodes) > 0
	if count > 0 {
		if users == nil {
			users = make(map[string]map[string]entry)
			p.rooms[room] = users
		}
		if nodes == nil {
			nodes = make(map[string]entry)
			users[user] = nodes
		}
		nodes[b.node] = entry{count: count, info: info}
	} else if nodes != nil {
		delete(nodes, b.node)
		if len(nodes) == 0 {
			delete(users, user)
			if len(users) == 0 {
				delete(p.rooms, room)
			}
		}
	}
	after := count > 0 || len(nodes) > 0
	switch {
	case !before && after:
		return wsroom.PresenceJoined, nil
	case before && !after:
		return wsroom.PresenceLeft, nil
	}
	return wsroom.PresenceUnchanged, nil
}

// RoomPresence implements wsroom.PresenceBroker.
func (b *Broker) RoomPresence(ctx context.Context, room string) ([]wsroom.Presence, error) {
	if err := b.usable(ctx); err != nil {
		return nil, err
	}
	p := &b.bus.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []wsroom.Presence
	for user, nodes := range p.rooms[room] {
		pr := wsroom.Presence{UserID: user}
		for _, e := range nodes {
			pr.Conns += e.count
			if pr.Info == nil {
				pr.Info = e.info
			}
		}
		out = append(out, pr)
	}
	slices.SortFunc(out, func(a, b wsroom.Presence) int { return strings.Compare(a.UserID, b.UserID) })
	return out, nil
}

// UserNodes implements wsroom.PresenceBroker.
func (b *Broker) UserNodes(ctx context.Context, user string) (map[string]int, error) {
	if err := b.usable(ctx); err != nil {
		return nil, err
	}
	p := &b.bus.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int)
	for node, e := range p.rooms[""][user] {
		out[node] = e.count
	}
	return out, nil
}

// PresenceRooms implements wsroom.PresenceBroker.
func (b *Broker) PresenceRooms(ctx context.Context) ([]wsroom.RoomCount, error) {
	if err := b.usable(ctx); err != nil {
		return nil, err
	}
	p := &b.bus.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []wsroom.RoomCount
	for room, users := range p.rooms {
		if room != "" {
			out = append(out, wsroom.RoomCount{Room: room, Users: len(users)})
		}
	}
	slices.SortFunc(out, func(a, b wsroom.RoomCount) int { return strings.Compare(a.Room, b.Room) })
	return out, nil
}

// LeavePresence implements wsroom.PresenceBroker.
func (b *Broker) LeavePresence(ctx context.Context) ([]wsroom.PresenceEvent, error) {
	if err := b.usable(ctx); err != nil {
		return nil, err
	}
	p := &b.bus.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.nodes, b.node)
	return p.removeNodeLocked(b.node), nil
}

// usable returns an error when b is closed, the bus is down or ctx has
// ended.
func (b *Broker) usable(ctx context.Context) error {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return ErrClosed
	}
	b.bus.mu.Lock()
	down := b.bus.down
	b.bus.mu.Unlock()
	if down {
		return ErrDown
	}
	return ctx.Err()
}

// Kill simulates the death of b's process: b stops delivering and
// publishing at once, without leaving presence; after the node's
// presence timeout another node's broker removes its presence and reports
// who left. Use it to test crash cleanup. The Hub that owns b should then
// be shut down with an expired context.
func (bus *Bus) Kill(b *Broker) {
	p := &bus.pres
	p.mu.Lock()
	if l := p.nodes[b.node]; l != nil {
		l.killed = time.Now()
	}
	p.mu.Unlock()
	b.kill()
}
