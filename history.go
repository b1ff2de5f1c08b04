package wsroom

// Room history: an opt-in, bounded ring of a room's broadcasts, each with
// a position, from which a wsroom.v1 client that reconnects gets what it
// missed (see docs/protocol.md).

import (
	"crypto/rand"
	"encoding/base32"
	"math"
	"sync"
	"time"

	"github.com/wsroom/wsroom/internal/frame"
)

// Defaults applied to a History whose Messages is positive.
const (
	DefaultHistoryBytes = 1 << 20 // 1 MiB of payload
	DefaultHistoryTTL   = 5 * time.Minute
)

// History configures the history a room keeps (see Options.History). The
// zero value keeps none.
type History struct {
	// Messages is the most broadcasts kept. A positive value turns history
	// on for the room.
	Messages int

	// Bytes bounds the payload bytes kept (a single larger message is
	// kept alone). The history holds copies of the payloads in chunks of
	// its own, plus 32 bytes per message: see docs/memory.md. Default
	// 1 MiB (DefaultHistoryBytes).
	Bytes int

	// TTL is how long a broadcast is kept. A history whose every message
	// has expired and whose room has no member here is forgotten: its next
	// message starts a new epoch. Default 5 minutes (DefaultHistoryTTL).
	TTL time.Duration
}

func (o History) withDefaults() History {
	if o.Bytes <= 0 {
		o.Bytes = DefaultHistoryBytes
	}
	if o.TTL <= 0 {
		o.TTL = DefaultHistoryTTL
	}
	return o
}

// Position is where a broadcast stands in its room's history: the
// history's Epoch, which changes whenever continuity is lost, and the
// broadcast's Offset in it, counting from 1.
type Position struct {
	Epoch  string
	Offset uint64
}

// Lost says why a resume was impossible.
type lostReason string

const (
	lostEpoch       lostReason = "epoch"       // the position is from another epoch
	lostTrimmed     lostReason = "trimmed"     // messages after it are no longer kept
	lostNoHistory   lostReason = "nohistory"   // the room keeps no history
	lostUnavailable lostReason = "unavailable" // the broker could not be asked
)

// histEntry is one kept broadcast: 32 bytes besides its payload, which
// the history's bytes hold.
type histEntry struct {
	at     int64        // hub clock when it was sent
	n      uint32       // payload bytes
	op     frame.Opcode // text or binary
	except string       // ConnID of the connection BroadcastExcept left out
}

// histMsg is a kept broadcast as read from a history.
type histMsg struct {
	op     frame.Opcode
	data   []byte // valid while the history is locked and unchanged
	except string
}

// history is a room's ring of broadcasts. Its mutex serializes the room's
// broadcasts and joins, so that positions follow the order in which every
// member's queue receives them. Lock order: history.mu, Hub.mu, Conn.mu.
type history struct {
	opts History

	mu     sync.Mutex // guards the fields below
	epoch  string
	first  uint64 // offset of the oldest kept entry (ring[start])
	ring   []histEntry
	start  int        // index of the oldest entry
	n      int        // entries kept
	bytes  int        // payload bytes kept
	data   histBytes  // the entries' payloads, oldest first
	dead   bool       // forgotten by the hub (sweepHistories): use historyFor again
	gapWhy lostReason // why the broker could not fill the copy's last gap (history_cluster.go)
	synced bool       // it follows the room without a gap: always for a node's own history; for a copy of the broker's, from its first message until the node stops following the room
}

// newHistory returns a node's own history of a room (no HistoryBroker).
func newHistory(opts History) *history {
	return &history{opts: opts.withDefaults(), epoch: newEpoch(), first: 1, synced: true}
}

// resetAt empties the history and makes pos its last position: the next
// entry gets pos.Offset+1. Called with hs.mu held.
func (hs *history) resetAt(pos Position) {
	for hs.n > 0 {
		hs.dropOldest()
	}
	hs.epoch, hs.first, hs.synced = pos.Epoch, pos.Offset+1, true
}

// reset empties the history so that its next entry gets pos. Called with
// hs.mu held.
func (hs *history) reset(pos Position) {
	hs.resetAt(Position{Epoch: pos.Epoch, Offset: pos.Offset - 1})
}

// newEpoch returns a fresh random epoch: 13 base32 characters.
func newEpoch() string {
	var b [8]byte
	rand.Read(b[:])
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])
}

// last returns the position of the newest broadcast (offset 0: none yet).
// Called with hs.mu held.
func (hs *history) last() Position {
	return Position{Epoch: hs.epoch, Offset: hs.first + uint64(hs.n) - 1}
}

// append keeps a copy of a broadcast's payload and returns its position,
// dropping the oldest entries beyond the history's bounds. A payload of
// 4 GiB or more is not kept: its position is a gap that a resume over it
// reports as trimmed. Called with hs.mu held.
func (hs *history) append(op frame.Opcode, payload []byte, except string, now int64) Position {
	if uint64(len(payload)) > math.MaxUint32 {
		hs.resetAt(Position{Epoch: hs.epoch, Offset: hs.last().Offset + 1})
		return hs.last()
	}
	hs.expire(now)
	if hs.n == len(hs.ring) && len(hs.ring) < hs.opts.Messages {
		// Grow the ring (it starts small: most rooms keep few messages).
		ring := make([]histEntry, min(max(2*len(hs.ring), 16), hs.opts.Messages))
		for i := range hs.n {
			ring[i] = hs.ring[(hs.start+i)%len(hs.ring)]
		}
		hs.ring, hs.start = ring, 0
	}
	if hs.n == len(hs.ring) {
		hs.dropOldest()
	}
	hs.ring[(hs.start+hs.n)%len(hs.ring)] = histEntry{at: now, n: uint32(len(payload)), op: op, except: except}
	hs.data.push(payload)
	hs.n++
	hs.bytes += len(payload)
	for hs.bytes > hs.opts.Bytes && hs.n > 1 {
		hs.dropOldest()
	}
	return hs.last()
}

func (hs *history) dropOldest() {
	e := &hs.ring[hs.start]
	hs.bytes -= int(e.n)
	hs.data.drop(int(e.n))
	*e = histEntry{}
	hs.start = (hs.start + 1) % len(hs.ring)
	hs.n--
	hs.first++
}

// expire drops the entries older than the TTL. Called with hs.mu held.
func (hs *history) expire(now int64) {
	for hs.n > 0 && now-hs.ring[hs.start].at > int64(hs.opts.TTL) {
		hs.dropOldest()
	}
}

// since returns the entries after pos and the offset of the first, or
// why they cannot all be had. When pos is from an earlier epoch, or the
// entries after it are no longer all kept, the client has seen none of
// what is kept: it gets all of it (with the reason), the newest messages
// after a gap. A position this history never gave (ahead of it) gets
// nothing. Called with hs.mu held.
func (hs *history) since(pos Position, now int64) ([]histMsg, uint64, lostReason) {
	hs.expire(now)
	last := hs.last().Offset
	switch {
	case pos.Epoch != hs.epoch:
		return hs.newest(hs.n), hs.first, lostEpoch
	case pos.Offset > last:
		return nil, 0, lostEpoch // a position this history never gave
	case pos.Offset+1 < hs.first:
		return hs.newest(hs.n), hs.first, lostTrimmed
	}
	return hs.newest(int(last - pos.Offset)), pos.Offset + 1, ""
}

// newest returns the k newest entries, oldest first. Called with hs.mu
// held; their data is valid until it is released or the history changes.
func (hs *history) newest(k int) []histMsg {
	out := make([]histMsg, k)
	at := hs.data.end
	for i := k - 1; i >= 0; i-- {
		e := &hs.ring[(hs.start+hs.n-k+i)%len(hs.ring)]
		at -= uint64(e.n)
		out[i] = histMsg{op: e.op, data: hs.data.read(at, int(e.n)), except: e.except}
	}
	return out
}

// idle reports whether the history holds nothing any more, so that a room
// without members can forget it. Called with hs.mu held.
func (hs *history) idle(now int64) bool {
	hs.expire(now)
	return hs.n == 0
}

// lockHistory returns the history of the room called name, locked, or nil
// if the room keeps none.
func (h *Hub) lockHistory(name string) *history {
	for {
		hs := h.historyFor(name)
		if hs == nil {
			return nil
		}
		hs.mu.Lock()
		if !hs.dead {
			return hs
		}
		hs.mu.Unlock() // forgotten meanwhile: a new one takes its place
	}
}

// historyFor returns the history of the room called name, creating it if
// Options.History gives it one; nil if the room keeps none.
func (h *Hub) historyFor(name string) *history {
	if h.opts.History == nil {
		return nil
	}
	h.mu.RLock()
	hs, ok := h.histories[name]
	h.mu.RUnlock()
	if ok {
		return hs
	}
	opts := h.opts.History(name) // app code: outside our locks
	if opts.Messages <= 0 || !validRoomName(name) {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if hs, ok := h.histories[name]; ok {
		return hs
	}
	hs = newHistory(opts)
	if h.ch.b != nil {
		// A copy of the broker's history: it starts with what the node
		// receives or reads (history_cluster.go).
		hs.epoch, hs.synced = "", false
	}
	h.histories[name] = hs
	return hs
}

// unfollowHistory marks the node's copy of a room's history as no longer
// following the room: its last member here left, so the node stops
// receiving the room and the copy may miss what comes next. Unless a
// member joined meanwhile: a join seeds the copy and adds its member with
// the copy's lock held, so checking for members under that lock decides
// it (marking a copy a new member was just given as unsynced would make
// the next message restart it, over any gap, unnoticed).
func (h *Hub) unfollowHistory(name string) {
	if h.ch.b == nil {
		return
	}
	h.mu.RLock()
	hs := h.histories[name]
	h.mu.RUnlock()
	if hs == nil {
		return
	}
	hs.mu.Lock()
	h.mu.RLock()
	if h.rooms[name] == nil {
		hs.synced = false
	}
	h.mu.RUnlock()
	hs.mu.Unlock()
}

// sweepHistories forgets the histories whose messages have all expired
// and whose room has no member here. The heartbeat calls it.
func (h *Hub) sweepHistories() {
	if h.opts.History == nil {
		return
	}
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for name, hs := range h.histories {
		if h.rooms[name] != nil || !hs.mu.TryLock() {
			continue // in use
		}
		if hs.idle(now) || !hs.synced {
			hs.dead = true
			delete(h.histories, name)
		}
		hs.mu.Unlock()
	}
}
