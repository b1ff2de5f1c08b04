package wsroom

import (
	"time"

	"github.com/wsroom/wsroom/internal/frame"
)

// pingFrame is the ping the heartbeat queues, shared by every connection.
var pingFrame = frame.AppendFrame(nil, frame.OpPing, nil)

// startHeartbeatLocked starts the heartbeat goroutine if pings or pong
// timeouts are enabled and it is not running. It stops by itself when the
// hub has no connections.
func (h *Hub) startHeartbeatLocked() {
	if h.beating || (h.opts.PingInterval <= 0 && h.opts.PongTimeout <= 0) {
		return
	}
	h.beating = true
	h.stopBeat = make(chan struct{})
	h.wg.Add(1)
	go h.heartbeat(h.stopBeat)
}

// heartbeatPeriod is how often the heartbeat looks at every connection.
func (h *Hub) heartbeatPeriod() time.Duration {
	p := h.opts.PingInterval
	if t := h.opts.PongTimeout; p <= 0 || (t > 0 && t < p) {
		p = t
	}
	return max(p/4, time.Millisecond)
}

// heartbeat pings connections that have been silent for PingInterval and
// drops those silent for PongTimeout.
func (h *Hub) heartbeat(stop chan struct{}) {
	defer h.wg.Done()
	t := time.NewTicker(h.heartbeatPeriod())
	defer t.Stop()
	pingEvery, deadAfter := int64(h.opts.PingInterval), int64(h.opts.PongTimeout)
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		buf := getConns()
		h.mu.Lock()
		if len(h.conns) == 0 {
			h.beating = false
			h.mu.Unlock()
			putConns(buf)
			return
		}
		*buf = append(*buf, h.conns...)
		h.mu.Unlock()
		now := h.now()
		for _, c := range *buf {
			silent, busy := c.silence(now)
			switch {
			case deadAfter > 0 && silent >= deadAfter && !busy:
				c.abort(&CloseError{Code: StatusAbnormalClosure, Reason: "pong timeout", Err: ErrPongTimeout})
			case pingEvery > 0 && silent >= pingEvery && now-c.lastPing >= pingEvery:
				c.lastPing = now
				c.enqueue(&pingFrame, true)
			}
		}
		putConns(buf)
		h.sweepHistories()
	}
}

// silence returns how long before now (hub clock) the reader last read a
// frame or left a callback, and whether it is inside a callback. busy is
// loaded first: leaveCallback stores lastRead and then clears busy, so a
// caller that sees busy cleared also sees the lastRead stored with it.
// Loaded the other way round, a callback ending between the two loads
// showed the time before it began with busy already false, and a peer
// whose OnConnect or OnMessage had just taken longer than PongTimeout was
// dropped as dead.
func (c *Conn) silence(now int64) (silent int64, busy bool) {
	busy = c.busy.Load()
	return now - c.lastRead.Load(), busy
}
