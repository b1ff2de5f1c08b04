package wsroom

// Parking: how a room member whose socket takes nothing stops costing the
// room's senders anything (docs/fairness.md).
//
// A broadcast queues a reference to its frame in every member's queue; a
// peer that reads nothing would cost that on every broadcast until its
// queue reaches SendQueueBytes, thousands of appends per stalled peer.
// Instead, a member whose queue holds parkBytes (its writer is behind) is
// parked in its room: the room's members are partitioned, members[:active]
// get broadcasts in their queues, members[active:] are parked, and a
// broadcast appends its frames once to the room's backlog, whatever the
// number of parked members (a hub-wide broadcast, once to every room's
// backlog). A parked connection's writer, once its queue is empty, pulls
// up to parkBytes of what the backlog holds for it into its queue, and
// unparks once it has caught up. Anything else sent to a parked
// connection (a user send, Conn.Send, a wsroom.v1 control message, a
// close) pulls everything first, so a connection gets its frames in the
// order they were sent, parked or not; pings and pongs need not. A
// message is in a member's queue or in its room's backlog for it, never
// both.
//
// Bounds. Each parked connection has two deadlines, in its backlog's
// running totals: the bytes (of its frame form) and the messages it may
// still be given before its queue, the writer's batch and what the
// backlog holds for it reach SendQueueBytes or SendQueueMessages. An
// append closes (1008, counted) every member whose deadline it passes,
// found in O(log n) with a heap per bound; a pull applies the queue's own
// check to each frame. The backlog keeps entries from the oldest cursor
// among its live parked members on, so its memory is bounded by the
// slowest such member's bound.
//
// Pacing. A send that takes a parked member past half its bound makes its
// sender wait for this node's queued writes (Hub.awaitWriters), once per
// parkBytes appended: see backlog.appendLocked.
//
// Only a connection in exactly one room parks; joining a second room
// unparks it (it then pulls everything first). A connection in several
// rooms is handled as before: its queue fills, up to its bound.
//
// Locks: Hub.mu, then Conn.mu, then backlog.mu. Parking and unparking take
// Hub.mu for writing; an append happens in the recipient snapshot's read
// section (deliver), so a broadcast sees a member either active or parked.

import (
	"sync"
)

// parkBytes is how much a connection's queue (the writer's batch included)
// holds when it is parked: 64 KiB, or a quarter of SendQueueBytes if that
// is less. A stalled peer thus costs the room's senders at most about
// that much queueing before it costs nothing, while a reader that keeps
// up rarely has that much waiting.
func (h *Hub) parkBytes() int { return parkBytesFor(&h.opts) }

func parkBytesFor(opts *Options) int { return min(64<<10, opts.SendQueueBytes/4) }

// backlog is what a room's broadcasts (and hub-wide ones) left for its
// parked members.
type backlog struct {
	mu      sync.Mutex
	base    uint64     // sequence number of entries[0]
	entries []logEntry // in send order
	refs    []logRef   // the entries' frames: per entry, one per form known when it was appended
	forms   []logForm  // the frame forms of the parked members; appended under Hub.mu and mu
	byCount parkHeap   // live parked members by message deadline
	byNext  parkHeap   // live parked members by cursor: the oldest holds the backlog's start
	members int        // parked members, closed ones included, until they unpark
	pending int64      // bytes appended since the last lag reported (see appendLocked)
}

// logEntry is one broadcast in a backlog.
type logEntry struct {
	ref    int   // index in refs of its first form's frame
	except *Conn // BroadcastExcept's connection left out, or nil
}

// logRef is an entry's frame in one form.
type logRef struct {
	f      *[]byte // nil: nothing for that form (a wsroom.v1 control message to plain clients)
	before int64   // the form's cum before this entry
}

// logForm is one frame form (see prepared.frameForm) among parked members.
type logForm struct {
	proto, deflate uint8
	cum            int64    // accounted size (frameCost) of the frames appended in this form
	byBytes        parkHeap // its live parked members by byte deadline
}

// parked is a connection's place in its room's backlog. Conn.park points
// at it while the connection is parked.
type parked struct {
	c    *Conn
	rm   *room
	log  *backlog
	form int    // index in log.forms
	next uint64 // sequence number of the first entry not pulled yet

	// The connection is over its bound once its form's cum passes
	// bytesDeadline or the log's end passes countDeadline.
	bytesDeadline, countDeadline int64

	heapIdx [3]int // positions in byBytes, byCount and byNext
	dead    bool   // an append or a pull found it over its bound: it is being closed
}

// end is the sequence number of the next entry.
func (lg *backlog) end() uint64 { return lg.base + uint64(len(lg.entries)) }

// ref returns entry i's (an index in entries) frame in form, or nil if
// the entry has none (it was appended before the form was known).
func (lg *backlog) ref(i, form int) *logRef {
	last := len(lg.refs)
	if i+1 < len(lg.entries) {
		last = lg.entries[i+1].ref
	}
	if r := lg.entries[i].ref + form; r < last {
		return &lg.refs[r]
	}
	return nil
}

// appendLocked adds a broadcast of p that left out except. It returns the
// parked members it took over their bound, who are no longer in the
// backlog and must be closed as slow consumers, and reports a lag when a
// parked member is more than half-way to its bound: the sender then waits
// until the writers queued so far have run (Hub.awaitWriters), so that a
// reader whose writer has not had the processor yet (a busy core, where
// the writers wait behind the sender and behind the first, costly writes
// to thousands of stalled sockets) is not left behind by its bound. A
// stalled member stays half-way to its bound until it is closed, so the
// lag is reported once per parkBytes appended, not per broadcast: the
// writers of the readers still get batches meanwhile. Called with Hub.mu
// held for reading (so that forms do not change): the forms are made
// here, during the send, while p's data is still the caller's.
func (lg *backlog) appendLocked(p *prepared, except *Conn, opts *Options, dead []*parked) (_ []*parked, lag bool) {
	var made [8]*[]byte
	frames := made[:0]
	for i := range lg.forms {
		frames = append(frames, p.frameForm(lg.forms[i].proto, lg.forms[i].deflate))
	}
	lg.mu.Lock()
	defer lg.mu.Unlock()
	lg.entries = append(lg.entries, logEntry{ref: len(lg.refs), except: except})
	end := int64(lg.end())
	behind := false
	var size int64 // the entry's largest form
	for i := range lg.forms {
		fm := &lg.forms[i]
		lg.refs = append(lg.refs, logRef{f: frames[i], before: fm.cum})
		if frames[i] != nil {
			cost := int64(frameCost(frames[i]))
			fm.cum += cost
			size = max(size, cost)
		}
		for pk := fm.byBytes.min(); pk != nil && pk.bytesDeadline < fm.cum; pk = fm.byBytes.min() {
			dead = append(dead, lg.killLocked(pk))
		}
		if pk := fm.byBytes.min(); pk != nil && 2*(pk.bytesDeadline-fm.cum) < int64(opts.SendQueueBytes) {
			behind = true
		}
	}
	for pk := lg.byCount.min(); pk != nil && pk.countDeadline < end; pk = lg.byCount.min() {
		dead = append(dead, lg.killLocked(pk))
	}
	if pk := lg.byCount.min(); pk != nil && 2*(pk.countDeadline-end) < int64(opts.SendQueueMessages) {
		behind = true
	}
	lg.pending += size
	if behind && lg.pending >= int64(parkBytesFor(opts)) {
		lag, lg.pending = true, 0
	}
	lg.trimLocked()
	return dead, lag
}

// killLocked takes a live parked member over its bound out of the heaps;
// it is to be closed as a slow consumer. Called with lg.mu held.
func (lg *backlog) killLocked(pk *parked) *parked {
	lg.dropLocked(pk)
	pk.dead = true
	return pk
}

// dropLocked takes a live parked member out of the heaps. Called with
// lg.mu held.
func (lg *backlog) dropLocked(pk *parked) {
	lg.forms[pk.form].byBytes.remove(pk)
	lg.byCount.remove(pk)
	lg.byNext.remove(pk)
}

// trimLocked forgets the entries every live parked member has pulled,
// once they are at least half of the backlog (amortised O(1) per entry).
func (lg *backlog) trimLocked() {
	keep := lg.end()
	if pk := lg.byNext.min(); pk != nil {
		keep = pk.next
	}
	k := int(keep - lg.base)
	if k == 0 || (k < len(lg.entries) && k < len(lg.entries)/2) {
		return
	}
	r := len(lg.refs)
	if k < len(lg.entries) {
		r = lg.entries[k].ref
	}
	n := copy(lg.entries, lg.entries[k:])
	clear(lg.entries[n:])
	lg.entries = lg.entries[:n]
	for i := range lg.entries {
		lg.entries[i].ref -= r
	}
	m := copy(lg.refs, lg.refs[r:])
	clear(lg.refs[m:])
	lg.refs = lg.refs[:m]
	lg.base = keep
	if cap(lg.entries) > 1024 && cap(lg.entries) > 4*len(lg.entries) {
		// A burst is over: do not keep its capacity.
		lg.entries = append([]logEntry(nil), lg.entries...)
		lg.refs = append([]logRef(nil), lg.refs...)
	}
}

// setDeadlinesLocked computes pk's deadlines from its cursor and its
// connection's queue (c.mu and lg.mu held): the queue only shrinks until
// the next pull, so they are conservative.
func (lg *backlog) setDeadlinesLocked(pk *parked, opts *Options) {
	cum := lg.forms[pk.form].cum // before the entry at the cursor
	if pk.next < lg.end() {
		cum = lg.ref(int(pk.next-lg.base), pk.form).before
	}
	q := &pk.c.q
	pk.bytesDeadline = cum + int64(opts.SendQueueBytes-q.pinned())
	pk.countDeadline = int64(pk.next) + int64(opts.SendQueueMessages-int(q.len))
}

// refresh recomputes pk's deadlines after its writer finished a batch
// (c.mu held), so that what it wrote no longer counts against its bound.
func (lg *backlog) refresh(pk *parked, opts *Options) {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	if !pk.dead {
		lg.updateDeadlinesLocked(pk, opts)
	}
}

// updateDeadlinesLocked is setDeadlinesLocked for a member in the heaps,
// which it reorders (lg.mu held).
func (lg *backlog) updateDeadlinesLocked(pk *parked, opts *Options) {
	lg.setDeadlinesLocked(pk, opts)
	lg.forms[pk.form].byBytes.fix(pk)
	lg.byCount.fix(pk)
}

// formLocked returns the index of the form (proto, deflate) in lg.forms,
// adding it if needed. Called with Hub.mu held for writing.
func (lg *backlog) formLocked(proto, deflate uint8) int {
	for i, fm := range lg.forms {
		if fm.proto == proto && fm.deflate == deflate {
			return i
		}
	}
	lg.mu.Lock()
	lg.forms = append(lg.forms, logForm{proto: proto, deflate: deflate, byBytes: parkHeap{which: 0}})
	lg.mu.Unlock()
	return len(lg.forms) - 1
}

// pullLocked moves what c's room backlog holds for it into its queue
// (c.mu held, c parked): everything, or, with budget ≥ 0, entries until
// their accounted size reaches budget (a writer's pull: a peer that
// stops reading after a pull has cost a budget's worth, not its bound's).
// It returns false if that would take the queue over its bound: the
// connection is then out of the backlog and the caller closes it as a
// slow consumer.
func (c *Conn) pullLocked(budget int) bool {
	pk := c.park
	lg := pk.log
	lg.mu.Lock()
	defer lg.mu.Unlock()
	if pk.dead {
		return false
	}
	opts := &c.hub.opts
	q := &c.q
	end := lg.end()
	next, pulled := pk.next, 0
	for ; next < end && (budget < 0 || pulled < budget); next++ {
		i := int(next - lg.base)
		r := lg.ref(i, pk.form)
		if r == nil || r.f == nil || lg.entries[i].except == c {
			continue
		}
		cost := frameCost(r.f)
		if q.overflows(cost, opts) {
			lg.killLocked(pk)
			lg.trimLocked()
			return false
		}
		c.pushLocked(r.f, false)
		pulled += cost
	}
	if next == pk.next {
		return true
	}
	wasOldest := pk == lg.byNext.min()
	pk.next = next
	lg.updateDeadlinesLocked(pk, opts)
	lg.byNext.fix(pk)
	if wasOldest {
		lg.trimLocked()
	}
	return true
}

// parkLocked parks c in its room if it is in exactly one and still
// behind (see parkBytes). Called with h.mu held for writing.
func (h *Hub) parkLocked(c *Conn) {
	if c.removed || c.roomCount != 1 {
		return
	}
	var rm *room
	for _, r := range c.rooms {
		if r != nil {
			rm = r
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.park != nil {
		return
	}
	if c.q.pinned() < h.parkBytes() {
		c.parkTried = false // its writer caught up meanwhile: ask again when it falls behind
		return
	}
	lg := rm.log
	if lg == nil {
		lg = &backlog{byCount: parkHeap{which: 1}, byNext: parkHeap{which: 2}}
		rm.log = lg
		h.logs[rm] = struct{}{}
	}
	pk := &parked{c: c, rm: rm, log: lg, form: lg.formLocked(c.proto, c.deflate)}
	lg.mu.Lock()
	pk.next = lg.end()
	lg.setDeadlinesLocked(pk, &h.opts)
	lg.forms[pk.form].byBytes.push(pk)
	lg.byCount.push(pk)
	lg.byNext.push(pk)
	lg.members++
	lg.mu.Unlock()
	c.park = pk
	rm.parkMember(c)
	h.stats.parks.Add(1)
	h.stats.parked.Add(1)
}

// unparkLocked makes a parked c an active member of its room again, after
// pulling what the backlog holds for it. Called with h.mu held for
// writing, so that no broadcast comes in between.
func (h *Hub) unparkLocked(c *Conn) {
	c.mu.Lock()
	pk := c.park
	if pk == nil {
		c.mu.Unlock()
		return
	}
	if !c.closing {
		if !c.pullLocked(-1) {
			c.slowConsumerLocked()
		} else if c.q.len > 0 {
			c.startWriterLocked() // one runs already, unless unparked from elsewhere than the writer
		}
	}
	lg := pk.log
	lg.mu.Lock()
	if !pk.dead {
		lg.dropLocked(pk)
		lg.trimLocked()
	}
	lg.members--
	lg.mu.Unlock()
	c.park = nil
	c.parkTried = false // it may fall behind again
	c.mu.Unlock()
	pk.rm.unparkMember(c)
	if lg.members == 0 {
		pk.rm.log = nil
		delete(h.logs, pk.rm)
	}
	h.stats.parked.Add(-1)
}

// closeDead closes the members an append took over their bound.
func closeDead(dead []*parked) {
	for _, pk := range dead {
		c := pk.c
		c.mu.Lock()
		c.slowConsumerLocked()
		c.mu.Unlock()
	}
}

// parkHeap is a binary min-heap of parked members on one of their
// deadlines or their cursor (which: 0 bytes, 1 messages, 2 cursor); each
// member records its position in heapIdx[which].
type parkHeap struct {
	which int
	items []*parked
}

func (hp *parkHeap) key(pk *parked) int64 {
	switch hp.which {
	case 0:
		return pk.bytesDeadline
	case 1:
		return pk.countDeadline
	}
	return int64(pk.next)
}

func (hp *parkHeap) min() *parked {
	if len(hp.items) == 0 {
		return nil
	}
	return hp.items[0]
}

func (hp *parkHeap) push(pk *parked) {
	hp.items = append(hp.items, pk)
	pk.heapIdx[hp.which] = len(hp.items) - 1
	hp.up(len(hp.items) - 1)
}

func (hp *parkHeap) remove(pk *parked) {
	i, last := pk.heapIdx[hp.which], len(hp.items)-1
	if i != last {
		hp.swap(i, last)
	}
	hp.items[last] = nil
	hp.items = hp.items[:last]
	if i != last {
		hp.fixAt(i)
	}
}

func (hp *parkHeap) fix(pk *parked) { hp.fixAt(pk.heapIdx[hp.which]) }

func (hp *parkHeap) fixAt(i int) {
	if !hp.down(i) {
		hp.up(i)
	}
}

func (hp *parkHeap) swap(i, j int) {
	hp.items[i], hp.items[j] = hp.items[j], hp.items[i]
	hp.items[i].heapIdx[hp.which] = i
	hp.items[j].heapIdx[hp.which] = j
}

func (hp *parkHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if hp.key(hp.items[p]) <= hp.key(hp.items[i]) {
			return
		}
		hp.swap(i, p)
		i = p
	}
}

// down sifts i down and reports whether it moved.
func (hp *parkHeap) down(i int) bool {
	start := i
	for {
		l := 2*i + 1
		if l >= len(hp.items) {
			break
		}
		m := l
		if r := l + 1; r < len(hp.items) && hp.key(hp.items[r]) < hp.key(hp.items[l]) {
			m = r
		}
		if hp.key(hp.items[m]) >= hp.key(hp.items[i]) {
			break
		}
		hp.swap(i, m)
		i = m
	}
	return i > start
}
