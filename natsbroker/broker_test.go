package natsbroker_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsroom/wsroom/brokertest"
	"github.com/wsroom/wsroom/internal/wstest"
	"github.com/wsroom/wsroom/natsbroker"
	"github.com/wsroom/wsroom/natsbroker/internal/natstest"
)

// startBroker starts a broker on url that records what it delivers;
// Cleanup closes it.
func startBroker(t *testing.T, opts natsbroker.Options, deliver func(topic string, payload []byte)) *natsbroker.Broker {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	if deliver == nil {
		deliver = func(string, []byte) {}
	}
	b := natsbroker.New(opts)
	b.Start(deliver)
	t.Cleanup(func() { b.Close() })
	return b
}

// inbox records deliveries.
type inbox struct {
	mu  sync.Mutex
	got []string // topic + " " + payload
}

func (in *inbox) deliver(topic string, payload []byte) {
	in.mu.Lock()
	in.got = append(in.got, topic+" "+string(payload))
	in.mu.Unlock()
}

func (in *inbox) has(s string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, g := range in.got {
		if g == s {
			return true
		}
	}
	return false
}

// settle publishes probes on topic from pub until in has received one.
func settle(t *testing.T, pub *natsbroker.Broker, in *inbox, topic string) {
	t.Helper()
	wstest.WaitFor(t, "a probe on "+topic, func() bool {
		if in.has(topic + " probe") {
			return true
		}
		pub.Publish([]byte("probe"), topic)() // looked for in the next round
		return false
	})
}

func TestPayloadTooLarge(t *testing.T) {
	srv := natstest.Start(t)
	var in inbox
	sub := startBroker(t, natsbroker.Options{URL: srv.URL}, in.deliver)
	pub := startBroker(t, natsbroker.Options{URL: srv.URL}, nil)
	if err := sub.Subscribe("room:big"); err != nil {
		t.Fatal(err)
	}
	settle(t, pub, &in, "room:big")

	const serverMax = 1 << 20 // nats-server's default max_payload
	err := pub.Publish(make([]byte, serverMax+1), "room:big")()
	if !errors.Is(err, natsbroker.ErrPayloadTooLarge) {
		t.Fatalf("publish of max_payload+1 bytes: %v, want ErrPayloadTooLarge", err)
	}
	// The connection survives, and the largest payload passes.
	if err := pub.Publish(make([]byte, serverMax), "room:big")(); err != nil {
		t.Fatalf("publish of max_payload bytes: %v", err)
	}
	wstest.WaitFor(t, "the max_payload message", func() bool { return in.has("room:big " + string(make([]byte, serverMax))) })
	if s := pub.Stats(); s.PublishErrors != 1 || s.Reconnects != 0 {
		t.Errorf("publisher stats %+v; want 1 publish error and no reconnection", s)
	}
}

func TestNameTooLong(t *testing.T) {
	srv := natstest.Start(t)
	var in inbox
	sub := startBroker(t, natsbroker.Options{URL: srv.URL}, in.deliver)
	pub := startBroker(t, natsbroker.Options{URL: srv.URL}, nil)
	long := "room:" + strings.Repeat("x", natsbroker.MaxNameLen+1)
	if err := sub.Subscribe(long, "room:ok"); !errors.Is(err, natsbroker.ErrNameTooLong) {
		t.Fatalf("Subscribe with a name over MaxNameLen: %v, want ErrNameTooLong", err)
	}
	settle(t, pub, &in, "room:ok") // the valid topic of the call is subscribed
	if err := pub.Publish([]byte("x"), "room:ok", long)(); !errors.Is(err, natsbroker.ErrNameTooLong) {
		t.Fatalf("Publish to a name over MaxNameLen: %v, want ErrNameTooLong", err)
	}
}

// recorder is a slog.Handler keeping the messages logged at Warn and above.
type recorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.msgs = append(r.msgs, rec.Message)
	r.mu.Unlock()
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) logged(prefix string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.msgs {
		if strings.HasPrefix(m, prefix) {
			return true
		}
	}
	return false
}

// A Hub that does not keep up: the bounded queue fills, the client drops
// what does not fit, and the broker counts and logs it, then recovers.
func TestSlowConsumerIsCountedAndLogged(t *testing.T) {
	srv := natstest.Start(t)
	const pending, sent = 8, 200
	release := make(chan struct{})
	var delivered atomic.Int64
	rec := &recorder{}
	sub := startBroker(t, natsbroker.Options{URL: srv.URL, PendingMsgs: pending, Logger: slog.New(rec)},
		func(topic string, p []byte) {
			if string(p) == "block" {
				<-release
			}
			if topic == "room:slow" {
				delivered.Add(1)
			}
		})
	pub := startBroker(t, natsbroker.Options{URL: srv.URL}, nil)
	if err := sub.Subscribe("room:slow"); err != nil {
		t.Fatal(err)
	}
	wstest.WaitFor(t, "the subscription", func() bool {
		n, err := srv.Subscribers(subject(t, "room:slow"))
		return err == nil && n == 1
	})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	waits := make([]func() error, 0, sent)
	waits = append(waits, pub.Publish([]byte("block"), "room:slow"))
	for range sent - 1 {
		waits = append(waits, pub.Publish([]byte("m"), "room:slow"))
	}
	for i, w := range waits {
		if err := w(); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	wstest.WaitFor(t, "a slow-consumer report", func() bool { return sub.Stats().SlowConsumers > 0 })
	once.Do(func() { close(release) })
	wstest.WaitFor(t, "every message delivered or dropped", func() bool {
		return delivered.Load()+int64(sub.Stats().Dropped) == sent
	})
	if d := delivered.Load(); d < pending || d == sent {
		t.Errorf("delivered %d of %d with a queue of %d; want the queue's worth at least, and drops", d, sent, pending)
	}
	if !rec.logged("natsbroker: slow consumer") {
		t.Errorf("no slow-consumer warning logged; got %q", rec.msgs)
	}
	// Once the Hub keeps up again, delivery resumes.
	before := delivered.Load()
	if err := pub.Publish([]byte("after"), "room:slow")(); err != nil {
		t.Fatal(err)
	}
	wstest.WaitFor(t, "delivery after the slow episode", func() bool { return delivered.Load() == before+1 })
}

// A broker started while NATS is down fails publishes at once, keeps the
// subscriptions made meanwhile, and connects when the server appears.
func TestStartsWhileNATSIsDown(t *testing.T) {
	srv := natstest.Start(t)
	srv.Stop()
	var in inbox
	sub := startBroker(t, natsbroker.Options{URL: srv.URL}, in.deliver)
	start := time.Now()
	err := sub.Publish([]byte("x"), "room:r")()
	if !errors.Is(err, natsbroker.ErrUnavailable) {
		t.Fatalf("publish while NATS is down: %v, want ErrUnavailable", err)
	}
	if err := sub.Subscribe("room:r"); err != nil {
		t.Fatalf("Subscribe while NATS is down: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("publish and subscribe while NATS is down took %v; they must not wait", d)
	}
	srv.Restart()
	pub := startBroker(t, natsbroker.Options{URL: srv.URL}, nil)
	settle(t, pub, &in, "room:r")
	if s := sub.Stats(); !s.Connected || s.Reconnects == 0 {
		t.Errorf("stats after connecting late: %+v", s)
	}
}

func TestStartTwicePanics(t *testing.T) {
	srv := natstest.Start(t)
	b := startBroker(t, natsbroker.Options{URL: srv.URL}, nil)
	defer func() {
		if r := recover(); r == nil {
			t.Error("a second Start did not panic")
		}
	}()
	b.Start(func(string, []byte) {})
}

// The largest payload brokertest requires fits nats-server's default.
func TestMinMaxPayloadFits(t *testing.T) {
	srv := natstest.Start(t)
	b := startBroker(t, natsbroker.Options{URL: srv.URL}, nil)
	if err := b.Publish(make([]byte, brokertest.MinMaxPayload+64), "room:x")(); err != nil {
		t.Fatal(err)
	}
}

// proxy forwards loopback TCP connections to a server; cut closes every
// connection it carries, as a network failure would.
type proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[s] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			buf := make([]byte, 32<<10)
			for {
				n, err := src.Read(buf)
				if n > 0 {
					if _, werr := dst.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			dst.Close()
			src.Close()
		}
		p.wg.Go(func() { pipe(s, c) })
		p.wg.Go(func() { pipe(c, s) })
	}
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// A nil wait means the server received the message, also when the
// publisher's connection breaks while publishes are in flight: the
// publisher goes through a proxy that is cut again and again while one
// sender keeps many publishes outstanding; a subscriber connected directly
// must have received every publish that was confirmed, in order, and
// nothing twice. (With the batched publisher, the window the reconnection
// check guards, a cut between a batch's first write and its PING, is
// rarely hit: this is an end-to-end check of the promise more than a
// trap for that check.)
func TestConfirmedMeansReceivedAcrossCuts(t *testing.T) {
	srv := natstest.Start(t)
	px := startProxy(t, srv.Addr)
	var mu sync.Mutex
	var got []int
	sub := startBroker(t, natsbroker.Options{URL: srv.URL}, func(_ string, p []byte) {
		mu.Lock()
		got = append(got, int(p[0])<<16|int(p[1])<<8|int(p[2]))
		mu.Unlock()
	})
	pub := startBroker(t, natsbroker.Options{URL: "nats://" + px.ln.Addr().String()}, nil)
	if err := sub.Subscribe("room:cut"); err != nil {
		t.Fatal(err)
	}
	wstest.WaitFor(t, "the subscription", func() bool {
		n, err := srv.Subscribers(subject(t, "room:cut"))
		return err == nil && n == 1
	})

	const total, window = 30000, 256
	confirmed := make([]bool, total)
	waits := make([]func() error, 0, window)
	seqs := make([]int, 0, window)
	nConfirmed, nFailed := 0, 0
	collect := func(k int) {
		for i, w := range waits[:k] {
			if w() == nil {
				confirmed[seqs[i]] = true
				nConfirmed++
			} else {
				nFailed++
			}
		}
		waits, seqs = append(waits[:0], waits[k:]...), append(seqs[:0], seqs[k:]...)
	}
	for i := range total {
		if i%1500 == 750 {
			px.cut()
		}
		waits = append(waits, pub.Publish([]byte{byte(i >> 16), byte(i >> 8), byte(i)}, "room:cut"))
		seqs = append(seqs, i)
		if len(waits) == window {
			collect(1)
		}
	}
	collect(len(waits))
	// Every confirmed publish arrives; wait for the last confirmed one.
	last := -1
	for i := total - 1; i >= 0 && last < 0; i-- {
		if confirmed[i] {
			last = i
		}
	}
	if last < 0 || nFailed == 0 {
		t.Fatalf("%d confirmed, %d failed: the test needs both", nConfirmed, nFailed)
	}
	wstest.WaitFor(t, "the last confirmed publish", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0 && got[len(got)-1] >= last
	})
	mu.Lock()
	defer mu.Unlock()
	// Each message arrives at most once, and the confirmed ones in order
	// (unconfirmed ones written just before a cut may be processed by the
	// server after the next connection's first ones).
	seen := make([]bool, total)
	prev := -1
	for _, s := range got {
		if seen[s] {
			t.Fatalf("received %d twice", s)
		}
		seen[s] = true
		if confirmed[s] {
			if s < prev {
				t.Fatalf("received confirmed %d after confirmed %d", s, prev)
			}
			prev = s
		}
	}
	lost := 0
	for i, c := range confirmed {
		if c && !seen[i] {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d confirmed publishes never arrived", lost, nConfirmed)
	}
	t.Logf("%d publishes: %d confirmed (all received), %d failed; %d received in all, %d connections lost",
		total, nConfirmed, nFailed, len(got), pub.Stats().Reconnects)
}
