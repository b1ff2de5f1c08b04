package redisbroker

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// The publish pipeline. Each shard has one publishing connection, written
// by one goroutine and read by another, so that writing the next
// publishes never waits for the replies to the previous ones: throughput
// does not depend on the round trip. Publish appends to the shard's
// queue in call order; the writer takes the whole queue, encodes it into
// one buffer and writes it with one system call, recording each publish
// in the FIFO of those awaiting a reply; the reader matches Redis's
// replies, which come in order, to that FIFO and completes each publish.
// A PUBLISH is written at most once: when the connection fails, every
// publish queued or awaiting a reply on it fails, and none is sent again.
//
// The same pipeline carries the broker's other commands (calls: the
// history and presence scripts, see call.go), in call order with the
// publishes. A call whose script Redis does not have (NOSCRIPT: the
// script did not run) is the one command sent again, with the script's
// body.

// request is one Publish call, completed when each of its topics has its
// outcome.
type request struct {
	b       *Broker
	payload []byte
	left    atomic.Int32          // topics without an outcome yet
	err     atomic.Pointer[error] // the first failure
	done    sync.WaitGroup        // done when left reaches 0 (no channel to allocate)
}

// complete records the outcome of one of r's topics.
func (r *request) complete(err error) {
	if err != nil {
		e := err // only a failure costs an allocation
		r.err.CompareAndSwap(nil, &e)
	}
	if r.left.Add(-1) == 0 {
		if r.err.Load() != nil {
			r.b.publishErrors.Add(1)
		} else {
			r.b.published.Add(1)
		}
		r.done.Done()
	}
}

// wait is what Publish returns.
func (r *request) wait() error {
	r.done.Wait()
	if e := r.err.Load(); e != nil {
		return *e
	}
	return nil
}

// item is one topic of a request, or a call, on its way through a
// shard's pipeline.
type item struct {
	r     *request // a Publish's topic, or nil
	c     *call    // a call, or nil
	topic string
	tag   string // the channel's hash tag (Cluster mode)
	sent  int64  // when it was written, in nanoseconds since the broker was made
}

// complete records the outcome of the item's command.
func (it *item) complete(rep reply) {
	if it.c != nil {
		it.c.finish(rep)
		return
	}
	it.r.complete(rep.err)
}

// reply is Redis's answer to one pipelined command: an error reply, or
// the integer of an integer reply (a call's parser keeps what other
// replies hold).
type reply struct {
	err error
	n   int64
}

// Publisher states.
const (
	pubConnecting = iota // no connection attempt has finished: publishes queue
	pubUp                // connected: publishes are written
	pubDown              // the last attempt failed: publishes fail at once
	pubClosed            // the shard is stopped
)

// publisher is a shard's publishing connection.
type publisher struct {
	s    *shard
	kick chan struct{} // capacity 1: the queue went from empty to not empty

	mu      sync.Mutex
	state   int
	queue   []item   // not yet written, in call order
	sent    ring     // written, awaiting replies, in order
	pending int      // queued, being written or awaiting a reply
	room    chan any // closed when pending drops below MaxPending; nil while nobody waits
	downErr error    // why the shard is down

	readerErr error // why the reader returned; only run's goroutine uses it

	flushed atomic.Bool // Redis answered NOSCRIPT: the writer sends the scripts' bodies again
}

func (p *publisher) init(s *shard) {
	p.s = s
	p.kick = make(chan struct{}, 1)
}

// enqueue queues it for writing, waiting up to PublishTimeout for room.
// An error means it was not queued (and not sent).
func (p *publisher) enqueue(it item) error {
	var timer *time.Timer
	p.mu.Lock()
	for p.state != pubClosed && p.state != pubDown && p.pending >= p.s.b.opts.MaxPending {
		if p.room == nil {
			p.room = make(chan any)
		}
		room := p.room
		p.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(p.s.b.opts.PublishTimeout)
			defer timer.Stop()
		}
		select {
		case <-room:
		case <-timer.C:
			return ErrQueueFull
		case <-p.s.ctx.Done():
			return ErrClosed
		}
		p.mu.Lock()
	}
	switch p.state {
	case pubClosed:
		p.mu.Unlock()
		return ErrClosed
	case pubDown:
		err := p.downErr
		p.mu.Unlock()
		return err
	}
	p.queue = append(p.queue, it)
	p.pending++
	first := len(p.queue) == 1
	p.mu.Unlock()
	if first {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// maxWrite is about the most bytes the writer encodes before it writes
// them: a big queue goes out in several writes, not one huge buffer.
const maxWrite = 1 << 20

// run connects, and reconnects with a backoff after failures, until the
// shard stops.
func (p *publisher) run() {
	defer p.s.wg.Done()
	b := p.s.b
	var backoff time.Duration
	for {
		nc, r, err := b.dial(p.s.ctx, p.s.addr, !b.opts.Cluster)
		if err == nil {
			backoff = 0
			p.mu.Lock()
			p.state = pubUp
			p.mu.Unlock()
			b.logState(p.s.addr, "publishing", nil)
			readerDone := make(chan error, 1)
			go func() { readerDone <- p.read(nc, r) }()
			err = p.write(nc, readerDone)
			nc.Close()
			if err == errReaderDone {
				err = p.readerErr
			} else {
				<-readerDone // it fails on the closed connection
			}
		}
		if p.s.ctx.Err() != nil {
			p.fail(pubClosed, ErrClosed)
			return
		}
		b.connectionLost()
		if errors.Is(err, ErrTimeout) {
			p.fail(pubDown, ErrTimeout)
		} else {
			p.fail(pubDown, fmt.Errorf("%w: %s: %v", ErrUnavailable, p.s.addr, err))
		}
		b.logState(p.s.addr, "publishing", err)
		backoff = nextBackoff(backoff)
		select {
		case <-time.After(backoff):
		case <-p.s.ctx.Done():
			p.fail(pubClosed, ErrClosed)
			return
		}
	}
}

// errReaderDone tells run that write returned because the reader did;
// its error is in p.readerErr.
var errReaderDone = errors.New("reader done")

// fail moves the publisher to state (pubDown or pubClosed) and fails
// every publish queued or awaiting a reply. The connection is closed and
// its goroutines have returned.
func (p *publisher) fail(state int, err error) {
	p.mu.Lock()
	p.state, p.downErr = state, err
	queued := p.queue
	p.queue = nil
	var sent []item
	for p.sent.len() > 0 {
		sent = append(sent, p.sent.pop())
	}
	p.pending = 0
	if p.room != nil {
		close(p.room)
		p.room = nil
	}
	p.mu.Unlock()
	for _, it := range queued {
		it.complete(reply{err: err})
	}
	for _, it := range sent {
		it.complete(reply{err: err})
	}
}

// write writes queued publishes until the shard stops, a write fails or
// the reader returns.
func (p *publisher) write(nc net.Conn, readerDone chan error) error {
	b := p.s.b
	cmd := b.publishCmd()
	timeout := b.opts.PublishTimeout
	var batch []item
	var buf []byte
	var loaded scriptSet // the scripts this connection's Redis has (see call.appendTo)
	for {
		select {
		case <-p.kick:
		case err := <-readerDone:
			p.readerErr = err
			return errReaderDone
		case <-p.s.ctx.Done():
			return ErrClosed
		}
		// Let the goroutines that are about to publish (senders just woken
		// by completions) queue first: fewer, fuller writes.
		runtime.Gosched()
		for {
			p.mu.Lock()
			batch, p.queue = p.queue, batch[:0]
			p.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			if p.flushed.Swap(false) {
				loaded = 0
			}
			for start := 0; start < len(batch); {
				buf = buf[:0]
				end := start
				for end < len(batch) && len(buf) < maxWrite {
					it := &batch[end]
					if it.c != nil {
						buf = it.c.appendTo(buf, &loaded)
					} else {
						buf = appendPublish(buf, cmd, b.opts.Prefix, it.tag, it.topic, it.r.payload)
					}
					end++
				}
				// Record them as sent before writing, so that the reader
				// finds them when the replies come. Their payloads are
				// not read after this: buf holds a copy.
				now := b.now()
				p.mu.Lock()
				if p.sent.len() == 0 {
					nc.SetReadDeadline(time.Now().Add(timeout))
				}
				for i := start; i < end; i++ {
					batch[i].sent = now
					p.sent.push(batch[i])
				}
				p.mu.Unlock()
				nc.SetWriteDeadline(time.Now().Add(timeout))
				if _, err := nc.Write(buf); err != nil {
					// Those sent fail with the connection; those not
					// yet encoded fail here.
					err = fmt.Errorf("%w: %s: %v", ErrUnavailable, p.s.addr, err)
					for _, it := range batch[end:] {
						it.complete(reply{err: err})
					}
					clear(batch)
					return err
				}
				start = end
			}
			clear(batch) // keep no request alive
			if cap(buf) > 4*maxWrite {
				buf = nil
			}
		}
	}
}

// read reads replies and completes the commands they answer, in order.
// It returns when the connection fails, or with ErrTimeout when the oldest
// command awaiting a reply has waited PublishTimeout.
func (p *publisher) read(nc net.Conn, r *respReader) error {
	b := p.s.b
	timeout := b.opts.PublishTimeout
	results := make([]reply, 0, 256)
	done := make([]item, 0, 256)
	var retry []item
	for {
		results = results[:0]
		for {
			rp, err := p.readReply(r, len(results))
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					return ErrTimeout // the deadline is always the oldest command's
				}
				return err
			}
			results = append(results, rp)
			if len(results) == cap(results) || r.br.Buffered() == 0 {
				break
			}
		}
		done, retry = done[:0], retry[:0]
		p.mu.Lock()
		if p.sent.len() < len(results) {
			p.mu.Unlock()
			return fmt.Errorf("%w: %d replies to %d commands", errProtocol, len(results), p.sent.len())
		}
		for i := range results {
			it := p.sent.pop()
			if it.c != nil && it.c.script != nil && !it.c.eval && isNoScript(results[i].err) {
				// The script did not run: send it again, with its body.
				it.c.eval = true
				retry = append(retry, it)
				continue
			}
			results[len(done)] = results[i]
			done = append(done, it)
		}
		p.pending -= len(done)
		if len(retry) > 0 {
			p.queue = append(retry, p.queue...)
			retry = nil // the queue owns it now
			p.flushed.Store(true)
			select {
			case p.kick <- struct{}{}:
			default:
			}
		}
		if p.room != nil && p.pending < b.opts.MaxPending {
			close(p.room)
			p.room = nil
		}
		if p.sent.len() > 0 {
			nc.SetReadDeadline(time.Now().Add(timeout - time.Duration(b.now()-p.sent.front().sent)))
		} else {
			nc.SetReadDeadline(time.Time{})
		}
		p.mu.Unlock()
		for i := range done {
			if results[i].err != nil {
				b.redisError(results[i].err)
			}
			done[i].complete(results[i])
		}
		clear(done)
	}
}

// readReply reads the reply to the i-th command awaiting one: a status,
// an integer or an error reply is read here; any other (an array, a bulk
// string) only a call expects, and its parser reads it.
func (p *publisher) readReply(r *respReader, i int) (reply, error) {
	l, err := r.line()
	if err != nil {
		return reply{}, err
	}
	switch l[0] {
	case '+':
		return reply{}, nil
	case ':':
		n, err := parseInt(l[1:])
		return reply{n: n}, err
	case '-':
		return reply{err: RedisError(l[1:])}, nil
	}
	var c *call
	p.mu.Lock()
	if i < p.sent.len() {
		c = p.sent.at(i).c
	}
	p.mu.Unlock()
	if c == nil || c.parse == nil {
		return reply{}, fmt.Errorf("%w: unexpected reply %q", errProtocol, clip(l))
	}
	// Only this goroutine removes items from sent: c stays valid.
	return c.parse(c, r, l)
}

// ring is a growable FIFO of items.
type ring struct {
	buf        []item
	head, size int
}

func (q *ring) len() int { return q.size }

func (q *ring) push(it item) {
	if q.size == len(q.buf) {
		n := make([]item, max(2*len(q.buf), 64))
		k := copy(n, q.buf[q.head:])
		copy(n[k:], q.buf[:q.head])
		q.buf, q.head = n, 0
	}
	q.buf[(q.head+q.size)%len(q.buf)] = it
	q.size++
}

func (q *ring) front() *item { return &q.buf[q.head] }

// at returns the i-th item from the front.
func (q *ring) at(i int) *item { return &q.buf[(q.head+i)%len(q.buf)] }

func (q *ring) pop() item {
	it := q.buf[q.head]
	q.buf[q.head] = item{}
	q.head = (q.head + 1) % len(q.buf)
	q.size--
	return it
}

// nextBackoff returns the wait before the next connection attempt: 25 ms
// doubling up to maxBackoff.
func nextBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return 25 * time.Millisecond
	}
	return min(2*d, maxBackoff)
}

// maxBackoff bounds the wait between connection attempts.
const maxBackoff = 250 * time.Millisecond
