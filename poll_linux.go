//go:build linux

package wsroom

import (
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wsroom/wsroom/internal/poller"
)

// On Linux a connection that is a plain *net.TCPConn is not served by a
// goroutine of its own: after OnConnect it is registered with the hub's
// readiness poller (one epoll instance per Hub, see internal/poller), and
// an idle connection has no goroutine and no read buffer. When its socket
// becomes readable, one of the poller's workers takes a pooled buffer,
// reads until the socket has nothing more (EAGAIN), feeds the parser and
// runs the callbacks, then re-arms the socket, returns the buffer and
// waits for other work: one goroutine per active connection (workers
// without work exit after a second), none per idle one, and callbacks of
// one connection still run one at a time and in order. Once the
// connection is closing (a close frame queued, or the socket dropped) its
// reader stays on a goroutine and reads with deadlines like the fallback
// does, until the connection ends. Other connections (TLS, wrapped
// listeners) and other platforms use a reader goroutine per connection.

// Reader states of a polled connection (connPoll.state).
const (
	pollOff     int32 = iota // not polled: a reader goroutine serves the connection
	pollIdle                 // armed in the poller, no reader running
	pollRunning              // a reader runs
	pollPending              // a reader runs and must look again before going idle
)

// connPoll is a connection's registration with the hub's poller.
type connPoll struct {
	state     atomic.Int32
	sinceFull int32           // bytes the socket took since a flush found it full (see drained); -1: not counting; used only by the writer
	id        uint64          // registration id; set before the first re-arm
	p         *poller.Poller  // nil when not polled; set and cleared by the reader under Conn.mu
	rc        syscall.RawConn // the socket's; all raw reads and writes go through it
}

// hubPoll owns the hub's poller. It starts with the first polled
// connection and is closed (its goroutine joined through Hub.wg) when the
// last one ends, so an idle Hub holds no goroutine and no epoll fd.
type hubPoll struct {
	mu     sync.Mutex
	p      *poller.Poller
	n      int  // polled connections
	broken bool // creating a poller failed: use reader goroutines

	wmu   sync.Mutex
	waits map[*Conn]*writeWait // writers waiting for a full socket (see cancelWrite)
}

// acquirePoller returns the hub's poller, starting it if needed, or nil if
// none can be had. The caller holds a Hub.wg count (a registered Conn).
func (h *Hub) acquirePoller() *poller.Poller {
	hp := &h.poll
	hp.mu.Lock()
	defer hp.mu.Unlock()
	if hp.broken {
		return nil
	}
	if hp.p == nil {
		p, err := poller.New()
		if err != nil {
			hp.broken = true
			h.opts.Logger.Warn("wsroom: no readiness poller; using a goroutine per connection", "err", err)
			return nil
		}
		hp.p = p
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			if err := p.Run(); err != nil {
				h.opts.Logger.Error("wsroom: readiness poller stopped", "err", err)
			}
		}()
	}
	hp.n++
	return hp.p
}

// releasePoller undoes acquirePoller; the last release closes the poller.
func (h *Hub) releasePoller() {
	hp := &h.poll
	hp.mu.Lock()
	defer hp.mu.Unlock()
	if hp.n--; hp.n == 0 {
		hp.p.Close()
		hp.p = nil
	}
}

// pollStart hands the connection to the hub's poller. It returns false,
// having changed nothing, if the connection must keep a reader goroutine.
// On true the connection is served from then on and the caller must not
// touch it: pollStart first reads what is already there on the calling
// goroutine.
func (c *Conn) pollStart() bool {
	tc, ok := c.nc.(*net.TCPConn)
	if !ok {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	p := c.hub.acquirePoller()
	if p == nil {
		return false
	}
	c.mu.Lock()
	c.poll.p, c.poll.rc = p, rc
	c.poll.sinceFull = -1
	c.mu.Unlock()
	c.poll.state.Store(pollRunning)
	id, err := p.Add(rc, (*pollHandler)(c))
	if err != nil {
		c.poll.state.Store(pollOff)
		c.mu.Lock()
		c.poll.p, c.poll.rc = nil, nil
		c.mu.Unlock()
		c.hub.releasePoller()
		return false
	}
	c.poll.id = id
	c.pollRead()
	return true
}

// pollStop deregisters the connection; finish calls it before closing the
// socket. It runs on the connection's reader.
func (c *Conn) pollStop() {
	if c.poll.p == nil {
		return
	}
	c.poll.p.Remove(c.poll.rc, c.poll.id)
	c.mu.Lock()
	c.poll.p = nil
	c.mu.Unlock()
	c.hub.releasePoller()
}

// pollHandler is the poller's view of a Conn (a distinct type so that
// Conn's method set stays the public API).
type pollHandler Conn

// Ready implements poller.Handler.
func (ph *pollHandler) Ready() { (*Conn)(ph).wakeReader() }

// Run implements poller.Task: the reader, on one of the poller's workers.
func (ph *pollHandler) Run() { (*Conn)(ph).pollRead() }

// wakeReader makes sure the reader of a polled connection runs (again)
// and looks at the socket and the connection's state: on readiness, and
// whenever the connection starts closing or its socket is dropped. It
// does nothing for a connection with a reader goroutine, which is woken by
// its socket's deadline or closing. It never blocks.
func (c *Conn) wakeReader() {
	s := &c.poll.state
	for {
		switch s.Load() {
		case pollIdle:
			if s.CompareAndSwap(pollIdle, pollRunning) {
				// Polled and not finished, so the poller is open.
				c.poll.p.Go((*pollHandler)(c))
				return
			}
		case pollRunning:
			if s.CompareAndSwap(pollRunning, pollPending) {
				return
			}
		default: // pollOff, or pollPending already
			return
		}
	}
}

// awaitWritersMax bounds awaitWriters: the queue holds only non-blocking
// flushes, so it drains at the speed of the processor, but a sender must
// not hang on a bug.
const awaitWritersMax = time.Second

// awaitWriters waits until the flushes queued on the hub's poller so far
// have run: it queues a marker behind them and waits for it (at most
// awaitWritersMax). Then it hands the poller the readiness that came
// meanwhile (Poller.Poll): writers waiting for sockets their peers have
// since read from, which the poller would otherwise learn of only when a
// processor idles (or every 10 ms), and which, with one processor and a
// sender that always has more to send, would starve while their readers'
// bounds run out. If there was any, it waits for the writes that
// readiness made (a few rounds at most). It waits for this node's own writers to get the
// processor, never for a peer. Without a poller it yields the processor.
func (h *Hub) awaitWriters() {
	hp := &h.poll
	for round := 0; round < awaitRounds; round++ {
		hp.mu.Lock()
		p := hp.p
		if p == nil {
			hp.mu.Unlock()
			runtime.Gosched()
			return
		}
		m := make(marker)
		p.Queue(m) // under hp.mu: the poller cannot be closed meanwhile
		hp.mu.Unlock()
		t := time.NewTimer(awaitWritersMax)
		select {
		case <-m:
		case <-t.C:
		}
		t.Stop()
		if !p.Poll() {
			return
		}
	}
}

// awaitRounds bounds the rounds of awaitWriters: queued flushes, then
// the writes the readiness they found makes, and so on.
const awaitRounds = 4

// marker is a poller.Task that closes itself when it runs.
type marker chan struct{}

// Run implements poller.Task.
func (m marker) Run() { close(m) }
