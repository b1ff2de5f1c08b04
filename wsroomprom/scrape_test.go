package wsroomprom_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
	"github.com/wsroom/wsroom/membroker"
	"github.com/wsroom/wsroom/wsroomprom"
)

// closeCounter is an Observer that counts CloseEvents: a close is
// counted in Metrics before its event.
type closeCounter struct{ n atomic.Int64 }

func (c *closeCounter) Observe(e wsroom.Event) {
	if _, ok := e.(wsroom.CloseEvent); ok {
		c.n.Add(1)
	}
}

// expected is what a test caused on one hub, in the exporter's terms.
type expected struct {
	accepted, messagesIn, messagesOut, slow, panics int
	brokerOut, brokerIn, brokerErrors               int
	refused                                         map[string]int    // by cause
	closes                                          map[[2]string]int // by code class and initiator
	clients                                         []*wsClient       // accepted connections: their bytes
}

func newExpected() *expected {
	return &expected{refused: map[string]int{}, closes: map[[2]string]int{}}
}

func (e *expected) accept(c *wsClient) *wsClient {
	e.accepted++
	e.clients = append(e.clients, c)
	return c
}

func (e *expected) closed(code int, initiator string) {
	e.closes[[2]string{wsroom.ClassOf(wsroom.StatusCode(code)).String(), initiator}]++
}

func (e *expected) closeCount() (n int) {
	for _, k := range e.closes {
		n += k
	}
	return n
}

// bytes returns what the clients read and wrote after their handshakes:
// the server wrote and read exactly that.
func (e *expected) bytes() (in, out int) {
	for _, c := range e.clients {
		in += c.out
		out += c.in
	}
	return in, out
}

// scrape fetches /metrics over HTTP and parses it with Prometheus' text
// parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		t.Fatalf("scrape: %s %q: %s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	return fams
}

// sample finds the one metric of family name whose labels include want.
func sample(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no metric family %s in the scrape", name)
	}
	var found *dto.Metric
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && labels[k] == v
		}
		if match {
			if found != nil {
				t.Fatalf("%s%s: more than one series", name, labelString(want))
			}
			found = m
		}
	}
	if found == nil {
		t.Fatalf("%s%s: no such series", name, labelString(want))
	}
	return found
}

// labelString formats labels as Prometheus does, sorted.
func labelString(labels map[string]string) string {
	var parts []string
	for k, v := range labels {
		parts = append(parts, fmt.Sprintf("%s=%q", k, v))
	}
	slices.Sort(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

// value returns the value of a counter or gauge.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	m := sample(t, fams, name, labels)
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("%s%s is neither a counter nor a gauge", name, labelString(labels))
	return 0
}

// checkNode compares a node's scraped counters with what the test caused.
func checkNode(t *testing.T, fams map[string]*dto.MetricFamily, node string, want *expected, hub *wsroom.Hub) {
	t.Helper()
	l := func(kv ...string) map[string]string {
		m := map[string]string{"node": node}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	eq := func(name string, labels map[string]string, want int) {
		t.Helper()
		if got := value(t, fams, name, labels); got != float64(want) {
			t.Errorf("%s%s = %v, want %d", name, labelString(labels), got, want)
		}
	}
	in, out := want.bytes()
	eq("wsroom_handshakes_accepted_total", l(), want.accepted)
	eq("wsroom_messages_received_total", l(), want.messagesIn)
	eq("wsroom_messages_sent_total", l(), want.messagesOut)
	eq("wsroom_received_bytes_total", l(), in)
	eq("wsroom_sent_bytes_total", l(), out)
	eq("wsroom_slow_consumer_closes_total", l(), want.slow)
	eq("wsroom_panics_total", l(), want.panics)
	eq("wsroom_broker_published_total", l(), want.brokerOut)
	eq("wsroom_broker_received_total", l(), want.brokerIn)
	eq("wsroom_broker_errors_total", l(), want.brokerErrors)
	for cause := range wsroom.NumRefusals {
		eq("wsroom_handshakes_refused_total", l("cause", cause.String()), want.refused[cause.String()])
	}
	for _, who := range []string{"server", "peer"} {
		for class := range wsroom.CloseClass(wsroom.NumCloseClasses) {
			eq("wsroom_closes_total", l("code", class.String(), "initiator", who), want.closes[[2]string{class.String(), who}])
		}
	}
	// Every label value the test caused is one the exporter knows.
	for k := range want.refused {
		sample(t, fams, "wsroom_handshakes_refused_total", l("cause", k))
	}
	for k := range want.closes {
		sample(t, fams, "wsroom_closes_total", l("code", k[0], "initiator", k[1]))
	}
	// The histograms are the hub's, in seconds and cumulative.
	m := hub.Metrics()
	for name, hg := range map[string]wsroom.Histogram{"wsroom_queue_delay_seconds": m.QueueDelay, "wsroom_broker_lag_seconds": m.BrokerLag} {
		h := sample(t, fams, name, l()).GetHistogram()
		if h.GetSampleCount() != hg.Count || h.GetSampleSum() != hg.Sum.Seconds() {
			t.Errorf("%s{node=%s}: count %d sum %v, want %d, %v", name, node, h.GetSampleCount(), h.GetSampleSum(), hg.Count, hg.Sum.Seconds())
		}
		// The text format ends with the +Inf bucket, which the parser keeps.
		buckets := h.GetBucket()
		if len(buckets) != wsroom.NumBuckets {
			t.Fatalf("%s: %d buckets, want %d", name, len(buckets), wsroom.NumBuckets)
		}
		var cum uint64
		for i, b := range buckets {
			cum += hg.Counts[i]
			le := wsroom.BucketBound(i).Seconds()
			if i == wsroom.NumBuckets-1 {
				le = math.Inf(1)
			}
			if b.GetUpperBound() != le || b.GetCumulativeCount() != cum {
				t.Errorf("%s bucket %d: le %v count %d, want le %v count %d", name, i, b.GetUpperBound(), b.GetCumulativeCount(), le, cum)
			}
		}
		if cum != hg.Count {
			t.Errorf("%s: the buckets add up to %d, the count is %d", name, cum, hg.Count)
		}
	}
}

// serveHubs serves each hub at /NAME and all their metrics at /metrics,
// each hub's labelled node=NAME, on a loopback server. Cleanup shuts the
// hubs down, then the server.
func serveHubs(t *testing.T, hubs map[string]*wsroom.Hub) *httptest.Server {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	mux := http.NewServeMux()
	for name, hub := range hubs {
		reg.MustRegister(wsroomprom.NewCollector(hub, wsroomprom.Options{ConstLabels: prometheus.Labels{"node": name}}))
		mux.Handle("GET /"+name, hub)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, h := range hubs {
			if err := h.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		}
		srv.Close()
	})
	return srv
}

// TestScrape runs two hubs (nodes a and b on a membroker bus) on real
// loopback sockets, causes every kind of event the exporter counts,
// scrapes the real /metrics endpoint and checks each counter against
// what the test caused; and that every message a broadcast meant for a
// recipient was delivered or is accounted for by that recipient's close
// with a reason.
func TestScrape(t *testing.T) {
	bus := membroker.NewBus()
	var closesA, closesB closeCounter
	held, release := make(chan struct{}), make(chan struct{})
	greetings := []string{"one", "two", "three"}
	a := wsroom.New(wsroom.Options{
		Identify: func(r *http.Request) (string, error) {
			if u := r.URL.Query().Get("user"); u != "banned" {
				return u, nil
			}
			return "", wsroom.Reject(http.StatusForbidden, "banned")
		},
		OnConnect: func(c *wsroom.Conn, r *http.Request) error {
			if c.UserID() == "held" {
				for _, g := range greetings {
					c.Send(wsroom.Text(g))
				}
				close(held)
				<-release
			}
			if r.URL.Query().Get("room") == "1" {
				return c.Join("room")
			}
			return nil
		},
		OnMessage: func(c *wsroom.Conn, m wsroom.Message) {
			switch s := m.String(); {
			case s == "panic":
				panic("asked to")
			case strings.HasPrefix(s, "close "):
				code, _ := strconv.Atoi(s[len("close "):])
				c.Close(wsroom.StatusCode(code), "asked to")
			default:
				c.Send(m)
			}
		},
		MaxConnsPerUser: 2,
		PingInterval:    -1,
		SendQueueBytes:  256 << 10,
		SendBuffer:      16 << 10,
		Broker:          bus.NewBroker(),
		Observer:        &closesA,
		Logger:          quietLogger(),
	})
	b := wsroom.New(wsroom.Options{
		OnConnect:    func(c *wsroom.Conn, _ *http.Request) error { return c.Join("room") },
		PingInterval: -1,
		Broker:       bus.NewBroker(),
		Observer:     &closesB,
		Logger:       quietLogger(),
	})
	srv := serveHubs(t, map[string]*wsroom.Hub{"a": a, "b": b})
	unhold := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unhold) // before the hubs shut down, should the test stop early
	addr := srv.Listener.Addr().String()
	metricsURL := srv.URL + "/metrics"
	wantA, wantB := newExpected(), newExpected()

	// Frames queued while OnConnect holds the writer show in the queue
	// gauges.
	type dialed struct {
		c   *wsClient
		err error
	}
	heldDone := make(chan dialed, 1)
	go func() {
		c, resp, err := tryHandshake(addr, "/a?user=held", nil)
		if err == nil && resp.StatusCode != http.StatusSwitchingProtocols {
			c.nc.Close()
			err = errors.New(resp.Status)
		}
		heldDone <- dialed{c, err}
	}()
	select {
	case <-held:
	case d := <-heldDone:
		t.Fatalf("held handshake ended before OnConnect held it: %v", d.err)
	case <-time.After(10 * time.Second):
		t.Fatal("OnConnect never ran for the held connection")
	}
	fams := scrape(t, metricsURL)
	queued := 0
	for _, g := range greetings {
		queued += cap(slices.Grow([]byte(nil), 2+len(g))) + 32 // the frame's allocation, its slot and reference
	}
	if f, b := value(t, fams, "wsroom_queued_frames", map[string]string{"node": "a"}), value(t, fams, "wsroom_queued_bytes", map[string]string{"node": "a"}); f != 3 || b != float64(queued) {
		t.Errorf("while OnConnect holds 3 greetings: queued_frames %v, queued_bytes %v; want 3, %d", f, b, queued)
	}
	unhold()
	hd := <-heldDone
	if hd.err != nil {
		t.Fatalf("held handshake: %v", hd.err)
	}
	hd.c.t = t
	t.Cleanup(func() { hd.c.nc.Close() })
	heldClient := wantA.accept(hd.c)
	for _, g := range greetings {
		heldClient.expectText(g)
	}
	wantA.messagesOut += len(greetings)

	// Refused handshakes, one of each cause but shutdown (node b's, at
	// the end).
	refuse := func(cause, target string, extra http.Header, status int) {
		t.Helper()
		_, resp := handshake(t, addr, target, extra)
		if resp.StatusCode != status {
			t.Fatalf("%s: %s, want %d", cause, resp.Status, status)
		}
		wantA.refused[cause]++
	}
	refuse("not_websocket", "/a", http.Header{"Upgrade": {""}, "Connection": {""}}, http.StatusUpgradeRequired)
	refuse("bad_request", "/a?user=x", http.Header{"Sec-Websocket-Version": {"8"}}, http.StatusUpgradeRequired)
	refuse("bad_request", "/a?user=x", http.Header{"Sec-Websocket-Key": {"short"}}, http.StatusBadRequest)
	refuse("origin", "/a?user=x", http.Header{"Origin": {"http://elsewhere.example"}}, http.StatusForbidden)
	refuse("identify", "/a?user=banned", nil, http.StatusForbidden)
	rr := httptest.NewRecorder() // cannot be hijacked
	req := httptest.NewRequest("GET", "/a?user=x", nil)
	for k, v := range map[string]string{"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="} {
		req.Header.Set(k, v)
	}
	a.ServeHTTP(rr, req)
	if rr.Code != http.StatusInternalServerError {
		t.Fatalf("hijack: %d", rr.Code)
	}
	wantA.refused["hijack"]++

	// Members of "room": four on node a that read, one that does not,
	// and one on node b.
	readers := []*wsClient{
		wantA.accept(dialWS(t, addr, "/a?user=alice&room=1")),
		wantA.accept(dialWS(t, addr, "/a?user=bob&room=1")),
		wantA.accept(dialWS(t, addr, "/a?user=dup&room=1")),
		wantA.accept(dialWS(t, addr, "/a?user=dup&room=1")),
	}
	slow := wantA.accept(dialWS(t, addr, "/a?user=slow&room=1"))
	carol := wantB.accept(dialWS(t, addr, "/b?user=carol"))
	// dup's third connection: 101, then 1008 (MaxConnsPerUser).
	third, resp := handshake(t, addr, "/a?user=dup&room=1", nil)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("third connection of dup: %s", resp.Status)
	}
	third.readUntilClose(1008)
	wantA.refused["too_many_connections"]++

	// Echoes.
	for i := range 10 {
		msg := fmt.Sprint("echo ", i)
		readers[0].sendText(msg)
		readers[0].expectText(msg)
	}
	wantA.messagesIn += 10
	wantA.messagesOut += 10

	// Broadcasts of 32 KiB from node a, each read by every reader
	// before the next: the one member that reads nothing overflows its
	// 256 KiB queue and is closed as a slow consumer.
	const broadcasts = 64
	payload := make([]byte, 32<<10)
	for i := range broadcasts {
		copy(payload, fmt.Sprintf("%08d", i))
		if err := a.Room("room").Broadcast(wsroom.Binary(payload)); err != nil {
			t.Fatalf("broadcast %d: %v", i, err)
		}
		for _, c := range append(readers, carol) {
			if op, p, err := c.next(5 * time.Second); err != nil || op != 0x2 || string(p[:8]) != fmt.Sprintf("%08d", i) {
				t.Fatalf("broadcast %d: op %d, %v", i, op, err)
			}
		}
	}
	if n := a.Stats().SlowConsumerCloses; n != 1 {
		t.Fatalf("after %d broadcasts of 32 KiB: %d slow consumers, want 1", broadcasts, n)
	}
	slow.answerClose(1008) // reads what was written before its close
	if slow.reason != "slow consumer" || slow.received >= broadcasts {
		t.Fatalf("the slow member read %d messages, then close %d %q", slow.received, slow.closeCode, slow.reason)
	}
	wantA.slow++
	wantA.closed(1008, "server")
	wantA.messagesOut += len(readers)*broadcasts + slow.received
	wantA.brokerOut += broadcasts
	wantB.brokerIn += broadcasts
	wantB.messagesOut += broadcasts

	// Every member got every broadcast, or its close says why not.
	for _, c := range append(readers, carol, slow) {
		if c.received < broadcasts && (c.closeCode == 0 || c.reason == "") {
			t.Errorf("a member read %d of %d broadcasts and was not closed with a reason", c.received, broadcasts)
		}
	}
	if got := b.Metrics().BrokerLag.Count; got != broadcasts {
		t.Errorf("node b observed the lag of %d sends, want %d", got, broadcasts)
	}

	// A broadcast while the bus is down: delivered on node a only, and
	// counted as a broker error.
	bus.SetDown(true)
	err := a.Room("room").Broadcast(wsroom.Text("local only"))
	bus.SetDown(false)
	if !errors.Is(err, wsroom.ErrNotPublished) {
		t.Fatalf("broadcast with the bus down: %v, want ErrNotPublished", err)
	}
	for _, c := range readers {
		c.expectText("local only")
	}
	wantA.messagesOut += len(readers)
	wantA.brokerErrors++

	// Closes of every kind.
	readers[0].closeHandshake(1000)
	wantA.closed(1000, "peer")
	readers[1].closeHandshake(3001)
	wantA.closed(3001, "peer")
	kicked := wantA.accept(dialWS(t, addr, "/a?user=kicked"))
	kicked.sendText("close 4001")
	kicked.answerClose(4001)
	wantA.messagesIn++
	wantA.closed(4001, "server")
	proto := wantA.accept(dialWS(t, addr, "/a?user=proto"))
	proto.write(frameBytes(0x1, []byte("unmasked"), true))
	proto.readUntilClose(1002)
	proto.nc.Close() // after a protocol error the server reads nothing more
	wantA.closed(1002, "server")
	panicky := wantA.accept(dialWS(t, addr, "/a?user=panicky"))
	panicky.sendText("panic")
	panicky.answerClose(1011)
	wantA.messagesIn++
	wantA.panics++
	wantA.closed(1011, "server")
	gone := wantA.accept(dialWS(t, addr, "/a?user=gone"))
	gone.sendText("hi")
	gone.expectText("hi")
	gone.nc.Close()
	wantA.messagesIn++
	wantA.messagesOut++
	wantA.closed(1006, "peer")

	// Node b shuts down: its member is closed with 1001, and a handshake
	// after that is refused.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- b.Shutdown(ctx) }()
	carol.answerClose(1001)
	if err := <-shut; err != nil {
		t.Fatalf("node b Shutdown: %v", err)
	}
	wantB.closed(1001, "server")
	if _, resp := handshake(t, addr, "/b", nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("handshake after Shutdown: %s", resp.Status)
	}
	wantB.refused["shutdown"]++

	// Counters of a close move before its event, those of a write just
	// after the peer may have read it: wait for both, then scrape.
	for _, n := range []struct {
		hub    *wsroom.Hub
		closes *closeCounter
		want   *expected
	}{{a, &closesA, wantA}, {b, &closesB, wantB}} {
		_, out := n.want.bytes()
		if !wstest.Poll(5*time.Millisecond, 10*time.Second, func() bool {
			return n.closes.n.Load() >= int64(n.want.closeCount()) && n.hub.Stats().BytesOut >= uint64(out)
		}) {
			t.Fatalf("waiting for %d closes (%d seen) and %d bytes out (%d)", n.want.closeCount(), n.closes.n.Load(), out, n.hub.Stats().BytesOut)
		}
	}
	fams = scrape(t, metricsURL)
	checkNode(t, fams, "a", wantA, a)
	checkNode(t, fams, "b", wantB, b)

	// What is open now: on node a, held and dup's two connections, all in
	// one room but held; nothing on node b.
	for _, g := range []struct {
		node, name string
		want       float64
	}{
		{"a", "wsroom_connections", 3}, {"a", "wsroom_users", 2}, {"a", "wsroom_rooms", 1},
		{"a", "wsroom_queued_frames", 0}, {"a", "wsroom_queued_bytes", 0},
		{"b", "wsroom_connections", 0}, {"b", "wsroom_users", 0}, {"b", "wsroom_rooms", 0},
	} {
		if got := value(t, fams, g.name, map[string]string{"node": g.node}); got != g.want {
			t.Errorf("%s{node=%s} = %v, want %v", g.name, g.node, got, g.want)
		}
	}
	// The messages node a sent are those its clients read.
	read := 0
	for _, c := range wantA.clients {
		read += c.received
	}
	if got := value(t, fams, "wsroom_messages_sent_total", map[string]string{"node": "a"}); got != float64(read) {
		t.Errorf("node a sent %v messages, its clients read %d", got, read)
	}
}
