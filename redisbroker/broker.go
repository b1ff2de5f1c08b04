// Package redisbroker is a wsroom.Broker over Redis pub/sub, for running
// one wsroom Hub per process behind a load balancer:
//
//	b := redisbroker.New(redisbroker.Options{Addr: "127.0.0.1:6379"})
//	hub := wsroom.New(wsroom.Options{Broker: b}) // the Hub closes b in Shutdown
//
// Every room, user and hub-wide send is published to a Redis channel named
// Prefix plus the Hub's topic ("room:<name>", "user:<id>" or "all"), and
// each node subscribes only to the channels of the rooms and users it has
// connections for.
//
// # Delivery
//
// A send returns once Redis has acknowledged the PUBLISH (or with an
// error after at most about twice PublishTimeout; at once while the broker
// knows Redis is unreachable, see ErrUnavailable): a nil error means Redis
// accepted the message and passed it to every node subscribed at that
// moment. Redis pub/sub keeps nothing, so delivery to other nodes is at
// most once: a node that is disconnected from Redis, or whose subscription
// to a room or user is not yet in place (a few hundred microseconds after
// the first local member joins), misses what is published meanwhile. A
// PUBLISH is never retried, so nothing is delivered twice; an error after
// a timeout means the outcome is unknown (Redis may have published it). Messages
// published by one node arrive at every other node in the order they were
// sent.
//
// When Redis is unreachable, local delivery goes on; every send returns
// an error wrapping wsroom.ErrNotPublished (counted in the Hub's
// Stats.BrokerErrors and the broker's Stats.PublishErrors). The broker
// reconnects with a backoff of at most 500 ms and re-subscribes to every
// channel it needs as soon as Redis answers again.
package redisbroker

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults for zero Options fields.
const (
	DefaultAddr           = "127.0.0.1:6379"
	DefaultPrefix         = "wsroom:"
	DefaultPublishTimeout = time.Second
	DefaultMaxBatch       = 512
)

// maxBackoff bounds the wait between reconnection attempts.
const maxBackoff = 500 * time.Millisecond

// Errors returned by Publish (wrapped in wsroom.ErrNotPublished by the Hub).
var (
	// ErrClosed is returned by a Broker's methods after Close.
	ErrClosed = errors.New("redisbroker: closed")
	// ErrUnavailable is returned at once, without trying, while the
	// broker's subscription connection is down: Redis is unreachable.
	ErrUnavailable = errors.New("redisbroker: Redis is unreachable")
)

// Options configures a Broker. The zero value connects to 127.0.0.1:6379.
type Options struct {
	// Addr is the Redis server's host:port. Default 127.0.0.1:6379.
	Addr string

	// Redis, if set, is used instead of Addr to build the client (for a
	// password, TLS, a database…). The broker overrides MaxRetries to -1:
	// a PUBLISH is never retried, so it is never delivered twice.
	Redis *redis.Options

	// Prefix is prepended to every channel name, so that several
	// applications can share one Redis. Default "wsroom:".
	Prefix string

	// PublishTimeout bounds how long a send waits for Redis to acknowledge
	// its PUBLISH, and how long it may wait in the queue before it is
	// sent. Default 1 s.
	PublishTimeout time.Duration

	// MaxBatch is the most sends written to Redis in one pipeline.
	// Sends arriving while a pipeline is in flight wait for the next one,
	// so a busy node needs one round trip per batch, not per send.
	// Default 512.
	MaxBatch int

	// Logger receives connection losses and recoveries. Default
	// slog.Default().
	Logger *slog.Logger
}

// Broker is a wsroom.Broker over Redis pub/sub. Create it with New and
// give it to one Hub in wsroom.Options.Broker.
type Broker struct {
	opts   Options
	client *redis.Client
	ps     *redis.PubSub

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the publisher, receiver and subscriber goroutines

	reqs       chan *pubReq
	closeMu    sync.RWMutex // held for reading while a request is queued
	closed     bool         // guarded by closeMu
	stopWriter chan struct{}
	closeOnce  sync.Once

	subMu   sync.Mutex
	pending map[string]bool // topic → subscription wanted, changes not yet applied; guarded by subMu
	applied map[string]bool // topics handed to ps; only the subscriber goroutine touches it
	subKick chan struct{}

	deliver func(topic string, payload []byte)
	started atomic.Bool
	state   atomic.Int32 // stateUnknown, stateUp or stateDown
	down    atomic.Bool  // the subscription connection failed and is not back

	published, publishErrors, received, reconnects atomic.Uint64
}

// pubReq is one send waiting for its PUBLISH replies.
type pubReq struct {
	payload []byte
	topics  []string
	expires time.Time
	done    chan error
}

// New returns a broker for opts. It starts nothing until the Hub calls
// Start; it connects lazily.
func New(opts Options) *Broker {
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.PublishTimeout <= 0 {
		opts.PublishTimeout = DefaultPublishTimeout
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ro := &redis.Options{Addr: opts.Addr}
	if opts.Redis != nil {
		c := *opts.Redis
		ro = &c
	}
	ro.MaxRetries = -1
	ro.DialerRetries = 1 // the broker paces reconnection itself
	ctx, cancel := context.WithCancel(context.Background())
	return &Broker{
		opts:       opts,
		client:     redis.NewClient(ro),
		ctx:        ctx,
		cancel:     cancel,
		reqs:       make(chan *pubReq, 4*opts.MaxBatch),
		stopWriter: make(chan struct{}),
		pending:    make(map[string]bool),
		applied:    make(map[string]bool),
		subKick:    make(chan struct{}, 1),
	}
}

// Start implements wsroom.Broker: it starts the broker's three goroutines
// (publisher, receiver, subscriber), which Close joins.
func (b *Broker) Start(deliver func(topic string, payload []byte)) {
	if !b.started.CompareAndSwap(false, true) {
		panic("redisbroker: Start called twice: use one Broker per Hub")
	}
	b.deliver = deliver
	b.ps = b.client.Subscribe(b.ctx)
	b.wg.Add(3)
	go b.publisher()
	go b.receiver()
	go b.subscriber()
}

// Publish implements wsroom.Broker: it queues payload for every topic
// and returns; wait returns Redis's verdict, within about twice
// PublishTimeout.
func (b *Broker) Publish(payload []byte, topics ...string) (wait func() error) {
	if b.down.Load() {
		b.publishErrors.Add(1)
		return failed(ErrUnavailable)
	}
	r := &pubReq{payload: payload, topics: topics, expires: time.Now().Add(b.opts.PublishTimeout), done: make(chan error, 1)}
	b.closeMu.RLock()
	defer b.closeMu.RUnlock()
	if b.closed {
		return failed(ErrClosed)
	}
	select {
	case b.reqs <- r:
		return r.wait
	default:
	}
	// The queue is full: Redis is slow or away. Wait, within bounds.
	t := time.NewTimer(b.opts.PublishTimeout)
	defer t.Stop()
	select {
	case b.reqs <- r:
		return r.wait // the publisher answers every queued request
	case <-t.C:
		b.publishErrors.Add(1)
		return failed(errors.New("redisbroker: publish queue full: Redis is not keeping up"))
	case <-b.ctx.Done():
		return failed(ErrClosed)
	}
}

func (r *pubReq) wait() error { return <-r.done }

func failed(err error) func() error { return func() error { return err } }

// publisher writes queued sends to Redis in pipelines of up to MaxBatch.
func (b *Broker) publisher() {
	defer b.wg.Done()
	batch := make([]*pubReq, 0, b.opts.MaxBatch)
	for {
		select {
		case r := <-b.reqs:
			batch = append(batch[:0], r)
		case <-b.stopWriter:
			for { // Close has refused new requests: answer the queued ones
				select {
				case r := <-b.reqs:
					r.done <- ErrClosed
				default:
					return
				}
			}
		}
	fill:
		for len(batch) < b.opts.MaxBatch {
			select {
			case r := <-b.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		b.flush(batch)
		clear(batch)
	}
}

// flush publishes one batch in a pipeline and answers each request.
func (b *Broker) flush(batch []*pubReq) {
	now := time.Now()
	pipe := b.client.Pipeline()
	cmds := make([][]*redis.IntCmd, len(batch))
	live := 0
	for i, r := range batch {
		if now.After(r.expires) {
			continue
		}
		live++
		cmds[i] = make([]*redis.IntCmd, len(r.topics))
		for j, t := range r.topics {
			cmds[i][j] = pipe.Publish(b.ctx, b.opts.Prefix+t, r.payload)
		}
	}
	if live > 0 {
		ctx, cancel := context.WithTimeout(b.ctx, b.opts.PublishTimeout)
		pipe.Exec(ctx) // errors are read per command below
		cancel()
	}
	for i, r := range batch {
		var err error
		if cmds[i] == nil {
			err = errors.New("redisbroker: publish timed out in the queue")
		}
		for _, c := range cmds[i] {
			if err = c.Err(); err != nil {
				break
			}
		}
		if err != nil {
			b.publishErrors.Add(1)
		} else {
			b.published.Add(1)
		}
		r.done <- err
	}
}

// receiver reads the subscription connection and hands messages to the
// Hub. go-redis re-dials and re-subscribes to every recorded channel on
// the next read after a failure; receiver paces those attempts.
func (b *Broker) receiver() {
	defer b.wg.Done()
	backoff := 25 * time.Millisecond
	for {
		msg, err := b.ps.ReceiveTimeout(b.ctx, time.Second)
		if b.ctx.Err() != nil {
			return
		}
		if err != nil {
			if idle(err) {
				b.setConnected(true, nil)
				continue
			}
			b.setConnected(false, err)
			select {
			case <-time.After(backoff):
			case <-b.ctx.Done():
				return
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = 25 * time.Millisecond
		b.setConnected(true, nil)
		if m, ok := msg.(*redis.Message); ok {
			if topic, ok := strings.CutPrefix(m.Channel, b.opts.Prefix); ok {
				b.received.Add(1)
				b.deliver(topic, []byte(m.Payload))
			}
		}
	}
}

// idle reports whether a receive error is only a read timeout on an
// established connection (a dial that timed out is a failure).
func idle(err error) bool {
	var ne net.Error
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	return errors.As(err, &ne) && ne.Timeout()
}

// setConnected records the subscription connection's state, logging
// changes.
func (b *Broker) setConnected(up bool, err error) {
	b.down.Store(!up)
	state := int32(stateDown)
	if up {
		state = stateUp
	}
	prev := b.state.Swap(state)
	switch {
	case prev == state:
	case up && b.reconnects.Load() == 0:
		b.opts.Logger.Info("redisbroker: connected", "addr", b.client.Options().Addr)
	case up:
		b.opts.Logger.Info("redisbroker: reconnected; subscriptions restored", "addr", b.client.Options().Addr)
	default:
		b.reconnects.Add(1)
		b.opts.Logger.Warn("redisbroker: Redis unreachable; retrying", "addr", b.client.Options().Addr, "err", err)
	}
}

// Subscription connection states.
const (
	stateUnknown = iota // not yet tried
	stateUp
	stateDown
)

// Subscribe implements wsroom.Broker. It records the topics and returns;
// the subscriber goroutine applies them.
func (b *Broker) Subscribe(topics ...string) error { return b.setWant(true, topics) }

// Unsubscribe implements wsroom.Broker, like Subscribe.
func (b *Broker) Unsubscribe(topics ...string) error { return b.setWant(false, topics) }

func (b *Broker) setWant(on bool, topics []string) error {
	if b.ctx.Err() != nil {
		return ErrClosed
	}
	b.subMu.Lock()
	for _, t := range topics {
		b.pending[t] = on
	}
	b.subMu.Unlock()
	select {
	case b.subKick <- struct{}{}:
	default:
	}
	return nil
}

// subscriber hands subscription changes to the PubSub, which records them
// even when the connection is down and replays them on reconnection.
func (b *Broker) subscriber() {
	defer b.wg.Done()
	for {
		select {
		case <-b.subKick:
		case <-b.ctx.Done():
			return
		}
		b.subMu.Lock()
		changes := b.pending
		b.pending = make(map[string]bool)
		b.subMu.Unlock()
		var sub, unsub []string
		for t, on := range changes {
			if on && !b.applied[t] {
				sub = append(sub, b.opts.Prefix+t)
				b.applied[t] = true
			} else if !on && b.applied[t] {
				unsub = append(unsub, b.opts.Prefix+t)
				delete(b.applied, t)
			}
		}
		if len(sub) > 0 {
			if err := b.ps.Subscribe(b.ctx, sub...); err != nil && b.ctx.Err() == nil {
				b.opts.Logger.Debug("redisbroker: subscribe deferred until reconnection", "err", err)
			}
		}
		if len(unsub) > 0 {
			if err := b.ps.Unsubscribe(b.ctx, unsub...); err != nil && b.ctx.Err() == nil {
				b.opts.Logger.Debug("redisbroker: unsubscribe deferred until reconnection", "err", err)
			}
		}
	}
}

// Close implements wsroom.Broker: queued sends fail with ErrClosed, the
// goroutines are joined and the Redis connections closed.
func (b *Broker) Close() error {
	var err error
	b.closeOnce.Do(func() {
		b.cancel() // first: a Publish waiting for queue room gives up
		b.closeMu.Lock()
		b.closed = true
		b.closeMu.Unlock()
		close(b.stopWriter)
		if b.ps != nil {
			err = b.ps.Close()
		}
		b.wg.Wait()
		err = errors.Join(err, b.client.Close())
	})
	return err
}

// Stats is a snapshot of a Broker's counters.
type Stats struct {
	Connected     bool   // the subscription connection is up
	Published     uint64 // sends Redis acknowledged (one per send, whatever its topics)
	PublishErrors uint64 // sends that returned an error
	Received      uint64 // messages received on subscribed channels, own echo included
	Reconnects    uint64 // times Redis was found unreachable (the first failed attempt included)
}

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	return Stats{
		Connected:     b.state.Load() == stateUp,
		Published:     b.published.Load(),
		PublishErrors: b.publishErrors.Load(),
		Received:      b.received.Load(),
		Reconnects:    b.reconnects.Load(),
	}
}
