package wsroom

// Counting: the running totals behind Stats and Metrics. Everything here
// is a plain atomic counter or histogram bucket, updated where the event
// happens and read only when a snapshot is asked for, so watching a Hub
// costs nothing between scrapes.

import (
	"math/bits"
	"net/http"
	"sync/atomic"
	"time"
)

// counters are the hub's running totals.
type counters struct {
	accepted, rejected    atomic.Uint64
	messagesIn, bytesIn   atomic.Uint64
	messagesOut, bytesOut atomic.Uint64
	slowConsumers, panics atomic.Uint64
	parks                 atomic.Uint64 // connections parked (park.go)
	parked                atomic.Int64  // connections parked now
	brokerOut, brokerIn   atomic.Uint64
	brokerErrors          atomic.Uint64

	historyResumed, historyLost, historyReplayed atomic.Uint64

	refused    [NumRefusals]atomic.Uint64
	closes     [2][NumCloseClasses]atomic.Uint64 // [remote][class]
	queueDelay histogram
	brokerLag  histogram
}

// Stats is a snapshot of a Hub's state and running totals.
type Stats struct {
	Connections int // open connections
	Rooms       int // rooms with at least one member
	Users       int // distinct user IDs among open connections

	Accepted uint64 // handshakes completed
	Rejected uint64 // handshakes refused, whatever the reason

	MessagesIn  uint64 // data messages read
	BytesIn     uint64 // bytes read from sockets after the handshake
	MessagesOut uint64 // data messages written to sockets (one per recipient)
	BytesOut    uint64 // bytes written to sockets after the handshake

	SlowConsumerCloses uint64 // connections closed because their queue overflowed

	// Parked is the number of connections parked now: connections whose
	// writer fell behind by parkBytes (64 KiB) and whose rooms' broadcasts
	// (and hub-wide ones) wait for them in backlogs instead of their queue
	// (see "Stalled neighbours" in the README). Parks counts the parkings.
	Parked int
	Parks  uint64
	Panics uint64 // panics recovered in callbacks

	// With a Broker: sends published to the other nodes, sends received
	// from them (this node's echo excluded), and failures: every
	// BrokerErrorEvent (publishes that returned ErrNotPublished to the
	// sender, (un)subscribe errors, received messages that could not be
	// decoded, history reads and presence writes that failed).
	BrokerOut, BrokerIn, BrokerErrors uint64

	// Rooms with history (Options.History): resumes that recovered every
	// missed message; losses reported to clients (resumes that could not
	// recover everything: the epoch changed or the messages were no longer
	// kept, and gaps in a room's history a HistoryBroker could not fill,
	// told once per room to its wsroom.v1 members); and the messages
	// replayed.
	HistoryResumes, HistoryLost, HistoryReplayed uint64
}

// Stats returns a snapshot of the hub's counters.
func (h *Hub) Stats() Stats {
	h.mu.RLock()
	s := Stats{Connections: len(h.conns), Rooms: len(h.rooms), Users: len(h.users)}
	h.mu.RUnlock()
	s.Accepted = h.stats.accepted.Load()
	s.Rejected = h.stats.rejected.Load()
	s.MessagesIn = h.stats.messagesIn.Load()
	s.BytesIn = h.stats.bytesIn.Load()
	s.MessagesOut = h.stats.messagesOut.Load()
	s.BytesOut = h.stats.bytesOut.Load()
	s.SlowConsumerCloses = h.stats.slowConsumers.Load()
	s.Panics = h.stats.panics.Load()
	s.Parked = int(h.stats.parked.Load())
	s.Parks = h.stats.parks.Load()
	s.BrokerOut = h.stats.brokerOut.Load()
	s.BrokerIn = h.stats.brokerIn.Load()
	s.BrokerErrors = h.stats.brokerErrors.Load()
	s.HistoryResumes = h.stats.historyResumed.Load()
	s.HistoryLost = h.stats.historyLost.Load()
	s.HistoryReplayed = h.stats.historyReplayed.Load()
	return s
}

// Metrics is everything a monitoring system needs from a Hub: Stats, and
// the counts broken down by a bounded set of labels, the bytes waiting in
// queues and the delay distributions. The wsroomprom module exports it to
// Prometheus.
type Metrics struct {
	Stats

	// Refused counts refused handshakes by cause (see Refusal).
	Refused [NumRefusals]uint64

	// Closes counts ended connections by close code class (see
	// CloseClass) and by who initiated the close: Closes[0] the server,
	// Closes[1] the peer (CloseError.Remote).
	Closes [2][NumCloseClasses]uint64

	// QueuedBytes is what the connections' queues hold now, counted as
	// SendQueueBytes counts it; QueuedFrames the frames among them. What
	// backlogs hold for parked connections (see Stats.Parked) is
	// not in them: it is shared, and bounded by the same SendQueueBytes.
	QueuedBytes, QueuedFrames int64

	// QueueDelay is how long frames waited in a queue before the write
	// that sent them: one observation per write, for the oldest frame in
	// it.
	QueueDelay Histogram

	// BrokerLag is how long sends from other nodes took from their
	// publish to their arrival here (the two nodes' clocks included).
	BrokerLag Histogram
}

// Metrics returns a snapshot of the hub's metrics. It visits every
// connection to add up QueuedBytes: O(connections), a millisecond or so
// for 10,000; call it at scrape time, not per message.
func (h *Hub) Metrics() Metrics {
	m := Metrics{Stats: h.Stats()}
	for i := range m.Refused {
		m.Refused[i] = h.stats.refused[i].Load()
	}
	for r := range m.Closes {
		for i := range m.Closes[r] {
			m.Closes[r][i] = h.stats.closes[r][i].Load()
		}
	}
	buf := getConns()
	h.mu.RLock()
	*buf = append(*buf, h.conns...)
	h.mu.RUnlock()
	for _, c := range *buf {
		c.mu.Lock()
		m.QueuedBytes += int64(c.q.pinned())
		m.QueuedFrames += int64(c.q.len)
		c.mu.Unlock()
	}
	putConns(buf)
	m.QueueDelay = h.stats.queueDelay.snapshot()
	m.BrokerLag = h.stats.brokerLag.snapshot()
	return m
}

// Refusal is why a handshake was refused.
type Refusal uint8

// Refusal causes. Their String values are short, stable label values.
const (
	RefusedNotWebSocket Refusal = iota // ServeHTTP got a request that is not a WebSocket handshake (426)
	RefusedBadRequest                  // a malformed handshake (400, 405, 426)
	RefusedOrigin                      // a cross-origin request not allowed (403)
	RefusedIdentify                    // Identify returned an error (401, or its status)
	RefusedShutdown                    // Shutdown had begun (503, or 1001 right after the 101)
	RefusedHijack                      // the connection could not be taken over (500)
	RefusedTooManyConns                // the user has MaxConnsPerUser connections (1008 after the 101)
	NumRefusals                        // the number of causes
)

var refusalNames = [NumRefusals]string{"not_websocket", "bad_request", "origin", "identify", "shutdown", "hijack", "too_many_connections"}

func (r Refusal) String() string {
	if r < NumRefusals {
		return refusalNames[r]
	}
	return "unknown"
}

// refused counts a refused handshake and tells the Observer.
func (h *Hub) refused(r *http.Request, cause Refusal, status int) {
	h.stats.rejected.Add(1)
	h.stats.refused[cause].Add(1)
	h.observe(HandshakeEvent{Request: r, Cause: cause, Status: status})
}

// CloseClass groups close codes into a bounded set: each code RFC 6455
// defines (1000–1015) is its own class; application codes are grouped by
// thousand (3xxx, 4xxx); anything else is "other".
type CloseClass uint8

// NumCloseClasses is the number of close classes.
const NumCloseClasses = 19

const (
	closeClass3xxx  = 16
	closeClass4xxx  = 17
	closeClassOther = 18
)

// ClassOf returns the class of a close code.
func ClassOf(code StatusCode) CloseClass {
	switch {
	case code >= 1000 && code <= 1015:
		return CloseClass(code - 1000)
	case code >= 3000 && code <= 3999:
		return closeClass3xxx
	case code >= 4000 && code <= 4999:
		return closeClass4xxx
	}
	return closeClassOther
}

// String returns the class's label value: "1000" … "1015", "3xxx",
// "4xxx" or "other".
func (c CloseClass) String() string {
	switch {
	case c < 16:
		return itoa(1000 + int(c))
	case c == closeClass3xxx:
		return "3xxx"
	case c == closeClass4xxx:
		return "4xxx"
	}
	return "other"
}

func itoa(n int) string {
	var b [8]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		if n /= 10; n == 0 {
			return string(b[i:])
		}
	}
}

// countClose counts a connection's end.
func (h *Hub) countClose(ce *CloseError) {
	r := 0
	if ce.Remote {
		r = 1
	}
	h.stats.closes[r][ClassOf(ce.Code)].Add(1)
}

// Histogram buckets: powers of two from 2^14 ns (about 16 µs) to 2^34 ns
// (about 17 s), then +Inf.
const (
	histMinShift = 14
	NumBuckets   = 22
)

// histogram counts durations in exponential buckets, lock-free.
type histogram struct {
	counts [NumBuckets]atomic.Uint64
	sum    atomic.Int64 // nanoseconds
}

func (hg *histogram) observe(d time.Duration) {
	if d < 0 {
		d = 0
	}
	i := bits.Len64(uint64(d) >> histMinShift)
	if i >= NumBuckets {
		i = NumBuckets - 1
	}
	hg.counts[i].Add(1)
	hg.sum.Add(int64(d))
}

func (hg *histogram) snapshot() Histogram {
	var s Histogram
	for i := range s.Counts {
		n := hg.counts[i].Load()
		s.Counts[i] = n
		s.Count += n
	}
	s.Sum = time.Duration(hg.sum.Load())
	return s
}

// Histogram is a snapshot of a distribution of durations. Counts[i] is the
// number of observations in bucket i, which holds durations up to
// BucketBound(i) (and above BucketBound(i-1)); the last bucket is
// unbounded.
type Histogram struct {
	Counts [NumBuckets]uint64
	Count  uint64
	Sum    time.Duration
}

// BucketBound returns the inclusive upper bound of bucket i, or -1 for the
// last, unbounded bucket.
func BucketBound(i int) time.Duration {
	if i >= NumBuckets-1 {
		return -1
	}
	return time.Duration(1)<<(histMinShift+i) - 1
}
