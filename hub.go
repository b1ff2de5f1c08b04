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

	mu        sync.RWMutex // guards the fields below and Conn.rooms/hubIdx/removed
	conns     []*Conn
	rooms     map[string]*room
	hubLog    *backlog // hub-wide broadcasts for parked connections; nil while none is parked (park.go)
	logIDs    uint64   // the last backlog id given
	users     map[string][]*Conn
	histories map[string]*history  // rooms with history (history.go)
	info      map[*Conn][]byte     // Conn.SetInfo (presence.go)
	resuming  map[*Conn]*resumeSet // wsroom.v1 handshakes' resume positions, while OnConnect runs
	beating   bool                 // the heartbeat goroutine runs
	stopBeat  chan struct{}        // closed to stop it

	bk   brokerState    // Options.Broker and the hub's side of it
	pres presenceState  // cluster presence (presence.go)
	ctl  controlState   // control requests in flight (control.go)
	ch   clusterHistory // with a HistoryBroker (history_cluster.go)
	poll hubPoll        // the readiness poller (Linux)

	logSeq      atomic.Uint64 // numbers backlog entries in send order (park.go)
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
		opts:      opts.withDefaults(),
		start:     time.Now(),
		rooms:     make(map[string]*room),
		users:     make(map[string][]*Conn),
		histories: make(map[string]*history),
		info:      make(map[*Conn][]byte),
		resuming:  make(map[*Conn]*resumeSet),

		parallelMin: parallelFanout,
	}
	rand.Read(h.node[:])
	h.startBroker()
	h.startPresence()
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

// register adds c to the hub, with the positions its handshake asked to
// resume from, if any. It fails, saying why, if Shutdown has begun or c's
// user already has MaxConnsPerUser connections.
func (h *Hub) register(c *Conn, resume *resumeSet) (Refusal, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed.Load() {
		return RefusedShutdown, false
	}
	if most := h.opts.MaxConnsPerUser; most > 0 && len(h.users[c.id]) >= most {
		return RefusedTooManyConns, false
	}
	h.wg.Add(1)
	c.hubIdx = int32(len(h.conns))
	h.conns = append(h.conns, c)
	c.userIdx = int32(len(h.users[c.id]))
	h.users[c.id] = append(h.users[c.id], c)
	if resume != nil {
		h.resuming[c] = resume // until OnConnect has run (see Conn.serve)
	}
	h.startHeartbeatLocked()
	return 0, true
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
	var counts []int // the user's connections left in each room, for presence
	watch := h.watchesPresence()
	var emptied []string
	for _, rm := range rooms {
		h.removeMemberLocked(rm, c)
		if watch {
			counts = append(counts, h.userCountLocked(rm, c.id))
		}
		if len(rm.members) == 0 {
			emptied = append(emptied, rm.name)
		}
	}
	info := h.info[c]
	delete(h.info, c)
	h.mu.Unlock()
	if h.bk.b != nil {
		h.syncInterest(connTopics(c.id, rooms)...)
		for _, name := range emptied {
			h.unfollowHistory(name)
		}
	}
	for i, rm := range rooms {
		c.presence(h.opts.OnLeave, "OnLeave", rm.name)
		if watch {
			h.presenceChanged(rm.name, c.id, counts[i]+1, counts[i], info)
		}
	}
	if h.pres.b != nil {
		h.presenceChanged("", c.id, -1, -1, nil) // maybe offline
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
	h.stopPresence()
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
