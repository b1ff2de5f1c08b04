// Package wsroomprom exports a wsroom.Hub's metrics to Prometheus.
//
// A Collector reads Hub.Metrics once per scrape, so a hub being watched
// costs nothing between scrapes: the counting itself is the core's plain
// atomics, there whether or not anything reads them. Register it in the
// application's registry, or serve Handler on a route of its own:
//
//	prometheus.MustRegister(wsroomprom.NewCollector(hub, wsroomprom.Options{}))
//	mux.Handle("GET /metrics", promhttp.Handler())
//
//	mux.Handle("GET /metrics", wsroomprom.Handler(hub)) // or: a registry of its own
//
// Every metric is named wsroom_… (see Options.Namespace). Labels have a
// fixed, small set of values (a refusal cause, a close code class, who
// initiated a close), never a room name or a user ID:
//
//	wsroom_connections                    gauge      open connections
//	wsroom_rooms                          gauge      rooms with at least one member
//	wsroom_users                          gauge      distinct user IDs among open connections
//	wsroom_handshakes_accepted_total      counter    handshakes completed
//	wsroom_handshakes_refused_total       counter    handshakes refused, by cause
//	wsroom_messages_received_total        counter    data messages read from clients
//	wsroom_messages_sent_total            counter    data messages written to clients (one per recipient)
//	wsroom_received_bytes_total           counter    bytes read from sockets after the handshake
//	wsroom_sent_bytes_total               counter    bytes written to sockets after the handshake
//	wsroom_closes_total                   counter    connections ended, by code and initiator
//	wsroom_slow_consumer_closes_total     counter    connections closed because their send queue overflowed
//	wsroom_parked_connections             gauge      connections parked (their writer fell behind; served from their rooms' backlogs)
//	wsroom_parks_total                    counter    times a connection was parked
//	wsroom_panics_total                   counter    panics recovered in application callbacks
//	wsroom_queued_bytes                   gauge      bytes waiting in send queues
//	wsroom_queued_frames                  gauge      frames waiting in send queues
//	wsroom_queue_delay_seconds            histogram  time frames waited in a send queue, one observation per write
//	wsroom_broker_published_total         counter    sends published to the other nodes
//	wsroom_broker_received_total          counter    sends received from the other nodes
//	wsroom_broker_errors_total            counter    broker failures (publish, subscribe, receive)
//	wsroom_broker_lag_seconds             histogram  publish → receive time of sends from other nodes
//
// Label values: cause is one of wsroom.Refusal's String values
// (not_websocket, bad_request, origin, identify, shutdown, hijack,
// too_many_connections); code is a wsroom.CloseClass ("1000" … "1015",
// "3xxx", "4xxx", "other"); initiator is "server" or "peer". Every
// combination is exported from the start, at 0 until it happens.
//
// The histograms keep the core's buckets: powers of two from about 16 µs
// to about 17 s, and +Inf. dashboards/wsroom.json is a Grafana dashboard
// over these names; docs/observability.md in the repository shows the
// whole setup.
package wsroomprom
