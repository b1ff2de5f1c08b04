// Package redisbroker is a wsroom.Broker over Redis pub/sub, for running
// one wsroom Hub per process behind a load balancer:
//
//	b := redisbroker.New(redisbroker.Options{Addrs: []string{"127.0.0.1:6379"}})
//	hub := wsroom.New(wsroom.Options{Broker: b}) // the Hub closes b in Shutdown
//
// Every room, user and hub-wide send is published to a Redis channel named
// Prefix plus the Hub's topic ("room:<name>", "user:<id>" or "all"), and
// each node subscribes only to the channels of the rooms and users it has
// connections for.
//
// # Many Redis
//
// Options.Addrs may list several independent Redis servers: each topic
// lives on one of them, chosen by a consistent hash, so N servers carry N
// times the traffic of one. With Options.Cluster the addresses are seeds
// of a Redis Cluster (7.0 or later) and the broker uses sharded pub/sub
// (SPUBLISH/SSUBSCRIBE) on the master of each topic's slot. "all" is a
// topic like the others: it lives on one server, to which every node with
// a connection subscribes.
//
// # Delivery
//
// Publish never waits for the network: it queues the message on its
// topic's server connection and returns. The queue is written by one
// goroutine while another reads the replies (pipelining), so one sender
// that does not wait for each reply, or many senders, reach the server's
// own rate instead of one message per round trip. Each connection keeps
// call order: messages one node publishes to a topic reach every other
// node in that order (with one server, in order across topics too).
//
// wait returns nil once Redis acknowledged the publish for every topic,
// i.e. handed it to every node subscribed at that moment. Redis pub/sub
// keeps nothing, so delivery to other nodes is at most once: a node that
// is disconnected, or whose subscription is not yet in place (a round
// trip after the first local member joins), misses what is published
// meanwhile. A publish is written at most once and never retried, so
// nothing is delivered twice; an error after it was written (a timeout, a
// lost connection) means the outcome is unknown.
//
// # History and presence
//
// The Broker is also a wsroom.HistoryBroker and a wsroom.PresenceBroker:
// with Options.History a room's broadcasts are numbered and kept in Redis
// (a list per room, appended and published by one script, so every node
// delivers them in the same order and a wsroom.v1 client resumes on any
// node), and with Options.Presence the cluster's presence lives in Redis
// (one script per update decides each join and leave once; nodes beat,
// and a survivor removes a dead node's presence room by room, reporting
// each departure once). README.md describes the keys, the scripts and
// their guarantees.
//
// # Failures
//
// While a server is unreachable, publishes to its topics fail at once
// with ErrUnavailable (the Hub wraps it in wsroom.ErrNotPublished after
// delivering locally, and counts it), while topics on other servers flow.
// The broker redials with a backoff of at most 250 ms and subscribes
// again to every topic it needs, in batches, as soon as the server
// answers. A subscription connection that stays silent for 3 ×
// PingInterval despite PINGs is presumed dead and redialled.
package redisbroker

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsroom/wsroom"
)

// Broker is a wsroom.Broker over Redis pub/sub. Create it with New and
// give it to one Hub in wsroom.Options.Broker. Its methods are safe for
// concurrent use.
type Broker struct {
	opts  Options
	epoch time.Time // for item timestamps

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the topology goroutine (Cluster mode)

	topo      atomic.Pointer[topology]
	topoReady chan struct{} // closed once topo is set
	topoOnce  sync.Once
	topoKick  chan struct{}

	wantMu sync.Mutex      // held while changing want and routing it to shards
	want   map[string]bool // topics subscribed to, whatever their shard

	deliverMu sync.Mutex // one deliver call at a time
	deliver   func(topic string, payload []byte)
	hdeliver  atomic.Pointer[func(topic string, pos wsroom.Position, payload []byte)] // StartHistory's
	started   atomic.Bool
	closeOnce sync.Once

	pres atomic.Pointer[presence] // set by StartPresence

	lastFrameLog atomic.Int64 // b.now() of the last log of a malformed frame

	logMu sync.Mutex
	down  map[string]bool // connections whose failure was logged

	published, publishErrors, received, dropped, reconnects, cleaned, cacheHits, deltaHits atomic.Uint64
}

// New returns a broker for opts. It connects once the Hub calls Start. It
// panics with a "redisbroker:" message on options that cannot work (a
// '{' in Prefix with Cluster, an empty or repeated address).
func New(opts Options) *Broker {
	o, err := opts.withDefaults()
	if err != nil {
		panic(err.Error())
	}
	b := &Broker{
		opts:      o,
		epoch:     time.Now(),
		topoReady: make(chan struct{}),
		topoKick:  make(chan struct{}, 1),
		want:      make(map[string]bool),
		down:      make(map[string]bool),
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	if !o.Cluster {
		t := &topology{}
		for _, a := range o.Addrs {
			t.shards = append(t.shards, newShard(b, a))
		}
		b.setTopology(t)
	}
	return b
}

// now returns the time since the broker was made, in nanoseconds.
func (b *Broker) now() int64 { return int64(time.Since(b.epoch)) }

// Start implements wsroom.Broker: it starts each server's publishing and
// subscription goroutines (and, in Cluster mode, the one that follows the
// cluster's layout); Close joins them.
func (b *Broker) Start(deliver func(topic string, payload []byte)) {
	if !b.started.CompareAndSwap(false, true) {
		panic("redisbroker: Start called twice: use one Broker per Hub")
	}
	b.deliver = deliver
	if b.opts.Cluster {
		b.wg.Add(1)
		go b.watchTopology()
		return
	}
	for _, s := range b.topo.Load().shards {
		s.start()
	}
}

// Publish implements wsroom.Broker: it queues payload for each topic on
// the topic's server and returns; wait returns nil once Redis
// acknowledged every topic, or the first failure.
func (b *Broker) Publish(payload []byte, topics ...string) (wait func() error) {
	if b.ctx.Err() != nil {
		return failed(ErrClosed)
	}
	if !b.started.Load() {
		return failed(errors.New("redisbroker: Publish before Start"))
	}
	t := b.topo.Load()
	if t == nil {
		if t = b.awaitTopology(); t == nil {
			b.publishErrors.Add(1)
			return failed(ErrUnavailable)
		}
	}
	r := &request{b: b, payload: payload}
	r.done.Add(1)
	r.left.Store(int32(len(topics)) + 1)
	for _, topic := range topics {
		if len(topic) > MaxTopicBytes {
			r.complete(ErrTopicTooLong)
			continue
		}
		s, tag := t.route(topic)
		if s == nil {
			r.complete(ErrUnavailable) // the cluster has no master for its slot
			b.refreshTopology()
			continue
		}
		if err := s.pub.enqueue(item{r: r, topic: topic, tag: tag}); err != nil {
			r.complete(err)
		}
	}
	r.complete(nil) // the +1: no topic completes the request before all are queued
	return r.wait
}

// awaitTopology waits up to PublishTimeout for the cluster's layout to be
// known.
func (b *Broker) awaitTopology() *topology {
	t := time.NewTimer(b.opts.PublishTimeout)
	defer t.Stop()
	select {
	case <-b.topoReady:
		return b.topo.Load()
	case <-t.C:
	case <-b.ctx.Done():
	}
	return nil
}

func failed(err error) func() error { return func() error { return err } }

// Subscribe implements wsroom.Broker. It records the topics and returns;
// each server's subscriber goroutine applies them. A topic over
// MaxTopicBytes is refused with ErrTopicTooLong (the others are
// recorded).
func (b *Broker) Subscribe(topics ...string) error { return b.setWant(true, topics) }

// Unsubscribe implements wsroom.Broker, like Subscribe.
func (b *Broker) Unsubscribe(topics ...string) error { return b.setWant(false, topics) }

func (b *Broker) setWant(on bool, topics []string) error {
	if b.ctx.Err() != nil {
		return ErrClosed
	}
	var err error
	b.wantMu.Lock()
	defer b.wantMu.Unlock()
	t := b.topo.Load()
	var byShard map[*shard][]string
	for _, topic := range topics {
		if len(topic) > MaxTopicBytes {
			err = ErrTopicTooLong
			continue
		}
		if on {
			b.want[topic] = true
		} else {
			delete(b.want, topic)
		}
		if t == nil {
			continue // applied when the layout is known
		}
		if s, _ := t.route(topic); s != nil {
			if byShard == nil {
				byShard = make(map[*shard][]string)
			}
			byShard[s] = append(byShard[s], topic)
		}
	}
	for s, ts := range byShard {
		s.sub.set(on, ts...)
	}
	return err
}

// deliverMsg hands a received message to the Hub, one at a time.
func (b *Broker) deliverMsg(topic string, payload []byte) {
	b.received.Add(1)
	b.deliverMu.Lock()
	defer b.deliverMu.Unlock()
	if b.ctx.Err() == nil {
		b.deliver(topic, payload)
	}
}

// deliverPositioned hands a message of a room's history to the Hub,
// under the same lock as deliverMsg.
func (b *Broker) deliverPositioned(topic string, pos wsroom.Position, payload []byte) {
	b.received.Add(1)
	b.deliverMu.Lock()
	defer b.deliverMu.Unlock()
	if b.ctx.Err() != nil {
		return
	}
	if h := b.hdeliver.Load(); h != nil {
		(*h)(topic, pos, payload)
	} else {
		b.deliver(topic, payload)
	}
}

// topicOf returns the topic of a channel name (a substring of it), or
// false for a channel that is not the broker's.
func (b *Broker) topicOf(channel string) (string, bool) {
	rest, ok := strings.CutPrefix(channel, b.opts.Prefix)
	if !ok {
		return "", false
	}
	if b.opts.Cluster {
		if len(rest) == 0 || rest[0] != '{' {
			return "", false
		}
		end := strings.IndexByte(rest, '}')
		if end < 0 {
			return "", false
		}
		rest = rest[end+1:]
	}
	return rest, true
}

// redisError reacts to an error reply: a MOVED or ASK means the cluster's
// layout changed.
func (b *Broker) redisError(err error) {
	var re RedisError
	if errors.As(err, &re) && (strings.HasPrefix(string(re), "MOVED ") || strings.HasPrefix(string(re), "ASK ") || strings.HasPrefix(string(re), "CLUSTERDOWN")) {
		b.refreshTopology()
	}
}

// logState logs a connection's failure once and its recovery.
func (b *Broker) logState(addr, what string, err error) {
	key := what + " " + addr
	b.logMu.Lock()
	was := b.down[key]
	b.down[key] = err != nil
	b.logMu.Unlock()
	switch {
	case err != nil && !was && b.ctx.Err() == nil:
		b.opts.Logger.Warn("redisbroker: "+what+" connection lost; retrying", "addr", addr, "err", err)
		b.refreshTopology()
	case err == nil && was:
		b.opts.Logger.Info("redisbroker: "+what+" connection restored", "addr", addr)
	}
}

// Close implements wsroom.Broker: queued and unacknowledged publishes fail
// with ErrClosed, every goroutine is joined and every connection closed;
// deliver is not called after Close returns.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.cancel()
		b.wg.Wait()
		if t := b.topo.Load(); t != nil {
			for _, s := range t.shards {
				s.stop()
			}
		}
	})
	return nil
}

// ShardOf returns the address of the Redis server (in Cluster mode, the
// master) that topic currently lives on, or "" while that is not known.
func (b *Broker) ShardOf(topic string) string {
	t := b.topo.Load()
	if t == nil {
		return ""
	}
	if s, _ := t.route(topic); s != nil {
		return s.addr
	}
	return ""
}

// Stats is a snapshot of a Broker's counters.
type Stats struct {
	Connected      bool   // every server's subscription connection is up
	Shards         int    // servers (masters, in Cluster mode) in use
	Subscriptions  int64  // channels the servers confirmed this broker holds
	Published      uint64 // publishes Redis acknowledged (one per Publish, whatever its topics)
	PublishErrors  uint64 // publishes that returned an error
	Received       uint64 // messages received on subscribed channels, own echo included
	Dropped        uint64 // messages discarded: over MaxPayload, or badly framed (e.g. from an older release)
	Reconnects     uint64 // subscription connections lost (each counted once per loss)
	NodesCleaned   uint64 // dead nodes whose presence this broker removed
	PresenceHits   uint64 // RoomPresence answered from the kept answer (the room had not changed)
	PresenceDeltas uint64 // RoomPresence answered from the kept answer and the room's change log (it had changed)

	// Resubscribe is how long the last connection of each server took
	// from being established to Redis confirming every topic it
	// subscribed to at once (the longest over the servers).
	Resubscribe time.Duration
}

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	s := Stats{
		Published:      b.published.Load(),
		PublishErrors:  b.publishErrors.Load(),
		Received:       b.received.Load(),
		Dropped:        b.dropped.Load(),
		Reconnects:     b.reconnects.Load(),
		NodesCleaned:   b.cleaned.Load(),
		PresenceHits:   b.cacheHits.Load(),
		PresenceDeltas: b.deltaHits.Load(),
	}
	if t := b.topo.Load(); t != nil {
		s.Connected = true
		s.Shards = len(t.shards)
		for _, sh := range t.shards {
			s.Connected = s.Connected && sh.sub.up.Load()
			s.Subscriptions += sh.sub.count.Load()
			s.Resubscribe = max(s.Resubscribe, time.Duration(sh.sub.resubscribe.Load()))
		}
	}
	return s
}
