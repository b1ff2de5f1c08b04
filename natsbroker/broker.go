package natsbroker

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/wsroom/wsroom"
)

// Defaults for zero Options fields.
const (
	DefaultURL            = nats.DefaultURL // nats://127.0.0.1:4222
	DefaultPrefix         = "wsroom"
	DefaultPublishTimeout = time.Second
	DefaultPendingMsgs    = 65536
	DefaultMaxBatch       = 512
	DefaultPingInterval   = 10 * time.Second
)

// maxBackoff bounds the wait between reconnection attempts.
const maxBackoff = 500 * time.Millisecond

// Errors returned by Publish (wrapped in wsroom.ErrNotPublished by the Hub)
// and by Subscribe.
var (
	// ErrClosed is returned by a Broker's methods after Close.
	ErrClosed = errors.New("natsbroker: closed")
	// ErrUnavailable is returned at once, without trying, while the
	// connection to NATS is down.
	ErrUnavailable = errors.New("natsbroker: NATS is unreachable")
	// ErrPayloadTooLarge is returned for a payload larger than the
	// server's max_payload.
	ErrPayloadTooLarge = errors.New("natsbroker: payload larger than the server's max_payload")
	// ErrNameTooLong is returned for a room name or user ID longer than
	// MaxNameLen bytes.
	ErrNameTooLong = errors.New("natsbroker: room name or user ID longer than MaxNameLen")
	// errReconnected is returned by a wait whose publish and round trip
	// did not happen on one connection.
	errReconnected = errors.New("natsbroker: the connection to NATS was lost while publishing")
)

// Options configures a Broker. The zero value connects to
// nats://127.0.0.1:4222.
type Options struct {
	// URL is the NATS server's URL, or a comma-separated list of them
	// (a cluster). Default nats://127.0.0.1:4222.
	URL string

	// NATS are extra client options (credentials, TLS, a connection
	// name…). They are applied after the broker's defaults (Name "wsroom",
	// PingInterval 10 s) and before the settings the broker's guarantees
	// rest on, which they cannot change: no reconnect buffer, reconnect
	// forever with the broker's backoff, retry the first connection,
	// FlusherTimeout = PublishTimeout, and the broker's connection and
	// error handlers.
	NATS []nats.Option

	// Prefix is the first token(s) of every subject, so that several
	// applications can share one NATS: subjects are Prefix + ".room.…",
	// ".user.…" or ".all". It must be a valid subject without wildcards
	// ("wsroom", "app1.ws"); New panics otherwise. Default "wsroom".
	Prefix string

	// PublishTimeout bounds how long a send waits for the server to
	// confirm its publishes, and how long a write to the server may
	// block. Default 1 s.
	PublishTimeout time.Duration

	// MaxBatch is the most sends written to NATS before one round trip
	// confirms them. Sends arriving while a round trip is in flight wait
	// for the next batch, so a busy node needs one round trip per batch,
	// not per send. At most 4 × MaxBatch sends wait in the queue; a send
	// that finds it full waits up to PublishTimeout for room. Default 512.
	MaxBatch int

	// PendingMsgs bounds the queue of received messages not yet handed to
	// the Hub; when it is full, arriving messages are dropped and counted
	// (see Slow consumers in the package doc). Default 65536.
	PendingMsgs int

	// Logger receives connection losses and recoveries and slow-consumer
	// reports. Default slog.Default().
	Logger *slog.Logger
}

// Broker is a wsroom.Broker over core NATS. Create it with New and give it
// to one Hub in wsroom.Options.Broker. Its methods are safe for concurrent
// use.
type Broker struct {
	opts   Options
	prefix string // Prefix + "."

	nc      *nats.Conn // set by Start
	connErr error      // the client refused the options in Start
	deliver func(topic string, payload []byte)
	msgs    chan *nats.Msg // every subscription's messages, read by receiver

	mu     sync.Mutex // guards closed
	closed bool

	reqs       chan *pubReq  // sends waiting for the publisher
	closeMu    sync.RWMutex  // held for reading while a send is queued
	closing    bool          // guarded by closeMu: no more sends are queued
	stopQueue  chan struct{} // closed by Close after closing is set
	maxPayload atomic.Int64  // the server's max_payload, learned on (re)connection

	subMu      sync.Mutex      // guards the four fields below
	pending    map[string]bool // topic → subscription wanted, not yet applied
	wantSeq    uint64          // calls of Subscribe and Unsubscribe so far
	appliedSeq uint64          // calls whose changes the subscriber has applied
	applied    chan struct{}   // closed and replaced when appliedSeq grows
	subKick    chan struct{}

	subsMu      sync.Mutex                    // held by the subscriber to change subs, and by Stats
	subs        map[string]*nats.Subscription // topic → subscription
	lostDropped uint64                        // Dropped of removed subscriptions; guarded by subsMu

	stop      chan struct{} // closed by Close
	wg        sync.WaitGroup
	started   atomic.Bool
	closeOnce sync.Once
	up        atomic.Bool // a hint for failing fast: set by the connection handlers

	published, publishErrors, received, reconnects, slowConsumers atomic.Uint64
}

var _ wsroom.Broker = (*Broker)(nil)

// New returns a broker for opts. It starts nothing until the Hub calls
// Start. It panics with a "natsbroker:" message if opts.Prefix is not a
// valid subject.
func New(opts Options) *Broker {
	if opts.URL == "" {
		opts.URL = DefaultURL
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if err := checkPrefix(opts.Prefix); err != nil {
		panic(err)
	}
	if opts.PublishTimeout <= 0 {
		opts.PublishTimeout = DefaultPublishTimeout
	}
	if opts.PendingMsgs <= 0 {
		opts.PendingMsgs = DefaultPendingMsgs
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Broker{
		opts:      opts,
		prefix:    opts.Prefix + ".",
		msgs:      make(chan *nats.Msg, opts.PendingMsgs),
		reqs:      make(chan *pubReq, 4*opts.MaxBatch),
		stopQueue: make(chan struct{}),
		pending:   make(map[string]bool),
		applied:   make(chan struct{}),
		subKick:   make(chan struct{}, 1),
		subs:      make(map[string]*nats.Subscription),
		stop:      make(chan struct{}),
	}
}

// Start implements wsroom.Broker: it makes the first connection attempt
// (bounded by the client's connect Timeout, 2 s by default; on failure the
// client keeps retrying in the background) and starts the broker's three
// goroutines (publishing, subscriptions, delivery), which Close joins.
func (b *Broker) Start(deliver func(topic string, payload []byte)) {
	if !b.started.CompareAndSwap(false, true) {
		panic("natsbroker: Start called twice: use one Broker per Hub")
	}
	b.deliver = deliver
	opts := []nats.Option{nats.Name("wsroom"), nats.PingInterval(DefaultPingInterval)}
	opts = append(opts, b.opts.NATS...)
	opts = append(opts,
		nats.ReconnectBufSize(-1), // never buffer while disconnected: fail fast
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.CustomReconnectDelay(backoff),
		nats.FlusherTimeout(b.opts.PublishTimeout),
		nats.ConnectHandler(b.connected),
		nats.ReconnectHandler(b.reconnected),
		nats.DisconnectErrHandler(b.disconnected),
		nats.ReconnectErrHandler(b.retryFailed),
		nats.ErrorHandler(b.asyncError),
	)
	nc, err := nats.Connect(b.opts.URL, opts...)
	if err != nil {
		b.connErr = fmt.Errorf("natsbroker: %w", err)
		b.opts.Logger.Error("natsbroker: cannot use these options", "url", b.opts.URL, "err", err)
	} else {
		b.nc = nc
		if nc.IsConnected() {
			b.maxPayload.Store(nc.MaxPayload())
			b.up.Store(true) // connected will log it
		}
	}
	b.wg.Add(3)
	go b.publisher()
	go b.subscriber()
	go b.receiver()
}

// backoff is the wait before reconnection attempt round n (from 1).
func backoff(n int) time.Duration {
	if n > 5 {
		return maxBackoff
	}
	return min(25*time.Millisecond<<(n-1), maxBackoff)
}

// Connection handlers; the client calls them from its own goroutine, in
// order, shortly after the change.

func (b *Broker) connected(nc *nats.Conn) {
	b.maxPayload.Store(nc.MaxPayload())
	b.up.Store(true)
	b.opts.Logger.Info("natsbroker: connected", "url", nc.ConnectedUrlRedacted())
}

func (b *Broker) reconnected(nc *nats.Conn) {
	b.maxPayload.Store(nc.MaxPayload())
	b.up.Store(true)
	b.opts.Logger.Info("natsbroker: reconnected; subscriptions restored", "url", nc.ConnectedUrlRedacted())
}

func (b *Broker) disconnected(nc *nats.Conn, err error) {
	b.up.Store(false)
	if b.isClosed() {
		return
	}
	b.reconnects.Add(1)
	b.opts.Logger.Warn("natsbroker: NATS unreachable; reconnecting", "url", b.opts.URL, "err", err)
}

// retryFailed reports failed connection attempts: only the first one of
// the first connection is logged (disconnected reports later losses).
func (b *Broker) retryFailed(nc *nats.Conn, err error) {
	if b.reconnects.Load() == 0 && b.reconnects.CompareAndSwap(0, 1) {
		b.opts.Logger.Warn("natsbroker: NATS unreachable; retrying", "url", b.opts.URL, "err", err)
	}
}

// asyncError reports errors the client detects outside any call: a slow
// consumer (the pending queue was full), a permission violation.
func (b *Broker) asyncError(nc *nats.Conn, sub *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrSlowConsumer) {
		b.slowConsumers.Add(1)
		topic := ""
		if sub != nil {
			topic, _ = b.topic(sub.Subject)
		}
		b.opts.Logger.Warn("natsbroker: slow consumer: the Hub is not keeping up, dropping messages",
			"topic", topic, "pending_msgs", b.opts.PendingMsgs)
		return
	}
	b.opts.Logger.Error("natsbroker: NATS error", "err", err)
}

func (b *Broker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// Close implements wsroom.Broker: it closes the NATS connection (sends
// still waiting fail with ErrClosed), joins the broker's goroutines, and
// returns; deliver is not called after that.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		close(b.stop) // first: a Publish waiting for queue room gives up
		b.closeMu.Lock()
		b.closing = true
		b.closeMu.Unlock()
		close(b.stopQueue)
		if b.nc != nil {
			b.nc.Close() // fails the round trip in flight at once
		}
		b.wg.Wait()
	})
	return nil
}

// Stats is a snapshot of a Broker's counters.
type Stats struct {
	Connected     bool   // the connection to NATS is up
	Published     uint64 // sends the server confirmed (one per send, whatever its topics)
	PublishErrors uint64 // sends that returned an error
	Received      uint64 // messages handed to the Hub, own echo included
	Reconnects    uint64 // times NATS was found unreachable (a failed first connection included)
	SlowConsumers uint64 // times a subscription began dropping messages: the pending queue was full
	Dropped       uint64 // messages dropped that way
}

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	s := Stats{
		Connected:     b.nc != nil && b.nc.IsConnected(),
		Published:     b.published.Load(),
		PublishErrors: b.publishErrors.Load(),
		Received:      b.received.Load(),
		Reconnects:    b.reconnects.Load(),
		SlowConsumers: b.slowConsumers.Load(),
	}
	b.subsMu.Lock()
	s.Dropped = b.lostDropped
	for _, sub := range b.subs {
		if n, err := sub.Dropped(); err == nil {
			s.Dropped += uint64(n)
		}
	}
	b.subsMu.Unlock()
	return s
}
