package wsroom

import (
	"context"
	"crypto/rand"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsroom/wsroom/internal/frame"
	"github.com/wsroom/wsroom/internal/wire"
)

// Hub owns a set of WebSocket connections, their rooms and the user index.
// It is an http.Handler; see New. All methods are safe for concurrent use.
type Hub struct {
	opts   Options
	node   wire.NodeID    // random: names this hub to other nodes and prefixes its ConnIDs
	seq    atomic.Uint64  // the last connection number given (see Conn.ConnID)
	start  time.Time      // origin of the hub clock
	wg     sync.WaitGroup // every connection, the heartbeat and the poller
	closed atomic.Bool    // Shutdown has begun

	mu       sync.RWMutex // guards the fields below and Conn.rooms/hubIdx/removed
	conns    []*Conn
	rooms    map[string]*room
	users    map[string][]*Conn
	beating  bool          // the heartbeat goroutine runs
	stopBeat chan struct{} // closed to stop it

	bk   brokerState // Options.Broker and the hub's side of it
	poll hubPoll     // the readiness poller (Linux)

	stats       counters
	parallelMin int // fan-outs this large are split across cores (parallelFanout; lowered by tests)

	deflateStats deflateStats // compression work (compress.go)
}

// New returns a Hub configured by opts (see Options for the defaults).
// It panics, with a "wsroom:" message, if opts cannot work (for instance
// a PongTimeout shorter than PingInterval). A Hub starts no goroutine
// until its first connection; call Shutdown to end its connections.
func New(opts Options) *Hub {
	h := &Hub{
		opts:  opts.withDefaults(),
		start: time.Now(),
		rooms: make(map[string]*room),
		users: make(map[string][]*Conn),

		parallelMin: parallelFanout,
	}
	rand.Read(h.node[:])
	h.startBroker()
	return h
}

// shutdownReason is the reason of the 1001 close frames Shutdown sends.
const shutdownReason = "server shutdown"

// shutdownFrame is the close frame a handshake that lost the race with
// Shutdown gets, after its 101.
var shutdownFrame = frame.AppendClose(nil, uint16(StatusGoingAway), shutdownReason)

// now is the hub clock: monotonic nanoseconds since New.
func (h *Hub) now() int64 { return int64(time.Since(h.start)) }

// tooManyConnsFrame refuses a connection over Options.MaxConnsPerUser.
var tooManyConnsFrame = frame.AppendClose(nil, uint16(StatusPolicyViolation), "too many connections for this user")

// register adds c to the hub. It returns nil, or the close frame that
// refuses c: Shutdown has begun (1001), or c's user already has
// MaxConnsPerUser connections (1008).
func (h *Hub) register(c *Conn) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed.Load() {
		return shutdownFrame
	}
	if most := h.opts.MaxConnsPerUser; most > 0 && len(h.users[c.id]) >= most {
		return tooManyConnsFrame
	}
	h.wg.Add(1)
	c.hubIdx = int32(len(h.conns))
	h.conns = append(h.conns, c)
	c.userIdx = int32(len(h.users[c.id]))
	h.users[c.id] = append(h.users[c.id], c)
	h.startHeartbeatLocked()
	return nil
}

// unregister removes c from the hub, its rooms and the user index, then
// runs OnLeave for each room it was in.
func (h *Hub) unregister(c *Conn) {
	h.mu.Lock()
	if c.removed {
		h.mu.Unlock()
		return
	}
	c.removed = true
	last := len(h.conns) - 1
	moved := h.conns[last]
	h.conns[c.hubIdx] = moved
	moved.hubIdx = c.hubIdx
	h.conns[last] = nil
	h.conns = h.conns[:last]
	if uc := h.users[c.id]; len(uc) <= 1 {
		delete(h.users, c.id)
	} else {
		last := len(uc) - 1
		moved := uc[last]
		uc[c.userIdx] = moved
		moved.userIdx = c.userIdx
		uc[last] = nil
		h.users[c.id] = uc[:last]
	}
	rooms := c.liveRoomsLocked()
	for _, rm := range rooms {
		h.removeMemberLocked(rm, c)
	}
	h.mu.Unlock()
	if h.bk.b != nil {
		h.syncInterest(connTopics(c.id, rooms)...)
	}
	for _, rm := range rooms {
		c.presence(h.opts.OnLeave, "OnLeave", rm.name)
	}
}

// Shutdown refuses new handshakes (503), lets every connection flush what
// is queued, closes each with 1001 "server shutdown", and waits until every
// goroutine the hub started has returned. If ctx ends first, the remaining
// connections are dropped at once and Shutdown returns ctx.Err() after
// joining their goroutines. Sends after Shutdown return ErrHubClosed.
// Shutdown closes the Broker, if any, first: nothing more is published
// or received. Shutdown may be called more than once.
// http.Server.Shutdown does not wait for hijacked connections: call both.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closed.Store(true)
	conns := append([]*Conn(nil), h.conns...)
	if h.beating {
		close(h.stopBeat)
		h.beating = false
	}
	h.mu.Unlock()
	h.closeBroker()
	for _, c := range conns {
		c.startClose(&CloseError{Code: StatusGoingAway, Reason: shutdownReason}, false)
	}
	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	for _, c := range conns {
		c.abort(&CloseError{Code: StatusAbnormalClosure, Reason: "shutdown deadline", Err: ctx.Err()})
	}
	<-done
	return ctx.Err()
}

// counters are the hub's running totals.
type counters struct {
	accepted, rejected    atomic.Uint64
	messagesIn, bytesIn   atomic.Uint64
	messagesOut, bytesOut atomic.Uint64
	slowConsumers, panics atomic.Uint64
	brokerOut, brokerIn   atomic.Uint64
	brokerErrors          atomic.Uint64
}

// Stats is a snapshot of a Hub's state and running totals.
type Stats struct {
	Connections int // open connections
	Rooms       int // rooms with at least one member
	Users       int // distinct user IDs among open connections

	Accepted uint64 // handshakes completed
	Rejected uint64 // handshakes refused, whatever the reason

	MessagesIn  uint64 // data messages read
	BytesIn     uint64 // bytes read from sockets after the handshake
	MessagesOut uint64 // data messages written to sockets (one per recipient)
	BytesOut    uint64 // bytes written to sockets after the handshake

	SlowConsumerCloses uint64 // connections closed because their queue overflowed
	Panics             uint64 // panics recovered in callbacks

	// With a Broker: sends published to the other nodes, sends received
	// from them (this node's echo excluded), and failures (publishes that
	// returned ErrNotPublished to the sender, (un)subscribe errors and
	// received messages that could not be decoded).
	BrokerOut, BrokerIn, BrokerErrors uint64
}

// Stats returns a snapshot of the hub's counters.
func (h *Hub) Stats() Stats {
	h.mu.RLock()
	s := Stats{Connections: len(h.conns), Rooms: len(h.rooms), Users: len(h.users)}
	h.mu.RUnlock()
	s.Accepted = h.stats.accepted.Load()
	s.Rejected = h.stats.rejected.Load()
	s.MessagesIn = h.stats.messagesIn.Load()
	s.BytesIn = h.stats.bytesIn.Load()
	s.MessagesOut = h.stats.messagesOut.Load()
	s.BytesOut = h.stats.bytesOut.Load()
	s.SlowConsumerCloses = h.stats.slowConsumers.Load()
	s.Panics = h.stats.panics.Load()
	s.BrokerOut = h.stats.brokerOut.Load()
	s.BrokerIn = h.stats.brokerIn.Load()
	s.BrokerErrors = h.stats.brokerErrors.Load()
	return s
}
