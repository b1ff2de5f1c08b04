package wsroomprom

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/wsroom/wsroom"
)

// DefaultNamespace prefixes metric names when Options.Namespace is empty.
const DefaultNamespace = "wsroom"

// Options configures a Collector. The zero value is ready to use.
type Options struct {
	// Namespace is the first part of every metric name. Default
	// "wsroom" (DefaultNamespace).
	Namespace string

	// ConstLabels are added to every metric, to tell several Hubs of one
	// process apart, for instance {"hub": "chat"}. Their names must not
	// be cause, code or initiator. Default none.
	ConstLabels prometheus.Labels
}

// The metrics read from wsroom.Metrics. Adding one is one line here.

// scalars are the counters and gauges without labels.
var scalars = []struct {
	name, help string
	typ        prometheus.ValueType
	value      func(m *wsroom.Metrics) float64
}{
	{"connections", "Open WebSocket connections.", gauge, func(m *wsroom.Metrics) float64 { return float64(m.Connections) }},
	{"rooms", "Rooms with at least one member.", gauge, func(m *wsroom.Metrics) float64 { return float64(m.Rooms) }},
	{"users", "Distinct user IDs among open connections.", gauge, func(m *wsroom.Metrics) float64 { return float64(m.Users) }},
	{"handshakes_accepted_total", "WebSocket handshakes completed.", counter, func(m *wsroom.Metrics) float64 { return float64(m.Accepted) }},
	{"messages_received_total", "Data messages read from clients.", counter, func(m *wsroom.Metrics) float64 { return float64(m.MessagesIn) }},
	{"messages_sent_total", "Data messages written to clients, one per recipient.", counter, func(m *wsroom.Metrics) float64 { return float64(m.MessagesOut) }},
	{"received_bytes_total", "Bytes read from WebSocket connections after the handshake.", counter, func(m *wsroom.Metrics) float64 { return float64(m.BytesIn) }},
	{"sent_bytes_total", "Bytes written to WebSocket connections after the handshake.", counter, func(m *wsroom.Metrics) float64 { return float64(m.BytesOut) }},
	{"slow_consumer_closes_total", "Connections closed (1008) because their send queue overflowed.", counter, func(m *wsroom.Metrics) float64 { return float64(m.SlowConsumerCloses) }},
	{"parked_connections", "Connections parked now: their writer fell 64 KiB behind, and their rooms' broadcasts (and hub-wide ones) wait for them in shared backlogs.", gauge, func(m *wsroom.Metrics) float64 { return float64(m.Parked) }},
	{"parks_total", "Times a connection was parked.", counter, func(m *wsroom.Metrics) float64 { return float64(m.Parks) }},
	{"panics_total", "Panics recovered in application callbacks.", counter, func(m *wsroom.Metrics) float64 { return float64(m.Panics) }},
	{"queued_bytes", "Bytes waiting in send queues, with 8 bytes per queued frame (as Options.SendQueueBytes counts them).", gauge, func(m *wsroom.Metrics) float64 { return float64(m.QueuedBytes) }},
	{"queued_frames", "Frames waiting in send queues.", gauge, func(m *wsroom.Metrics) float64 { return float64(m.QueuedFrames) }},
	{"broker_published_total", "Sends published to the other nodes through the broker.", counter, func(m *wsroom.Metrics) float64 { return float64(m.BrokerOut) }},
	{"broker_received_total", "Sends received from the other nodes through the broker.", counter, func(m *wsroom.Metrics) float64 { return float64(m.BrokerIn) }},
	{"broker_errors_total", "Broker failures: publishes that failed, subscribe and unsubscribe errors, malformed messages received.", counter, func(m *wsroom.Metrics) float64 { return float64(m.BrokerErrors) }},
	{"history_resumes_total", "Resumes in rooms with history that recovered every missed message.", counter, func(m *wsroom.Metrics) float64 { return float64(m.HistoryResumes) }},
	{"history_lost_total", "Resumes that could not be served: the epoch changed or the messages were no longer kept.", counter, func(m *wsroom.Metrics) float64 { return float64(m.HistoryLost) }},
	{"history_replayed_total", "Messages replayed from history to resuming connections.", counter, func(m *wsroom.Metrics) float64 { return float64(m.HistoryReplayed) }},
}

// histograms are the delay distributions.
var histograms = []struct {
	name, help string
	value      func(m *wsroom.Metrics) *wsroom.Histogram
}{
	{"queue_delay_seconds", "Time frames waited in a send queue before the write that sent them, one observation per write (its oldest frame).", func(m *wsroom.Metrics) *wsroom.Histogram { return &m.QueueDelay }},
	{"broker_lag_seconds", "Time from publish on another node to arrival here, of sends received through the broker (both clocks included).", func(m *wsroom.Metrics) *wsroom.Histogram { return &m.BrokerLag }},
}

const (
	gauge   = prometheus.GaugeValue
	counter = prometheus.CounterValue
)

// Label values: the bounded sets the core defines.
var (
	initiators = [2]string{"server", "peer"} // indexed like wsroom.Metrics.Closes
	bounds     = func() []float64 {          // the histogram buckets' upper bounds, in seconds
		b := make([]float64, wsroom.NumBuckets-1)
		for i := range b {
			b[i] = wsroom.BucketBound(i).Seconds()
		}
		return b
	}()
)

// Collector is a prometheus.Collector over a Hub. Each Collect reads
// Hub.Metrics once: O(connections) for the queue gauges, about a
// millisecond for 10,000 connections. It is safe for concurrent use.
type Collector struct {
	hub        *wsroom.Hub
	scalars    []*prometheus.Desc // as scalars
	histograms []*prometheus.Desc // as histograms
	refused    *prometheus.Desc
	closes     *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a Collector of hub's metrics, to be registered in
// a prometheus.Registerer. Register one Collector per Hub; with several
// Hubs in one registry, tell them apart with Options.ConstLabels.
func NewCollector(hub *wsroom.Hub, opts Options) *Collector {
	ns := opts.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(ns, "", name), help, labels, opts.ConstLabels)
	}
	c := &Collector{
		hub:     hub,
		refused: desc("handshakes_refused_total", "WebSocket handshakes refused, by cause.", "cause"),
		closes:  desc("closes_total", "Connections ended, by close code (1000–1015, 3xxx, 4xxx, other) and by who sent the first close frame or dropped the connection (server or peer).", "code", "initiator"),
	}
	for _, s := range scalars {
		c.scalars = append(c.scalars, desc(s.name, s.help))
	}
	for _, h := range histograms {
		c.histograms = append(c.histograms, desc(h.name, h.help))
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.scalars {
		ch <- d
	}
	for _, d := range c.histograms {
		ch <- d
	}
	ch <- c.refused
	ch <- c.closes
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	m := c.hub.Metrics()
	for i, s := range scalars {
		ch <- prometheus.MustNewConstMetric(c.scalars[i], s.typ, s.value(&m))
	}
	for cause, n := range m.Refused {
		ch <- prometheus.MustNewConstMetric(c.refused, counter, float64(n), wsroom.Refusal(cause).String())
	}
	for remote, byClass := range m.Closes {
		for class, n := range byClass {
			ch <- prometheus.MustNewConstMetric(c.closes, counter, float64(n), wsroom.CloseClass(class).String(), initiators[remote])
		}
	}
	for i, h := range histograms {
		hg := h.value(&m)
		buckets := make(map[float64]uint64, len(bounds))
		var cum uint64
		for j, le := range bounds {
			cum += hg.Counts[j]
			buckets[le] = cum
		}
		ch <- prometheus.MustNewConstHistogram(c.histograms[i], hg.Count, hg.Sum.Seconds(), buckets)
	}
}

// Handler returns an http.Handler that serves hub's metrics (with the
// default Options), the Go runtime's and the process's, from a registry
// of its own: for an application that has no Prometheus registry yet.
// With one, register NewCollector there instead.
func Handler(hub *wsroom.Hub) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		NewCollector(hub, Options{}),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}
