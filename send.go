package wsroom

// Sending: every Room, Hub and relay send, and every send received from
// another node, goes through send or deliver below: encode once, publish
// to the other nodes, pick this node's recipients (room.go), fan out to
// their queues (conn_write.go).

import (
	"runtime"
	"sync"

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
	p, err := h.prepare(m)
	if err != nil {
		return err
	}
	pub := h.publish(m, t)
	h.deliver(p, t)
	return pub.result()
}

// deliver queues p for t's recipients on this node: a snapshot of them is
// taken under the index lock, and the queues are filled after it is
// released.
func (h *Hub) deliver(p *prepared, t target) {
	buf := getConns()
	h.mu.RLock()
	*buf = h.appendRecipientsLocked(*buf, t)
	h.mu.RUnlock()
	h.fanout(p, *buf, t.except)
	putConns(buf)
}

// prepare encodes m for a send through the hub, or returns ErrHubClosed
// after Shutdown.
func (h *Hub) prepare(m Message) (*prepared, error) {
	if h.closed.Load() {
		return nil, ErrHubClosed
	}
	return h.encode(m)
}

// prepared is a message encoded once for any number of recipients: the
// plain frame, and lazily at most one compressed frame per distinct
// compression setting among the recipients. Queues refer to its frames
// (frameFor), so it lives as long as the last recipient's queue does.
type prepared struct {
	plain []byte
	z     *compressedForms // nil when no recipient may get a compressed frame
}

// encode encodes m: the plain frame now, the compressed forms (see
// compress.go) when a recipient first needs them.
func (h *Hub) encode(m Message) (*prepared, error) {
	b, err := m.encode()
	if err != nil {
		return nil, err
	}
	p := &prepared{plain: b}
	if z := &h.opts.Compression; z.Enabled && len(m.Data) >= z.Threshold && len(m.Data) > 0 {
		p.z = &compressedForms{op: frame.Opcode(m.Type), data: m.Data, level: z.Level, stats: &h.deflateStats}
	}
	return p, nil
}

// frameFor returns the frame to queue for c.
func (p *prepared) frameFor(c *Conn) *[]byte {
	if p.z == nil || c.deflate == 0 {
		return &p.plain
	}
	return p.z.frame(c.deflate, &p.plain)
}

// fanout queues the prepared message pm for every connection in conns
// except one. Large fan-outs are split across cores; the goroutines are
// joined before it returns.
func (h *Hub) fanout(pm *prepared, conns []*Conn, except *Conn) {
	p := runtime.GOMAXPROCS(0)
	if len(conns) < h.parallelMin || p == 1 {
		enqueueAll(pm, conns, except)
		return
	}
	var wg sync.WaitGroup
	chunk := (len(conns) + p - 1) / p
	for lo := 0; lo < len(conns); lo += chunk {
		part := conns[lo:min(lo+chunk, len(conns))]
		wg.Go(func() { enqueueAll(pm, part, except) })
	}
	wg.Wait()
}

func enqueueAll(pm *prepared, conns []*Conn, except *Conn) {
	for _, c := range conns {
		if c != except {
			c.enqueue(pm.frameFor(c), false)
		}
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
