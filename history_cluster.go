package wsroom

// Room history across nodes: with a HistoryBroker the broker keeps each
// room's history and numbers its broadcasts; every node, the publisher
// included, delivers them in that order from the broker, and keeps a copy
// of the recent ones (its history struct, a cache) to serve resumes
// without a round trip.

import (
	"context"
	"sync"
	"time"

	"github.com/wsroom/wsroom/internal/frame"
	"github.com/wsroom/wsroom/internal/wire"
)

// HistoryBroker is a Broker that also keeps room history for the whole
// cluster (membroker and redisbroker do), so that a wsroom.v1 client can
// resume on any node. Without one, each node keeps its own history and a
// client that reconnects to another node is told its position was lost.
//
// The Hub calls StartHistory once, before Start; then PublishHistory for
// every broadcast in a room with history, and ReadHistory when it lacks
// messages (a client resumes from further back than the node has seen, or
// the node saw a gap).
type HistoryBroker interface {
	Broker

	// StartHistory registers the function that receives what
	// PublishHistory published, with its position, instead of Start's
	// deliver, and from the same goroutine.
	StartHistory(deliver func(topic string, pos Position, payload []byte))

	// PublishHistory appends payload to topic's history, keeping what
	// limits allows, and publishes it with its position to topic's
	// subscribers, atomically: every subscriber receives a topic's
	// messages in position order. A history that was lost (expired,
	// evicted, a restart) starts a new epoch. wait returns the position.
	PublishHistory(topic string, payload []byte, limits History) (wait func() (Position, error))

	// ReadHistory returns topic's messages after since, oldest first, at
	// most max of them, and the history's current position (offset 0 when
	// it holds nothing yet). If since is from another epoch, or messages
	// after it are no longer kept, it returns no entries and says why in
	// Lost. With since.Epoch "" it returns the newest max messages.
	ReadHistory(ctx context.Context, topic string, since Position, max int) (HistoryRead, error)
}

// HistoryRead is what ReadHistory found.
type HistoryRead struct {
	Entries []HistoryEntry
	Current Position
	Lost    string // "epoch" or "trimmed" when the messages after since cannot be had
}

// HistoryEntry is one message of a history.
type HistoryEntry struct {
	Offset  uint64
	Payload []byte
}

// historyCheck is how often a node asks the broker for the position of
// the rooms with history it has members in, to fill a gap it could not
// see (a message published just as it subscribed, or while it was cut off
// from the broker). Gaps seen in the stream are filled at once.
const historyCheck = 2 * time.Second

// clusterHistory is the Hub's side of a HistoryBroker.
type clusterHistory struct {
	b       HistoryBroker
	mu      sync.Mutex
	excepts map[string]exceptRef // ConnID → the connection BroadcastExcepts in flight leave out
}

// startClusterHistory registers with the broker if it keeps history and
// rooms may have some. Called by startBroker, before Start.
func (h *Hub) startClusterHistory() {
	hb, ok := h.opts.Broker.(HistoryBroker)
	if !ok || h.opts.History == nil {
		return
	}
	h.ch.b = hb
	h.ch.excepts = make(map[string]exceptRef)
	hb.StartHistory(h.receiveHistory)
	h.wg.Add(1)
	go h.checkHistories()
}

// publishHistory publishes a broadcast in a room with history through
// the broker; this node delivers it, like every other, when the broker
// hands it back (receiveHistory). Nothing is delivered if the publish
// fails.
func (h *Hub) publishHistory(m Message, t target, limits History) error {
	payload, topics := nodeMessage(h.node, m, t)
	var except string
	if t.except != nil {
		except = t.except.ConnID()
		h.ch.mu.Lock()
		r := h.ch.excepts[except]
		h.ch.excepts[except] = exceptRef{c: t.except, n: r.n + 1}
		h.ch.mu.Unlock()
		wm, _ := wire.Decode(payload)
		wm.Except = except
		payload = wire.Append(nil, &wm)
	}
	_, err := h.ch.b.PublishHistory(topics[0], payload, limits)()
	if err != nil {
		if except != "" {
			h.ch.mu.Lock()
			h.ch.dropExceptLocked(except)
			h.ch.mu.Unlock()
		}
		err = h.publishOutcome(err)
	} else {
		h.stats.brokerOut.Add(1)
	}
	return err
}

// receiveHistory is the broker's deliver function for positioned
// messages: every node delivers them to its members of the room, in
// position order, filling any gap from the broker first.
func (h *Hub) receiveHistory(topic string, pos Position, payload []byte) {
	if h.closed.Load() {
		return
	}
	wm, err := wire.Decode(payload)
	kind, room := wire.ParseTopic(topic)
	if err != nil || kind != wire.TopicRoom {
		if err == nil {
			err = errUnknownTopic
		}
		h.brokerError("receive", topic, err)
		return
	}
	if wm.Node != h.node {
		h.stats.brokerIn.Add(1)
		h.stats.brokerLag.observe(time.Duration(time.Now().UnixNano() - wm.Sent))
	}
	hs := h.lockHistory(room)
	if hs == nil { // this node keeps no history for the room: deliver it plain
		t := target{room: room, except: h.takeExcept(wm)}
		p, err := h.prepare(Message{Type: MessageType(wm.Type), Data: wm.Data}, t)
		if err == nil {
			h.deliver(p, t)
		}
		return
	}
	defer hs.mu.Unlock()
	if hs.synced && pos.Epoch == hs.epoch && pos.Offset > hs.last().Offset+1 {
		h.fillGapLocked(hs, room) // messages this node missed come first
	}
	h.deliverAtLocked(hs, room, pos, wm)
}

// tellGapLocked tells the room's wsroom.v1 members on this node that the
// messages up to pos (after the last they got) are lost, with why: an
// unasked joined with lost, as a resume that could not be served gets.
// why is "" when the broker was not asked (unavailable is said). Called
// with the room's history lock held.
func (h *Hub) tellGapLocked(room string, pos Position, why lostReason) {
	if why == "" {
		why = lostUnavailable
	}
	t := target{room: room}
	p, err := h.prepare(Message{Type: v1Control, Data: joinedHeader(room, &pos, -1, why, "")}, t)
	if err != nil {
		return // the hub is closed
	}
	h.stats.historyLost.Add(1)
	h.deliver(p, t)
}

// exceptRef is a connection that BroadcastExcepts from this node leave
// out, and how many of them are in flight: one connection may send
// several before the first comes back from the broker.
type exceptRef struct {
	c *Conn
	n int
}

// dropExceptLocked ends one BroadcastExcept in flight that leaves out the
// connection with this ID. Called with ch.mu held.
func (ch *clusterHistory) dropExceptLocked(id string) {
	r, ok := ch.excepts[id]
	switch {
	case !ok:
	case r.n <= 1:
		delete(ch.excepts, id)
	default:
		ch.excepts[id] = exceptRef{c: r.c, n: r.n - 1}
	}
}

// takeExcept returns the connection a BroadcastExcept from this node
// leaves out (nil if none), once per message: call it only when the
// message is delivered, which happens once, whether it comes back from
// the broker or is read back by a fill (deliverAtLocked).
func (h *Hub) takeExcept(wm wire.Message) *Conn {
	if wm.Except == "" || wm.Node != h.node {
		return nil
	}
	h.ch.mu.Lock()
	defer h.ch.mu.Unlock()
	c := h.ch.excepts[wm.Except].c
	h.ch.dropExceptLocked(wm.Except)
	return c
}

// deliverAtLocked keeps a broadcast at its position in the node's copy of
// the room's history and delivers it, unless it was delivered already.
// Called with hs.mu held.
func (h *Hub) deliverAtLocked(hs *history, room string, pos Position, wm wire.Message) {
	switch {
	case !hs.synced || pos.Epoch != hs.epoch:
		// The first message this node sees of the room, or a new epoch:
		// its copy starts here.
		hs.reset(pos)
	case pos.Offset <= hs.last().Offset:
		return // delivered already (a gap fill got it first)
	case pos.Offset != hs.last().Offset+1:
		// A gap the broker could not fill: the members here are told
		// (wsroom.v1), then the copy restarts at pos.
		h.tellGapLocked(room, Position{Epoch: pos.Epoch, Offset: pos.Offset - 1}, hs.gapWhy)
		hs.gapWhy = ""
		hs.reset(pos)
	}
	t := target{room: room, except: h.takeExcept(wm)}
	p, err := h.prepare(Message{Type: MessageType(wm.Type), Data: wm.Data}, t)
	if err != nil {
		h.brokerError("receive", wire.RoomTopic(room), err)
		return
	}
	hs.append(frame.Opcode(wm.Type), wm.Data, wm.Except, h.now())
	p.header = appendRoomHeader(nil, room, &pos)
	h.deliver(p, t)
}

// fillGapLocked delivers what the broker has after the node's last
// message of the room; if it cannot, it notes why in hs.gapWhy, for the
// next message to tell the members. Called with hs.mu held, on the
// broker's delivering goroutine, the checker or a join.
func (h *Hub) fillGapLocked(hs *history, room string) {
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.WriteTimeout)
	defer cancel()
	last := hs.last()
	rd, err := h.ch.b.ReadHistory(ctx, wire.RoomTopic(room), last, hs.opts.Messages)
	if err != nil {
		h.brokerError("history", wire.RoomTopic(room), err)
		hs.gapWhy = lostUnavailable
		return
	}
	if rd.Lost != "" {
		hs.gapWhy = lostReason(rd.Lost) // the next message tells the members and restarts the copy
		return
	}
	for _, e := range rd.Entries {
		wm, err := wire.Decode(e.Payload)
		if err != nil {
			h.brokerError("history", wire.RoomTopic(room), err)
			hs.gapWhy = lostUnavailable
			return
		}
		h.deliverAtLocked(hs, room, Position{Epoch: last.Epoch, Offset: e.Offset}, wm)
	}
}

// seedLocked fills the node's copy of a room's history from the broker,
// so that a connection can resume from since: for a node that has not
// been following the room (no member here until now), or whose copy does
// not reach back far enough. Called with hs.mu held.
func (h *Hub) seedLocked(hs *history, room string, since Position) (lostReason, error) {
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.WriteTimeout)
	defer cancel()
	rd, err := h.ch.b.ReadHistory(ctx, wire.RoomTopic(room), since, hs.opts.Messages)
	if err != nil {
		return "", err
	}
	if rd.Lost != "" {
		if !hs.synced {
			hs.resetAt(rd.Current)
		}
		return lostReason(rd.Lost), nil
	}
	if hs.synced && hs.epoch == since.Epoch && since.Offset+1 >= hs.first {
		// The copy covers since after all; fill what it lacks at its end.
		h.fillGapLocked(hs, room)
		return "", nil
	}
	// Start the copy at since (or, for the newest messages, before the
	// first read) and take the entries read. A copy the node follows has
	// delivered everything up to its last message to the members here;
	// the entries after that (or of a newer epoch) they have not had yet:
	// those are delivered now, as a fill would, not just kept (the node's
	// subscription hands them over later, and would find them delivered).
	if since.Epoch == "" {
		since = Position{Epoch: rd.Current.Epoch, Offset: rd.Current.Offset - uint64(len(rd.Entries))}
	}
	following, old := hs.synced, hs.last()
	hs.resetAt(since)
	for _, e := range rd.Entries {
		wm, err := wire.Decode(e.Payload)
		if err != nil {
			return "", err
		}
		pos := Position{Epoch: since.Epoch, Offset: e.Offset}
		if following && (pos.Epoch != old.Epoch || pos.Offset > old.Offset) {
			h.deliverAtLocked(hs, room, pos, wm)
			continue
		}
		m := Message{Type: MessageType(wm.Type), Data: wm.Data}
		if err := m.check(); err != nil {
			return "", err
		}
		hs.append(frame.Opcode(m.Type), m.Data, wm.Except, h.now())
	}
	return "", nil
}

// checkHistories asks the broker, every historyCheck, for what the
// node's rooms with history and members may have missed. It runs until
// Shutdown.
func (h *Hub) checkHistories() {
	defer h.wg.Done()
	t := time.NewTicker(historyCheck)
	defer t.Stop()
	for {
		select {
		case <-h.bk.stop:
			return
		case <-t.C:
		}
		var rooms []string
		h.mu.RLock()
		for name := range h.histories {
			if h.rooms[name] != nil {
				rooms = append(rooms, name)
			}
		}
		h.mu.RUnlock()
		for _, name := range rooms {
			if hs := h.lockHistory(name); hs != nil {
				if hs.synced {
					h.fillGapLocked(hs, name)
				}
				hs.mu.Unlock()
			}
		}
	}
}
