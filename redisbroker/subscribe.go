package redisbroker

import (
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Subscriptions. Each shard has one subscription connection. Subscribe
// and Unsubscribe only record which topics the shard should hold and wake
// the shard's subscriber goroutine, which sends the differences as
// batched (S)SUBSCRIBE and (S)UNSUBSCRIBE commands. After a reconnection
// (a Redis restart, a dead connection found by the PING check, a cluster
// topology change) it subscribes to everything wanted at once: one
// command per maxSubscribeBatch channels (per slot in Cluster mode, where
// a command's channels must share a slot), all written before any reply
// is read. A second goroutine reads the connection and delivers messages.

// maxSubscribeBatch is the most channels in one (S)SUBSCRIBE or
// (S)UNSUBSCRIBE command.
const maxSubscribeBatch = 1024

// subscriber is a shard's subscription connection.
type subscriber struct {
	s    *shard
	kick chan struct{} // capacity 1: want changed, or the connection must be redialled

	mu     sync.Mutex
	want   map[string]bool // topics wanted on this shard
	dirty  map[string]bool // topics whose wanting changed since the last apply
	redial bool            // drop the connection and subscribe again from scratch

	applied map[string]bool // topics subscribed on the connection; run's goroutine only

	up    atomic.Bool  // connected and subscribed
	count atomic.Int64 // channels Redis confirmed this connection holds

	// For Stats.Resubscribe: when the session's connection was made, how
	// many channels it subscribed to at once, and how long Redis took to
	// confirm them all.
	sessionStart time.Time // set before the reader starts
	expect       int64
	resubscribe  atomic.Int64
}

func (sb *subscriber) init(s *shard) {
	sb.s = s
	sb.kick = make(chan struct{}, 1)
	sb.want = make(map[string]bool)
	sb.dirty = make(map[string]bool)
}

// set records that topics are wanted (on) or not, and wakes run.
func (sb *subscriber) set(on bool, topics ...string) {
	sb.mu.Lock()
	for _, t := range topics {
		if on {
			sb.want[t] = true
		} else {
			delete(sb.want, t)
		}
		sb.dirty[t] = true
	}
	sb.mu.Unlock()
	sb.wake()
}

// replace makes want the set of wanted topics (after a topology change).
func (sb *subscriber) replace(want map[string]bool) {
	sb.mu.Lock()
	for t := range sb.want {
		if !want[t] {
			sb.dirty[t] = true
		}
	}
	for t := range want {
		if !sb.want[t] {
			sb.dirty[t] = true
		}
	}
	sb.want = want
	sb.mu.Unlock()
	sb.wake()
}

// reconnect asks run to drop the connection and subscribe again.
func (sb *subscriber) reconnect() {
	sb.mu.Lock()
	sb.redial = true
	sb.mu.Unlock()
	sb.wake()
}

func (sb *subscriber) wake() {
	select {
	case sb.kick <- struct{}{}:
	default:
	}
}

// run connects, subscribes and applies changes until the shard stops,
// reconnecting with a backoff after failures.
func (sb *subscriber) run() {
	defer sb.s.wg.Done()
	b := sb.s.b
	var backoff time.Duration
	for {
		err := sb.session()
		wasUp := sb.up.Swap(false)
		sb.count.Store(0)
		if sb.s.ctx.Err() != nil {
			return
		}
		if wasUp {
			b.reconnects.Add(1)
		}
		b.logState(sb.s.addr, "subscription", err)
		backoff = nextBackoff(backoff)
		if errors.Is(err, errRedial) {
			backoff = 0 // asked for, not a failure
		}
		select {
		case <-time.After(backoff):
		case <-sb.s.ctx.Done():
			return
		}
	}
}

// errRedial ends a session on request (see reconnect).
var errRedial = errors.New("redisbroker: subscription redialled after a cluster change")

// session runs one connection: it subscribes to every wanted topic, then
// applies changes and PINGs until the connection fails or the shard stops.
func (sb *subscriber) session() error {
	b := sb.s.b
	nc, r, err := b.dial(sb.s.ctx, sb.s.addr, !b.opts.Cluster)
	if err != nil {
		return err
	}
	defer nc.Close()
	sb.mu.Lock()
	sb.applied = make(map[string]bool, len(sb.want))
	var sub []string
	for t := range sb.want {
		sub = append(sub, t)
		sb.applied[t] = true
	}
	clear(sb.dirty)
	sb.redial = false
	sb.mu.Unlock()

	sb.sessionStart, sb.expect = time.Now(), int64(len(sub))
	readerDone := make(chan error, 1)
	go func() { readerDone <- sb.read(nc, r) }()
	defer func() {
		nc.Close()
		<-readerDone
	}()
	if err := sb.send(nc, sub, nil); err != nil {
		return err
	}
	if len(sub) == 0 { // a reply to show that the connection works
		if err := sb.writeCmd(nc, appendCommand(nil, "PING")); err != nil {
			return err
		}
	}

	var ping <-chan time.Time
	if b.opts.PingInterval > 0 {
		t := time.NewTicker(b.opts.PingInterval)
		defer t.Stop()
		ping = t.C
	}
	for {
		select {
		case <-sb.kick:
			sb.mu.Lock()
			if sb.redial {
				sb.mu.Unlock()
				return errRedial
			}
			var sub, unsub []string
			for t := range sb.dirty {
				if want := sb.want[t]; want && !sb.applied[t] {
					sub = append(sub, t)
					sb.applied[t] = true
				} else if !want && sb.applied[t] {
					unsub = append(unsub, t)
					delete(sb.applied, t)
				}
			}
			clear(sb.dirty)
			sb.mu.Unlock()
			if err := sb.send(nc, sub, unsub); err != nil {
				return err
			}
		case <-ping:
			if err := sb.writeCmd(nc, appendCommand(nil, "PING")); err != nil {
				return err
			}
		case err := <-readerDone:
			readerDone <- err // for the deferred join
			return err
		case <-sb.s.ctx.Done():
			return ErrClosed
		}
	}
}

// send writes (S)UNSUBSCRIBE commands for unsub, then (S)SUBSCRIBE
// commands for sub, batched, in one write when they fit (Redis then
// applies them together: a leave and a join never let another client's
// command in between).
func (sb *subscriber) send(nc net.Conn, sub, unsub []string) error {
	var buf []byte
	var err error
	if buf, err = sb.appendBatches(nc, buf, "UNSUBSCRIBE", unsub); err != nil {
		return err
	}
	if buf, err = sb.appendBatches(nc, buf, "SUBSCRIBE", sub); err != nil {
		return err
	}
	return sb.writeCmd(nc, buf)
}

// appendBatches appends cmd (prefixed with S in Cluster mode) for topics
// to buf, maxSubscribeBatch channels of one slot per command, writing buf
// out whenever it passes maxWrite.
func (sb *subscriber) appendBatches(nc net.Conn, buf []byte, cmd string, topics []string) ([]byte, error) {
	if len(topics) == 0 {
		return buf, nil
	}
	b := sb.s.b
	type ch struct {
		topic, tag string
		slot       int
	}
	chans := make([]ch, len(topics))
	for i, t := range topics {
		chans[i].topic = t
		if b.opts.Cluster {
			slot := int(topicHash(t) % numSlots)
			chans[i].slot, chans[i].tag = slot, slotTag(slot)
		}
	}
	if b.opts.Cluster {
		cmd = "S" + cmd
		// A sharded command's channels must share a slot.
		slices.SortFunc(chans, func(a, b ch) int { return a.slot - b.slot })
	}
	for i := 0; i < len(chans); {
		j := i + 1
		for j < len(chans) && j-i < maxSubscribeBatch && chans[j].slot == chans[i].slot {
			j++
		}
		buf = appendArrayHeader(buf, 1+j-i)
		buf = appendBulkString(buf, cmd)
		for _, c := range chans[i:j] {
			buf = appendChannel(buf, b.opts.Prefix, c.tag, c.topic)
		}
		if len(buf) >= maxWrite {
			if err := sb.writeCmd(nc, buf); err != nil {
				return nil, err
			}
			buf = buf[:0]
		}
		i = j
	}
	return buf, nil
}

func (sb *subscriber) writeCmd(nc net.Conn, buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	nc.SetWriteDeadline(time.Now().Add(sb.s.b.opts.PublishTimeout))
	_, err := nc.Write(buf)
	return err
}

// read reads the subscription connection and delivers messages, until the
// connection fails or nothing arrived for 3 × PingInterval.
func (sb *subscriber) read(nc net.Conn, r *respReader) error {
	b := sb.s.b
	silence := 3 * b.opts.PingInterval
	start, expect, timed := sb.sessionStart, sb.expect, false
	// Channel → topic of the subscribed channels, so that a message's
	// topic costs no allocation.
	topics := make(map[string]string)
	var ep epochs
	var p push
	for {
		if silence > 0 && r.br.Buffered() == 0 {
			nc.SetReadDeadline(time.Now().Add(silence))
		}
		if err := r.push(&p, b.opts.MaxPayload); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return errSilent
			}
			return err
		}
		if !sb.up.Load() { // the first reply since connecting
			sb.up.Store(true)
			b.logState(sb.s.addr, "subscription", nil)
		}
		if p.rerr != nil {
			b.redisError(p.rerr)
			b.opts.Logger.Warn("redisbroker: Redis refused a subscription command", "addr", sb.s.addr, "err", p.rerr)
			continue
		}
		switch p.kind {
		case "message", "smessage":
			topic, ok := topics[string(p.channel)]
			if !ok {
				topic, ok = b.topicOf(string(p.channel))
			}
			switch {
			case !ok:
			case p.tooBig:
				b.dropped.Add(1)
				b.opts.Logger.Warn("redisbroker: dropped a message over MaxPayload", "topic", topic, "limit", b.opts.MaxPayload)
			default:
				b.deliverFrame(topic, p.payload, &ep)
			}
		case "subscribe", "ssubscribe":
			sb.count.Store(p.count)
			channel := string(p.channel)
			if topic, ok := b.topicOf(channel); ok {
				topics[channel] = topic
			}
			if !timed && p.count >= expect {
				sb.resubscribe.Store(int64(time.Since(start)))
				timed = true
			}
		case "unsubscribe":
			sb.count.Store(p.count)
			delete(topics, string(p.channel))
		case "sunsubscribe":
			sb.count.Store(p.count)
			delete(topics, string(p.channel))
			// Redis also sends it, unasked, when the channel's slot moved
			// to another master: find the new layout and subscribe again.
			if topic, ok := b.topicOf(string(p.channel)); ok {
				sb.mu.Lock()
				unasked := sb.want[topic] && !sb.dirty[topic]
				sb.mu.Unlock()
				if unasked {
					b.refreshTopology()
					sb.reconnect()
				}
			}
		}
	}
}

// errSilent ends a subscription connection from which nothing arrived
// for 3 × PingInterval.
var errSilent = errors.New("redisbroker: no reply to PING: connection presumed dead")
