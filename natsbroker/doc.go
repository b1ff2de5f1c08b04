// Package natsbroker is a wsroom.Broker over core NATS publish/subscribe
// (not JetStream), on the official client github.com/nats-io/nats.go, for
// running one wsroom Hub per process behind a load balancer:
//
//	b := natsbroker.New(natsbroker.Options{URL: "nats://127.0.0.1:4222"})
//	hub := wsroom.New(wsroom.Options{Broker: b}) // the Hub closes b in Shutdown
//
// Every room, user and hub-wide send is published to a subject derived
// from the Hub's topic, and each node subscribes only to the subjects of
// the rooms and users it has connections for. Each Broker holds one NATS
// connection.
//
// # Subjects
//
// NATS subjects are '.'-separated tokens in which '*' and '>' are
// wildcards, while a room name or user ID may hold any bytes. Names are
// therefore encoded into one token, unpadded base64url (RFC 4648 §5; "_"
// for the empty name), under Prefix (default "wsroom"):
//
//	room:<name>  →  wsroom.room.<base64url(name)>   e.g. room:lobby → wsroom.room.bG9iYnk
//	user:<id>    →  wsroom.user.<base64url(id)>
//	all          →  wsroom.all
//
// A subscription is to one exact subject, never a wildcard, and a received
// subject decodes back to the exact topic. A name may be up to MaxNameLen
// bytes (1024): longer ones are refused with ErrNameTooLong, since a
// subject must fit in the server's protocol line (max_control_line,
// 4 KiB by default).
//
// # Delivery
//
// A send's wait returns nil once the NATS server has received the message
// on every topic: the broker writes queued sends to the connection in
// batches (up to MaxBatch) and follows each batch with a PING, and the
// server's PONG, on the same connection, proves it has processed
// everything before it. Sends queued while a round trip is in flight form
// the next batch, so a busy node pays one round trip per batch, not per
// send, and the batch reaches the socket in one write. The server passes
// each message on to every connection subscribed at that moment; it keeps
// nothing.
//
// Guarantee, precisely:
//
//   - While this node and the receiving node stay connected, every node
//     subscribed to a topic receives each message once, in each
//     publisher's order (NATS keeps a publisher's order; a sender is one
//     goroutine, or calls whose order the caller fixes).
//   - Across a disconnection, delivery is at most once. A publish is never
//     retried and never buffered while disconnected (the client's
//     reconnect buffer is disabled), so nothing is delivered twice and
//     nothing is held back until the reconnection; a node that is
//     disconnected, or whose subscription is not yet in place (a round
//     trip after the first local member joins), misses what is published
//     meanwhile.
//   - A nil wait means the server received the message (over a connection
//     that did not change in between). It does not mean that other nodes
//     delivered it: a receiving node that falls behind drops messages (see
//     Slow consumers) and the server drops a subscriber connection that does
//     not read for its write_deadline.
//   - An error means the message may not have reached some or all topics.
//     After a timeout, or when the connection broke under it, the outcome
//     is unknown: the server may have published it (in the latter case
//     possibly after the first publishes of the next connection).
//
// When NATS is unreachable, local delivery goes on and every send returns
// at once (within about twice PublishTimeout when the server stops
// answering without closing the connection) with an error wrapping
// wsroom.ErrNotPublished (counted in the Hub's Stats.BrokerErrors and the
// broker's Stats.PublishErrors). The client reconnects forever, with a
// backoff of at most 500 ms, and then restores every subscription,
// including those made during the outage.
//
// # Slow consumers
//
// Every subscription feeds one bounded queue (Options.PendingMsgs, default
// 65536 messages) read by one goroutine that calls the Hub, one message at
// a time. The Hub's delivery only queues frames for its connections, so
// the queue fills only if messages arrive faster than one core can hand
// them out. When it is full the client drops newly arriving messages
// rather than grow: each episode is logged and counted in
// Stats.SlowConsumers, and the messages lost in Stats.Dropped. Memory is
// bounded by PendingMsgs times the largest message.
//
// # Limits
//
// A payload (the Hub's message plus a small header) may be as large as the
// server's max_payload (1 MiB by default; the client learns it on connect);
// a larger one fails at once with ErrPayloadTooLarge.
package natsbroker
