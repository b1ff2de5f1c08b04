package wsroom

// Sending: every Room, Hub and relay send, and every send received from
// another node, goes through send or deliver below: encode once, publish
// to the other nodes, pick this node's recipients (room.go), fan out to
// their queues (conn_write.go).

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/wsroom/wsroom/internal/frame"
)

// parallelFanout is the recipient count above which a send is split
// across GOMAXPROCS goroutines.
const parallelFanout = 4096

// SendTo queues m for every connection of the given users, whatever rooms
// they are in, and for no one else. Naming a user twice delivers once.
// The cost is proportional to the number of users named.
func (h *Hub) SendTo(m Message, userIDs ...string) error {
	return h.send(m, target{users: userIDs})
}

// Broadcast queues m for every connection of the Hub.
func (h *Hub) Broadcast(m Message) error { return h.send(m, target{all: true}) }

// send is the one send primitive. It encodes m once, starts publishing it
// to the other nodes (with a broker), queues it for t's recipients on this
// node, and then waits for the publish's outcome. It never blocks on a
// peer. It returns an error for a malformed message, after Shutdown, or
// when the message reached this node's recipients but could not be
// published (ErrNotPublished).
func (h *Hub) send(m Message, t target) error {
	p, err := h.prepare(m, t)
	if err != nil {
		return err
	}
	if h.ch.b != nil && t.room != "" && !t.byUser && !p.v1only {
		if hs := h.historyFor(t.room); hs != nil {
			return h.publishHistory(m, t, hs.opts) // delivered here too when the broker hands it back
		}
	}
	pub := h.publish(m, t)
	pc := h.deliverSend(p, t)
	err = pub.result()
	pc.apply(h)
	return err
}

// pace is what a send asks of its sender once it has queued a message.
type pace uint8

const (
	paceNone pace = iota
	// paceYield: a recipient's queue is more than half full: let its
	// writer run before queueing more (see fanout).
	paceYield
	// paceWait: a parked member is more than half-way to its bound (see
	// backlog.appendLocked): wait until the writers queued so far have
	// run (awaitWriters).
	paceWait
)

// apply does what p asks of the sender.
func (p pace) apply(h *Hub) {
	switch p {
	case paceYield:
		runtime.Gosched()
	case paceWait:
		h.awaitWriters()
	}
}

// deliverSend delivers a send, local or received from another node, to
// t's recipients here. A broadcast in a room with history is first kept
// in it, and its position goes in its wsroom.v1 header; the history's lock
// is held until every member's queue has it, so that positions follow
// queue order.
//
// When a HistoryBroker keeps the rooms' history (h.ch.b), positions are
// the broker's: a broadcast that arrives here without one (published
// without history, by an Emitter without EmitterOptions.History or a node
// whose Options.History keeps none for the room) is delivered as it is,
// unpositioned and not kept. Giving it the node's next offset would take
// the position of the broker's next message, which this node would then
// skip as already delivered.
func (h *Hub) deliverSend(p *prepared, t target) pace {
	if t.room != "" && !t.byUser && !p.v1only && h.opts.History != nil && h.ch.b == nil {
		if hs := h.lockHistory(t.room); hs != nil {
			except := ""
			if t.except != nil {
				except = t.except.ConnID()
			}
			pos := hs.append(p.op(), p.data, except, h.now())
			p.header = appendRoomHeader(nil, t.room, &pos)
			pc := h.deliver(p, t)
			hs.mu.Unlock()
			return pc
		}
	}
	return h.deliver(p, t)
}

// deliver queues p for t's recipients on this node: a snapshot of them is
// taken under the index lock, and the queues are filled after it is
// released. A room broadcast is appended once to the room's backlog for
// its parked members in the same read section (park.go), and a hub-wide
// one to the hub's backlog, its parked connections left out of the
// snapshot. After the fan-out, connections the append took over their
// bound are closed (Hub.settle), and recipients whose queue reached
// parkBytes are parked.
func (h *Hub) deliver(p *prepared, t target) pace {
	buf := getConns()
	var out parkOut
	var lag bool
	h.mu.RLock()
	*buf = h.appendRecipientsLocked(*buf, t)
	switch {
	case t.all && h.hubLog != nil:
		// Parked connections get it from the hub's backlog.
		*buf = slices.DeleteFunc(*buf, func(c *Conn) bool { return c.park != nil })
		lag = h.hubLog.appendLocked(p, t.except, &h.logSeq, &h.opts, &out)
	case t.room != "" && !t.byUser:
		if rm := h.rooms[t.room]; rm != nil && rm.log != nil {
			lag = rm.log.appendLocked(p, t.except, &h.logSeq, &h.opts, &out)
		}
	}
	h.mu.RUnlock()
	h.settle(&out)
	backlog, park := h.fanout(p, *buf, t.except)
	putConns(buf)
	if park != nil {
		h.mu.Lock()
		var via *room // the backlog whose traffic parks them
		if !t.all {
			via = h.rooms[t.room]
		}
		for _, c := range park {
			h.parkLocked(c, via)
		}
		h.mu.Unlock()
	}
	switch {
	case lag:
		return paceWait
	case backlog:
		return paceYield
	}
	return paceNone
}

// prepare encodes m for a send to t through the hub, or returns
// ErrHubClosed after Shutdown.
func (h *Hub) prepare(m Message, t target) (*prepared, error) {
	if h.closed.Load() {
		return nil, ErrHubClosed
	}
	p, err := h.encode(m)
	if err == nil && t.room != "" && !p.v1only {
		p.header = appendRoomHeader(nil, t.room, nil)
	}
	return p, err
}

// prepared is a message encoded once for any number of recipients: the
// plain frame, and lazily at most one compressed frame per distinct
// compression setting among the recipients, and the same for wsroom.v1
// recipients. Queues refer to its frames (frameFor), so it lives as long
// as the last recipient's queue does. The lazy forms are made during the
// send, while data is still the caller's.
type prepared struct {
	plain  *[]byte          // a frame reference (see newFrame)
	z      *compressedForms // nil when no recipient may get a compressed frame
	data   []byte           // the payload (the caller's until the send returns)
	header []byte           // the wsroom.v1 header ({} unless set)
	v1only bool             // a wsroom.v1 control message: no plain form
	h      *Hub

	v1once sync.Once
	v1     v1Form
}

// encode encodes m: the plain frame now, the compressed forms (see
// compress.go) when a recipient first needs them.
func (h *Hub) encode(m Message) (*prepared, error) {
	if m.Type == v1Control {
		return &prepared{header: m.Data, v1only: true, h: h}, nil
	}
	b, err := m.encode()
	if err != nil {
		return nil, err
	}
	p := &prepared{plain: newFrame(b), data: m.Data, header: emptyHeader, h: h}
	p.z = h.compressible(frame.Opcode(m.Type), m.Data)
	return p, nil
}

// compressible returns the compressed forms of a message, or nil if it is
// not to be compressed (compression off, or under the threshold).
func (h *Hub) compressible(op frame.Opcode, data []byte) *compressedForms {
	if h.compresses(len(data)) {
		return &compressedForms{op: op, data: data, level: h.opts.Compression.Level, stats: &h.deflateStats}
	}
	return nil
}

// compresses reports whether a payload of n bytes is sent compressed to
// the connections that negotiated compression.
func (h *Hub) compresses(n int) bool {
	z := &h.opts.Compression
	return z.Enabled && n >= z.Threshold && n > 0
}

// frameFor returns the frame to queue for c, or nil if p is not for c.
func (p *prepared) frameFor(c *Conn) *[]byte { return p.frameForm(c.proto, c.deflate) }

// frameForm returns the frame for a recipient speaking proto whose
// compression window is 2^deflate bytes (0: no compression), or nil if p
// is not for such a recipient (a wsroom.v1 control message to a plain
// client). It makes the form on first use: call it during the send.
func (p *prepared) frameForm(proto, deflate uint8) *[]byte {
	plain, z := p.plain, p.z
	if proto == protoV1 || p.v1only {
		if proto != protoV1 {
			return nil // not for plain clients
		}
		p.v1once.Do(p.makeV1)
		plain, z = p.v1.plain, p.v1.z
	}
	if z == nil || deflate == 0 {
		return plain
	}
	return z.frame(deflate, plain)
}

// op is the message's opcode (text or binary), from its plain frame.
func (p *prepared) op() frame.Opcode { return frame.Opcode((*p.plain)[0] & 0x0f) }

// makeV1 makes the wsroom.v1 forms: header, newline, data.
func (p *prepared) makeV1() {
	if p.v1only {
		p.v1.plain = controlFrame(p.header)
		return
	}
	op := p.op()
	f := appendV1Frame(nil, op, p.header, p.data)
	p.v1.plain = newFrame(f)
	p.v1.z = p.h.compressible(op, f[len(f)-len(p.header)-1-len(p.data):])
}

// fanout queues the prepared message pm for every connection in conns
// except one. Large fan-outs are split across cores; the goroutines are
// joined before it returns. It reports a backlog when a recipient's queue
// is more than half full: the sender then yields the processor once (see
// send), so that a burst cannot fill the queues of readers that keep up
// faster than their writers get to run — on one core especially, where
// the writers wait for the sender's time slice to end. A sender never
// waits for a peer. It also returns the recipients whose queue reached
// parkBytes, for the caller to park (park.go).
func (h *Hub) fanout(pm *prepared, conns []*Conn, except *Conn) (backlog bool, park []*Conn) {
	p := runtime.GOMAXPROCS(0)
	if len(conns) < h.parallelMin || p == 1 {
		return enqueueAll(pm, conns, except, nil)
	}
	return fanoutParallel(pm, conns, except, p)
}

// fanoutParallel is fanout on p goroutines (apart, so that the variables
// its goroutines share escape only on this path).
func fanoutParallel(pm *prepared, conns []*Conn, except *Conn, p int) (backlog bool, park []*Conn) {
	var wg sync.WaitGroup
	var any atomic.Bool
	var mu sync.Mutex
	chunk := (len(conns) + p - 1) / p
	for lo := 0; lo < len(conns); lo += chunk {
		part := conns[lo:min(lo+chunk, len(conns))]
		wg.Go(func() {
			b, pk := enqueueAll(pm, part, except, nil)
			if b {
				any.Store(true)
			}
			if pk != nil {
				mu.Lock()
				park = append(park, pk...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return any.Load(), park
}

// enqueueAll queues pm for conns but except, appending to park the
// connections to park.
func enqueueAll(pm *prepared, conns []*Conn, except *Conn, park []*Conn) (backlog bool, _ []*Conn) {
	for _, c := range conns {
		if c == except {
			continue
		}
		if f := pm.frameFor(c); f != nil {
			st, _ := c.enqueueFrame(f, false, true)
			if st&queueBacklog != 0 {
				backlog = true
			}
			if st&queuePark != 0 {
				park = append(park, c)
			}
		}
	}
	return backlog, park
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
