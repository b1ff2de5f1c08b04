package wsroom

// Parking: how a member whose socket takes nothing stops costing its
// rooms' senders anything (docs/fairness.md).
//
// A broadcast queues a reference to its frame in every member's queue; a
// peer that reads nothing would cost that on every broadcast until its
// queue reaches SendQueueBytes, thousands of appends per stalled peer.
// Instead, a connection whose queue holds parkBytes (its writer is
// behind) is parked in each of its rooms at once: a room's members are
// partitioned, members[:active] get broadcasts in their queues,
// members[active:] are parked, and a broadcast appends its frames once to
// the room's backlog, whatever the number of parked members. A hub-wide
// broadcast is appended once to the hub's backlog, which every parked
// connection also has a place in. Every entry is numbered from one
// hub-wide counter (Hub.logSeq), taken under its backlog's lock.
//
// A parked connection's writer, once its queue is empty, pulls up to
// parkBytes of what its backlogs hold for it into its queue, merging them
// by entry number with all their locks held, so a sender's sends to
// several of its rooms arrive in the order they were made; it unparks
// once it has caught up. Anything else sent to a parked connection (a
// user send, Conn.Send, a wsroom.v1 control message, a close) pulls
// everything first, so a connection gets its frames in the order they
// were sent, parked or not; pings and pongs need not. A message is in a
// connection's queue or in one of its backlogs for it, never both.
//
// Bounds. The bound (SendQueueBytes, SendQueueMessages) covers the queue,
// the writer's batch and what all of a connection's backlogs hold for it.
// No append may look at a connection's other backlogs (that would cost
// per member again), so the free part of its bound is shared out among
// its places (allotLocked): each place has two deadlines in its backlog's
// running totals, the bytes (of its frame form) and the messages it may
// still gain. An append that takes a place past a deadline closes the
// connection (1008, counted) if that place held all of the free part;
// otherwise the sender reviews the connection after its fan-out, with all
// its backlogs locked: over its bound, it is closed; within, the free
// part is shared out again, in proportion to what each place gained since
// the last share-out. A busy room and quiet ones thus cost one review or
// none over a stalled peer's life. Heaps per bound find the places past a
// deadline in O(log n). Each backlog keeps entries from the oldest cursor
// among its live places on, so its memory is bounded by the slowest such
// connection's bound.
//
// Pacing. A send that takes a parked member past half its share makes
// its sender wait for this node's queued writes (Hub.awaitWriters), once
// per parkBytes appended: see backlog.appendLocked.
//
// A connection in more than maxParkRooms rooms does not park: its queue
// fills, up to its bound. Joining and leaving a room unpark first.
//
// Locks: Hub.mu, then Conn.mu, then backlogs in ascending id (a
// connection's places are kept in that order). An append holds one
// backlog's lock, in the recipient snapshot's read section of Hub.mu
// (deliver), so a broadcast sees a connection either active or parked.
// Parking and unparking take Hub.mu for writing.

import (
	"cmp"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
)

// parkBytes is how much a connection's queue (the writer's batch included)
// holds when it is parked: 64 KiB, or a quarter of SendQueueBytes if that
// is less. A stalled peer thus costs the room's senders at most about
// that much queueing before it costs nothing, while a reader that keeps
// up rarely has that much waiting.
func (h *Hub) parkBytes() int { return parkBytesFor(&h.opts) }

func parkBytesFor(opts *Options) int { return min(64<<10, opts.SendQueueBytes/4) }

// maxParkRooms is the most rooms a connection may be in and park: a pull
// merges its rooms' backlogs with their locks held, and parking and
// unparking touch every one of them.
const maxParkRooms = 64

// backlog is what a room's broadcasts (or the hub's, for the hub's
// backlog) left for its parked connections.
type backlog struct {
	id      uint64 // lock order among backlogs (ascending)
	mu      sync.Mutex
	base    uint64     // sequence number of entries[0]
	entries []logEntry // in send order
	refs    []logRef   // the entries' frames: per entry, one per form known when it was appended
	forms   []logForm  // the frame forms of the parked members; appended under Hub.mu and mu
	byCount parkHeap   // watched places by message deadline
	byNext  parkHeap   // live places by cursor: the oldest holds the backlog's start
	members int        // places, closed connections' included, until they unpark (under Hub.mu and mu)
	pending int64      // bytes appended since the last lag reported (see appendLocked)
}

// logEntry is one broadcast in a backlog.
type logEntry struct {
	seq    uint64 // hub-wide send order (Hub.logSeq): pulls merge backlogs by it
	ref    int    // index in refs of its first form's frame
	except *Conn  // BroadcastExcept's connection left out, or nil
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
	byBytes        parkHeap // its watched places by byte deadline
}

// parking is a parked connection's places, one in each of its rooms'
// backlogs and one in the hub's, in lock order. Conn.park points at it
// while the connection is parked.
type parking struct {
	places []*parked
	dead   atomic.Bool // over its bound: being closed (set under one place's backlog lock)
}

// parked is a connection's place in one backlog.
type parked struct {
	c    *Conn
	pg   *parking
	rm   *room // nil: the hub's backlog
	log  *backlog
	form int    // index in log.forms
	next uint64 // sequence number of the first entry not pulled yet

	// Its share of the connection's bound (allotLocked): the place is
	// past it once its form's cum passes bytesDeadline or the log's end
	// passes countDeadline. all: the share was the whole free part, so
	// passing it is passing the bound.
	bytesDeadline, countDeadline int64
	all                          bool
	markCum                      int64  // its form's cum at the last share-out
	markEnd                      uint64 // the log's end then
	share                        int64  // the bytes it was given then

	heapIdx [3]int // positions in byBytes, byCount and byNext
	watched bool   // in byBytes and byCount
	listed  bool   // in byNext
}

// parkOut collects what appends found: connections to close as slow
// consumers (one place each), and places past their share whose
// connections the sender reviews (Hub.settle).
type parkOut struct {
	dead, review []*parked
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

// held returns what the backlog holds for pk: the accounted bytes in its
// form, and the entries (lg.mu held).
func (lg *backlog) held(pk *parked) (bytes, n int64) {
	cum := lg.forms[pk.form].cum
	before := cum
	if pk.next < lg.end() {
		before = lg.ref(int(pk.next-lg.base), pk.form).before
	}
	return cum - before, int64(lg.end() - pk.next)
}

// appendLocked adds a broadcast of p that left out except, numbered from
// seqs. Places it takes past their share go to out (see parkOut). It
// reports a lag when a place is more than half-way to its share: the
// sender then waits until the writers queued so far have run
// (Hub.awaitWriters), so that a reader whose writer has not had the
// processor yet (a busy core, where the writers wait behind the sender
// and behind the first, costly writes to thousands of stalled sockets) is
// not left behind by its bound. A stalled member stays half-way until it
// is closed, so the lag is reported once per parkBytes appended, not per
// broadcast: the writers of the readers still get batches meanwhile.
// Called with Hub.mu held for reading (so that forms do not change): the
// forms are made here, during the send, while p's data is still the
// caller's.
func (lg *backlog) appendLocked(p *prepared, except *Conn, seqs *atomic.Uint64, opts *Options, out *parkOut) (lag bool) {
	var made [8]*[]byte
	frames := made[:0]
	for i := range lg.forms {
		frames = append(frames, p.frameForm(lg.forms[i].proto, lg.forms[i].deflate))
	}
	lg.mu.Lock()
	defer lg.mu.Unlock()
	lg.entries = append(lg.entries, logEntry{seq: seqs.Add(1), ref: len(lg.refs), except: except})
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
			lg.overLocked(pk, out)
		}
		if pk := fm.byBytes.min(); pk != nil && 2*(pk.bytesDeadline-fm.cum) < int64(opts.SendQueueBytes) {
			behind = true
		}
	}
	for pk := lg.byCount.min(); pk != nil && pk.countDeadline < end; pk = lg.byCount.min() {
		lg.overLocked(pk, out)
	}
	if pk := lg.byCount.min(); pk != nil && 2*(pk.countDeadline-end) < int64(opts.SendQueueMessages) {
		behind = true
	}
	lg.pending += size
	if behind && lg.pending >= int64(parkBytesFor(opts)) {
		lag, lg.pending = true, 0
	}
	lg.trimLocked()
	return lag
}

// overLocked deals with a place an append took past its share: its
// connection is over its bound if the share was the whole free part (it
// leaves every heap here and goes to out.dead, once per connection);
// otherwise it stops being watched here until the sender reviews it
// (out.review). Called with lg.mu held.
func (lg *backlog) overLocked(pk *parked, out *parkOut) {
	if pk.all || pk.pg.dead.Load() {
		lg.dropLocked(pk)
		if !pk.pg.dead.Swap(true) {
			out.dead = append(out.dead, pk)
		}
		return
	}
	lg.unwatchLocked(pk)
	out.review = append(out.review, pk)
}

// dropLocked takes a place out of the backlog's heaps, so that it neither
// holds entries nor is closed from here. Called with lg.mu held.
func (lg *backlog) dropLocked(pk *parked) {
	lg.unwatchLocked(pk)
	if pk.listed {
		lg.byNext.remove(pk)
		pk.listed = false
	}
}

// unwatchLocked takes a place out of the deadline heaps: no append closes
// or reviews it from here until it is watched again (allotLocked). Called
// with lg.mu held.
func (lg *backlog) unwatchLocked(pk *parked) {
	if pk.watched {
		lg.forms[pk.form].byBytes.remove(pk)
		lg.byCount.remove(pk)
		pk.watched = false
	}
}

// trimLocked forgets the entries every live place has pulled, once they
// are at least half of the backlog (amortised O(1) per entry).
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

// formLocked returns the index of the form (proto, deflate) in lg.forms,
// adding it if needed. Called with Hub.mu held for writing, which keeps
// lg.forms from growing, but not lg.mu: it reads only the forms' proto
// and deflate, which never change. (The rest of a form changes under
// lg.mu alone: a range loop copying whole forms raced with a sender's
// share-out pushing onto byBytes.)
func (lg *backlog) formLocked(proto, deflate uint8) int {
	for i := range lg.forms {
		if lg.forms[i].proto == proto && lg.forms[i].deflate == deflate {
			return i
		}
	}
	lg.mu.Lock()
	lg.forms = append(lg.forms, logForm{proto: proto, deflate: deflate, byBytes: parkHeap{which: 0}})
	lg.mu.Unlock()
	return len(lg.forms) - 1
}

// lock takes the locks of every backlog pg has a place in, in lock order.
func (pg *parking) lock() {
	for _, pk := range pg.places {
		pk.log.mu.Lock()
	}
}

func (pg *parking) unlock() {
	for _, pk := range pg.places {
		pk.log.mu.Unlock()
	}
}

// killLocked marks pg over its bound and takes its places out of their
// backlogs (their locks held).
func (pg *parking) killLocked() {
	pg.dead.Store(true)
	for _, pk := range pg.places {
		pk.log.dropLocked(pk)
		pk.log.trimLocked()
	}
}

// allotLocked shares the free part of c's bound out among its places
// (c.mu and all its backlogs' locks held): the bound less its queue, its
// writer's batch and what its backlogs hold for it. A place gets a part
// in proportion to what it gained since the last share-out (or, if none
// gained anything, to the shares then; at parking, fav gets it all). While
// the free part is ample, every place that has had a share or gained
// since keeps parkBytes of it, so that a quiet room is not reviewed on
// each of its messages; near the bound, shares follow the traffic alone.
// The queue only shrinks until the next share-out, so the deadlines are
// conservative. It reports false if c is over its bound.
func (c *Conn) allotLocked(fav *parked) bool {
	pg := c.park
	opts := &c.hub.opts
	freeB := int64(opts.SendQueueBytes - c.q.pinned())
	freeN := int64(opts.SendQueueMessages - int(c.q.len))
	var gain, prev uint64
	used := 0 // places that keep a reserve while the free part is ample
	for _, pk := range pg.places {
		b, n := pk.log.held(pk)
		freeB -= b
		freeN -= n
		g := pk.gain()
		gain += g
		prev += uint64(pk.share)
		if g > 0 || pk.share > 0 {
			used++
		}
	}
	if freeB < 0 || freeN < 0 {
		return false
	}
	weight := func(pk *parked) uint64 {
		switch {
		case gain > 0:
			return pk.gain()
		case prev > 0:
			return uint64(pk.share)
		case pk == fav || (fav == nil && pk == pg.places[0]):
			return 1
		}
		return 0
	}
	sum := uint64(1)
	switch {
	case gain > 0:
		sum = gain
	case prev > 0:
		sum = prev
	}
	var resB, resN int64 // each used place's reserve
	if pb := int64(c.hub.parkBytes()); freeB >= 4*int64(used)*pb {
		resB, resN = pb, freeN/int64(4*max(used, 1))
	}
	restB, restN := freeB-int64(used)*resB, freeN-int64(used)*resN
	for _, pk := range pg.places {
		w := weight(pk)
		shareB, shareN := mulDiv(restB, w, sum), mulDiv(restN, w, sum)
		if pk.share > 0 || pk.gain() > 0 {
			shareB, shareN = shareB+resB, shareN+resN
		}
		lg := pk.log
		fm := &lg.forms[pk.form]
		pk.bytesDeadline, pk.countDeadline = fm.cum+shareB, int64(lg.end())+shareN
		pk.all = shareB == freeB && shareN == freeN
		pk.markCum, pk.markEnd, pk.share = fm.cum, lg.end(), shareB
		if pk.watched {
			fm.byBytes.fix(pk)
			lg.byCount.fix(pk)
		} else if pk.listed {
			fm.byBytes.push(pk)
			lg.byCount.push(pk)
			pk.watched = true
		}
	}
	return true
}

// gain is what pk's backlog gained for it since the last share-out: the
// bytes in its form, and entryCost per entry (an entry with no frame in
// its form still counts against SendQueueMessages). Called with its
// backlog's lock held.
func (pk *parked) gain() uint64 {
	lg := pk.log
	return uint64(lg.forms[pk.form].cum-pk.markCum) + (lg.end()-pk.markEnd)*entryCost
}

// reallotLocked is allotLocked that, if c is over its bound, takes it out
// of its backlogs (killLocked) and reports false: the caller closes it as
// a slow consumer.
func (c *Conn) reallotLocked(fav *parked) bool {
	if c.allotLocked(fav) {
		return true
	}
	c.park.killLocked()
	return false
}

// mulDiv returns a·w/sum for 0 ≤ a and w ≤ sum, without overflow.
func mulDiv(a int64, w, sum uint64) int64 {
	hi, lo := bits.Mul64(uint64(a), w)
	q, _ := bits.Div64(hi, lo, sum)
	return int64(q)
}

// refreshLocked shares c's bound out again after its writer finished a
// batch (c.mu held, c parked), so that what it wrote no longer counts. It
// reports false if c is over its bound (it is then out of its backlogs,
// to be closed by the caller).
func (c *Conn) refreshLocked() bool {
	pg := c.park
	pg.lock()
	defer pg.unlock()
	return !pg.dead.Load() && c.reallotLocked(nil)
}

// pullLocked moves what c's backlogs hold for it into its queue (c.mu
// held, c parked), merged in send order: everything, or, with budget ≥ 0,
// entries until their accounted size reaches budget (a writer's pull: a
// peer that stops reading after a pull has cost a budget's worth, not its
// bound's). It returns false if c is over its bound: it is then out of
// its backlogs and the caller closes it as a slow consumer.
func (c *Conn) pullLocked(budget int) bool {
	pg := c.park
	pg.lock()
	defer pg.unlock()
	if pg.dead.Load() {
		return false
	}
	opts := &c.hub.opts
	q := &c.q
	pulled, moved := 0, false
	for budget < 0 || pulled < budget {
		var pk *parked
		var seq uint64
		for _, x := range pg.places {
			if lg := x.log; x.next < lg.end() {
				if s := lg.entries[x.next-lg.base].seq; pk == nil || s < seq {
					pk, seq = x, s
				}
			}
		}
		if pk == nil {
			break
		}
		lg := pk.log
		i := int(pk.next - lg.base)
		pk.next++
		moved = true
		r := lg.ref(i, pk.form)
		if r == nil || r.f == nil || lg.entries[i].except == c {
			continue
		}
		cost := frameCost(r.f)
		if q.overflows(cost, opts) {
			pg.killLocked()
			return false
		}
		c.pushLocked(r.f, false)
		pulled += cost
	}
	if !moved {
		return true
	}
	for _, pk := range pg.places {
		pk.log.byNext.fix(pk)
		pk.log.trimLocked()
	}
	return c.reallotLocked(nil)
}

// parkLocked parks c in each of its rooms, if it is in at most
// maxParkRooms and still behind (see parkBytes). via is the room whose
// broadcast found it behind (nil: a hub-wide one): its place gets the
// whole free part of c's bound at first. Called with h.mu held for
// writing.
func (h *Hub) parkLocked(c *Conn, via *room) {
	if c.removed || c.roomCount > maxParkRooms {
		return
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
	pg := &parking{places: make([]*parked, 0, c.roomCount+1)}
	var fav *parked
	place := func(rm *room, lg *backlog) {
		pk := &parked{c: c, pg: pg, rm: rm, log: lg, form: lg.formLocked(c.proto, c.deflate)}
		pg.places = append(pg.places, pk)
		if rm == via {
			fav = pk
		}
	}
	for _, rm := range c.rooms {
		if rm != nil {
			if rm.log == nil {
				rm.log = h.newBacklogLocked()
			}
			place(rm, rm.log)
		}
	}
	if h.hubLog == nil {
		h.hubLog = h.newBacklogLocked()
	}
	place(nil, h.hubLog)
	slices.SortFunc(pg.places, func(a, b *parked) int { return cmp.Compare(a.log.id, b.log.id) })
	c.park = pg
	pg.lock()
	for _, pk := range pg.places {
		lg := pk.log
		pk.next, pk.markCum, pk.markEnd = lg.end(), lg.forms[pk.form].cum, lg.end()
		lg.byNext.push(pk)
		pk.listed = true
		lg.members++
	}
	c.allotLocked(fav) // within its bound: its backlogs hold nothing for it yet
	pg.unlock()
	for _, pk := range pg.places {
		if pk.rm != nil {
			pk.rm.parkMember(c)
		}
	}
	h.stats.parks.Add(1)
	h.stats.parked.Add(1)
}

// newBacklogLocked returns an empty backlog with the next id (h.mu held
// for writing).
func (h *Hub) newBacklogLocked() *backlog {
	h.logIDs++
	return &backlog{id: h.logIDs, byCount: parkHeap{which: 1}, byNext: parkHeap{which: 2}}
}

// unparkLocked makes a parked c an active member of its rooms again,
// after pulling what its backlogs hold for it. Called with h.mu held for
// writing, so that no broadcast comes in between.
func (h *Hub) unparkLocked(c *Conn) {
	c.mu.Lock()
	pg := c.park
	if pg == nil {
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
	pg.lock()
	for _, pk := range pg.places {
		pk.log.dropLocked(pk)
		pk.log.trimLocked()
		pk.log.members--
	}
	pg.unlock()
	c.park = nil
	c.parkTried = false // it may fall behind again
	c.mu.Unlock()
	for _, pk := range pg.places {
		switch {
		case pk.rm != nil:
			pk.rm.unparkMember(c)
			if pk.log.members == 0 {
				pk.rm.log = nil
			}
		case pk.log.members == 0:
			h.hubLog = nil
		}
	}
	h.stats.parked.Add(-1)
}

// settle acts on what a send's appends found (see parkOut), after its
// fan-out: it closes the connections over their bound, and reviews those
// with a place past its share, closing them if they are over their bound
// and sharing the free part out again if not.
func (h *Hub) settle(out *parkOut) {
	for _, pk := range out.dead {
		c := pk.c
		c.mu.Lock()
		if c.park == pk.pg {
			pk.pg.lock()
			pk.pg.killLocked() // out of its other backlogs at once
			pk.pg.unlock()
		}
		c.slowConsumerLocked()
		c.mu.Unlock()
	}
	for _, pk := range out.review {
		c := pk.c
		c.mu.Lock()
		if pg := pk.pg; c.park == pg && !pg.dead.Load() {
			pg.lock()
			ok := c.reallotLocked(pk)
			pg.unlock()
			if !ok {
				c.slowConsumerLocked()
			}
		}
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
