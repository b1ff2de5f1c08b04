package wsroom_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
	"github.com/wsroom/wsroom/membroker"
)

// eventRecorder is an Observer that keeps every event.
type eventRecorder struct {
	mu     sync.Mutex
	events []wsroom.Event
}

func (r *eventRecorder) Observe(e wsroom.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// eventsOf returns the events of type E seen so far.
func eventsOf[E wsroom.Event](r *eventRecorder) []E {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []E
	for _, e := range r.events {
		if e, ok := e.(E); ok {
			out = append(out, e)
		}
	}
	return out
}

// closesOf returns the CloseEvents of user's connections.
func closesOf(r *eventRecorder, user string) []wsroom.CloseEvent {
	var out []wsroom.CloseEvent
	for _, e := range eventsOf[wsroom.CloseEvent](r) {
		if e.Conn.UserID() == user {
			out = append(out, e)
		}
	}
	return out
}

// TestObserverRefusals causes one refusal of each cause and checks the
// counts by cause, the total, and that the Observer saw each once, with
// its status.
func TestObserverRefusals(t *testing.T) {
	rec := &eventRecorder{}
	s := newServer(t, wsroom.Options{
		Identify: func(r *http.Request) (string, error) {
			switch u := r.URL.Query().Get("user"); u {
			case "banned":
				return "", wsroom.Reject(http.StatusForbidden, "banned")
			case "anonymous":
				return "", errors.New("no session")
			default:
				return u, nil
			}
		},
		MaxConnsPerUser: 1,
		PingInterval:    -1,
		Observer:        rec,
	})
	handshake := func(query string, extra http.Header) int {
		t.Helper()
		c, err := wstest.Exchange(wstest.Request(s.url+query, extra))
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		c.Close()
		return c.Resp.StatusCode
	}

	type want struct {
		cause  wsroom.Refusal
		status int
	}
	var wants []want
	expect := func(cause wsroom.Refusal, status, got int) {
		t.Helper()
		if got != status {
			t.Fatalf("%v: answered %d, want %d", cause, got, status)
		}
		wants = append(wants, want{cause, status})
	}

	resp, err := http.Get(s.url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	expect(wsroom.RefusedNotWebSocket, http.StatusUpgradeRequired, resp.StatusCode)
	expect(wsroom.RefusedBadRequest, http.StatusBadRequest, handshake("?user=a", http.Header{"Sec-WebSocket-Key": {""}}))
	expect(wsroom.RefusedBadRequest, http.StatusUpgradeRequired, handshake("?user=a", http.Header{"Sec-WebSocket-Version": {"8"}}))
	expect(wsroom.RefusedOrigin, http.StatusForbidden, handshake("?user=a", http.Header{"Origin": {"http://elsewhere.example"}}))
	expect(wsroom.RefusedIdentify, http.StatusForbidden, handshake("?user=banned", nil))
	expect(wsroom.RefusedIdentify, http.StatusUnauthorized, handshake("?user=anonymous", nil))

	first := wstest.Dial(t, s.url+"?user=dup", nil) // accepted
	second := wstest.Dial(t, s.url+"?user=dup", nil)
	second.ExpectClose(t, 1008) // refused after the 101 (MaxConnsPerUser)
	wants = append(wants, want{wsroom.RefusedTooManyConns, http.StatusSwitchingProtocols})

	// A ResponseWriter that cannot be hijacked.
	rr := httptest.NewRecorder()
	s.hub.ServeHTTP(rr, wstest.Request(s.url+"?user=b", nil))
	expect(wsroom.RefusedHijack, http.StatusInternalServerError, rr.Code)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- s.hub.Shutdown(ctx) }()
	expectCloseAnswering(t, first, 1001)
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	expect(wsroom.RefusedShutdown, http.StatusServiceUnavailable, handshake("?user=c", nil))

	m := s.hub.Metrics()
	var byCause [wsroom.NumRefusals]uint64
	for _, w := range wants {
		byCause[w.cause]++
	}
	if m.Refused != byCause || m.Rejected != uint64(len(wants)) {
		t.Errorf("Refused = %v (Rejected %d), want %v (%d)", m.Refused, m.Rejected, byCause, len(wants))
	}
	for cause := range wsroom.NumRefusals {
		if byCause[cause] == 0 {
			t.Errorf("the test caused no %v refusal", cause)
		}
	}

	var refusals []want
	accepted := 0
	for _, e := range eventsOf[wsroom.HandshakeEvent](rec) {
		if e.Request == nil {
			t.Errorf("handshake event without its request: %+v", e)
		}
		if e.Conn != nil {
			accepted++
			if e.Status != http.StatusSwitchingProtocols || e.Conn.UserID() != "dup" {
				t.Errorf("accepted handshake event %+v, want status 101 for dup", e)
			}
			continue
		}
		refusals = append(refusals, want{e.Cause, e.Status})
	}
	if fmt.Sprint(refusals) != fmt.Sprint(wants) {
		t.Errorf("refusal events (cause, status): %v, want %v, in that order", refusals, wants)
	}
	if accepted != 1 || m.Accepted != 1 {
		t.Errorf("%d accepted handshake events, Accepted %d; want 1 each", accepted, m.Accepted)
	}
}

// TestObserverCloses ends connections in every way the server can tell
// apart and checks the close counts by class and initiator, and the
// CloseEvent of each connection.
func TestObserverCloses(t *testing.T) {
	rec := &eventRecorder{}
	s := newServer(t, wsroom.Options{
		Identify:          func(r *http.Request) (string, error) { return r.URL.Query().Get("user"), nil },
		PingInterval:      -1,
		SendQueueMessages: 64,
		SendQueueBytes:    1 << 20,
		SendBuffer:        16 << 10,
		Observer:          rec,
	})
	var want [2][wsroom.NumCloseClasses]uint64 // [peer][class]
	check := func(user string, code wsroom.StatusCode, remote bool, cause error) {
		t.Helper()
		var evs []wsroom.CloseEvent
		wstest.WaitFor(t, user+"'s close event", func() bool { evs = closesOf(rec, user); return len(evs) > 0 })
		e := evs[0]
		if e.Err == nil || e.Err.Code != code || e.Err.Remote != remote || (cause != nil && !errors.Is(e.Err, cause)) {
			t.Errorf("%s: close event %+v (err %v), want code %d remote %v cause %v", user, e, e.Err, code, remote, cause)
		}
		if e.Duration <= 0 {
			t.Errorf("%s: close event duration %v", user, e.Duration)
		}
		r := 0
		if remote {
			r = 1
		}
		want[r][wsroom.ClassOf(code)]++
	}
	connOf := func(user string) *wsroom.Conn {
		t.Helper()
		conns := s.hub.UserConns(user)
		if len(conns) != 1 {
			t.Fatalf("%s has %d connections", user, len(conns))
		}
		return conns[0]
	}

	wstest.Dial(t, s.url+"?user=normal", nil).CloseHandshake(t, 1000)
	check("normal", 1000, true, nil)

	wstest.Dial(t, s.url+"?user=app", nil).CloseHandshake(t, 3001)
	check("app", 3001, true, nil)

	// The server closes with an application code; the client answers.
	srvClose := wstest.Dial(t, s.url+"?user=kicked", nil)
	if err := connOf("kicked").Close(4001, "kicked"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := srvClose.ReadMessage(); !strings.Contains(fmt.Sprint(err), "4001") {
		t.Fatalf("kicked: %v, want close 4001", err)
	}
	if err := srvClose.WriteRaw(wstest.CloseFrame(4001, "")); err != nil {
		t.Fatal(err)
	}
	srvClose.ExpectEOF(t)
	check("kicked", 4001, false, nil)

	// An unmasked frame is a protocol error.
	proto := wstest.Dial(t, s.url+"?user=proto", nil)
	if err := proto.WriteRaw(wstest.Frame{Fin: true, Op: wstest.OpText, Payload: []byte("x")}.Bytes()); err != nil {
		t.Fatal(err)
	}
	proto.ExpectClose(t, 1002)
	proto.Close() // the server waits for this (or WriteTimeout) after its close frame
	check("proto", 1002, false, nil)

	// The peer vanishes.
	gone := wstest.Dial(t, s.url+"?user=gone", nil)
	connOf("gone")
	gone.Close()
	check("gone", 1006, true, nil)

	// A peer that reads nothing overflows its queue.
	slow := wstest.Dial(t, s.url+"?user=slow", nil)
	c := connOf("slow")
	big := wsroom.Binary(make([]byte, 64<<10))
	sent := 0
	for ; sent < 1000; sent++ {
		if err := c.Send(big); err != nil {
			if !errors.Is(err, wsroom.ErrSlowConsumer) {
				t.Fatalf("Send: %v, want ErrSlowConsumer eventually", err)
			}
			break
		}
	}
	if sent == 1000 {
		t.Fatal("1000 sends of 64 KiB to a peer that reads nothing did not overflow its queue")
	}
	// Now it reads: what was written before the close, then the close.
	if reason := expectCloseAnswering(t, slow, 1008); reason != "slow consumer" {
		t.Errorf("slow consumer close reason %q", reason)
	}
	check("slow", 1008, false, wsroom.ErrSlowConsumer)

	m := s.hub.Metrics()
	if m.Closes != want {
		t.Errorf("Closes = %v, want %v", m.Closes, want)
	}
	if m.SlowConsumerCloses != 1 {
		t.Errorf("SlowConsumerCloses = %d, want 1", m.SlowConsumerCloses)
	}
	// Each connection's end was reported once.
	for _, user := range []string{"normal", "app", "kicked", "proto", "gone", "slow"} {
		if n := len(closesOf(rec, user)); n != 1 {
			t.Errorf("%s: %d close events, want 1", user, n)
		}
	}
	if n := len(eventsOf[wsroom.CloseEvent](rec)); n != 6 {
		t.Errorf("%d close events, want 6", n)
	}
}

// expectCloseAnswering reads until a close frame with code want, answers
// it, and expects the end of the stream. It returns the close reason.
func expectCloseAnswering(t *testing.T, c *wstest.Conn, want int) string {
	t.Helper()
	for {
		_, _, err := c.ReadMessage()
		var ce *wstest.CloseError
		if errors.As(err, &ce) {
			if ce.Code != want {
				t.Fatalf("close %d %q, want %d", ce.Code, ce.Reason, want)
			}
			c.MustWrite(t, wstest.CloseFrame(want, ""))
			c.ExpectEOF(t)
			return ce.Reason
		}
		if err != nil {
			t.Fatalf("waiting for close %d: %v", want, err)
		}
	}
}

// TestMetricsQueue checks the queue gauges and the queue-delay histogram:
// frames queued while the writer is held (OnConnect runs before the 101)
// are counted in QueuedFrames and QueuedBytes, and go out in one write;
// then every message sent and read one at a time is a write of its own.
func TestMetricsQueue(t *testing.T) {
	const held = 20 * time.Millisecond
	inConnect := make(chan wsroom.Metrics, 1)
	conns := make(chan *wsroom.Conn, 1)
	greetings := []string{"one", "two", "three"}
	s := newServer(t, wsroom.Options{
		PingInterval: -1,
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error {
			for _, g := range greetings {
				c.Send(wsroom.Text(g))
			}
			time.Sleep(held) // they wait at least this long in the queue
			inConnect <- c.Hub().Metrics()
			conns <- c
			return nil
		},
	})
	c := wstest.Dial(t, s.url, nil)
	m := <-inConnect
	wantBytes := 0
	for _, g := range greetings {
		// The frame (header and payload) by its allocation's size class,
		// and the queue's 8-byte slot and 24-byte reference.
		wantBytes += cap(slices.Grow([]byte(nil), 2+len(g))) + 32
	}
	if m.QueuedFrames != int64(len(greetings)) || m.QueuedBytes != int64(wantBytes) {
		t.Errorf("during OnConnect: QueuedFrames %d, QueuedBytes %d; want %d, %d", m.QueuedFrames, m.QueuedBytes, len(greetings), wantBytes)
	}
	if m.QueueDelay.Count != 0 {
		t.Errorf("during OnConnect: QueueDelay.Count %d, want 0", m.QueueDelay.Count)
	}
	for _, g := range greetings {
		c.ExpectText(t, g)
	}
	wstest.WaitFor(t, "the greetings to be counted", func() bool { return s.hub.Stats().MessagesOut == uint64(len(greetings)) })
	m = s.hub.Metrics()
	if m.QueueDelay.Count != 1 {
		t.Fatalf("QueueDelay.Count %d after the greetings, want 1 (one write)", m.QueueDelay.Count)
	}
	for i, n := range m.QueueDelay.Counts {
		if n > 0 && (i < wsroom.NumBuckets-1 && wsroom.BucketBound(i) < held) {
			t.Errorf("a delay of at least %v was counted in bucket %d (up to %v)", held, i, wsroom.BucketBound(i))
		}
	}
	if m.QueueDelay.Sum < held {
		t.Errorf("QueueDelay.Sum %v, want at least %v", m.QueueDelay.Sum, held)
	}
	if m.QueuedBytes != 0 || m.QueuedFrames != 0 {
		t.Errorf("after the write: QueuedBytes %d, QueuedFrames %d; want 0", m.QueuedBytes, m.QueuedFrames)
	}

	conn := <-conns
	const n = 50
	for i := range n {
		msg := fmt.Sprint("m", i)
		if err := conn.Send(wsroom.Text(msg)); err != nil {
			t.Fatal(err)
		}
		c.ExpectText(t, msg)
	}
	total := uint64(len(greetings) + n)
	wstest.WaitFor(t, "the messages to be counted", func() bool { return s.hub.Stats().MessagesOut == total })
	m = s.hub.Metrics()
	if m.QueueDelay.Count != 1+n {
		t.Errorf("QueueDelay.Count %d, want %d: one per write", m.QueueDelay.Count, 1+n)
	}
	var sum uint64
	for _, k := range m.QueueDelay.Counts {
		sum += k
	}
	if sum != m.QueueDelay.Count {
		t.Errorf("the buckets add up to %d, Count is %d", sum, m.QueueDelay.Count)
	}
}

// TestMetricsBroker: with two hubs on a membroker bus, sends from one are
// counted as published there and as received, with their lag, on the
// other; a publish that fails is counted and reported to the Observer.
func TestMetricsBroker(t *testing.T) {
	bus := membroker.NewBus()
	recA := &eventRecorder{}
	a := newServer(t, wsroom.Options{Broker: bus.NewBroker(), Observer: recA, PingInterval: -1})
	b := newServer(t, wsroom.Options{
		Broker:       bus.NewBroker(),
		PingInterval: -1,
		OnConnect:    func(c *wsroom.Conn, _ *http.Request) error { return c.Join("room") },
	})
	member := wstest.Dial(t, b.url, nil)

	const n = 20
	for i := range n {
		if err := a.hub.Room("room").Broadcast(wsroom.Text(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		member.ExpectText(t, fmt.Sprint(i))
	}
	mb := b.hub.Metrics()
	if mb.BrokerIn != n || mb.BrokerLag.Count != n || mb.BrokerOut != 0 {
		t.Errorf("node B: BrokerIn %d, BrokerLag.Count %d, BrokerOut %d; want %d, %d, 0", mb.BrokerIn, mb.BrokerLag.Count, mb.BrokerOut, n, n)
	}
	var sum uint64
	for _, k := range mb.BrokerLag.Counts {
		sum += k
	}
	if sum != n || mb.BrokerLag.Sum < 0 {
		t.Errorf("node B's lag buckets add up to %d (sum %v), want %d", sum, mb.BrokerLag.Sum, n)
	}
	ma := a.hub.Metrics()
	if ma.BrokerOut != n || ma.BrokerIn != 0 || ma.BrokerLag.Count != 0 || ma.BrokerErrors != 0 {
		t.Errorf("node A: BrokerOut %d, BrokerIn %d, BrokerLag.Count %d, BrokerErrors %d; want %d, 0, 0, 0 (its own echo is not received)",
			ma.BrokerOut, ma.BrokerIn, ma.BrokerLag.Count, ma.BrokerErrors, n)
	}

	bus.SetDown(true)
	err := a.hub.Room("room").Broadcast(wsroom.Text("lost"))
	bus.SetDown(false)
	if !errors.Is(err, wsroom.ErrNotPublished) {
		t.Fatalf("Broadcast while the bus is down: %v, want ErrNotPublished", err)
	}
	ma = a.hub.Metrics()
	if ma.BrokerErrors != 1 || ma.BrokerOut != n {
		t.Errorf("node A after a failed publish: BrokerErrors %d, BrokerOut %d; want 1, %d", ma.BrokerErrors, ma.BrokerOut, n)
	}
	evs := eventsOf[wsroom.BrokerErrorEvent](recA)
	if len(evs) != 1 || evs[0].Op != "publish" || !errors.Is(evs[0].Err, membroker.ErrDown) {
		t.Errorf("broker error events %+v, want one publish failure with membroker.ErrDown", evs)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLogAttributes: a connection's log records carry its user, ID,
// remote address and rooms count.
func TestLogAttributes(t *testing.T) {
	var buf syncBuffer
	rec := &eventRecorder{}
	s := newServer(t, wsroom.Options{
		Identify:     func(r *http.Request) (string, error) { return "alice", nil },
		OnConnect:    func(c *wsroom.Conn, _ *http.Request) error { c.Join("a"); return c.Join("b") },
		OnMessage:    func(c *wsroom.Conn, m wsroom.Message) { panic("boom") },
		Logger:       slog.New(slog.NewJSONHandler(&buf, nil)),
		PingInterval: -1,
		Observer:     rec,
	})
	c := wstest.Dial(t, s.url, nil)
	id := s.hub.UserConns("alice")[0].ConnID()
	c.SendText(t, "x")
	c.ExpectClose(t, 1011)
	c.Close()
	wstest.WaitFor(t, "the close event", func() bool { return len(closesOf(rec, "alice")) == 1 })

	var found bool
	for line := range strings.Lines(buf.String()) {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if !strings.Contains(fmt.Sprint(r["msg"]), "panic in OnMessage") {
			continue
		}
		found = true
		if r["user"] != "alice" || r["conn"] != id || r["remote"] != c.NetConn().LocalAddr().String() || r["rooms"] != 2.0 {
			t.Errorf("panic record %v: want user alice, conn %s, remote %s, rooms 2", r, id, c.NetConn().LocalAddr())
		}
	}
	if !found {
		t.Errorf("no panic record in the log:\n%s", buf.String())
	}
}
