package wsroom

import (
	"net/http"
	"time"
)

// Observer is told about a Hub's discrete events as they happen:
// handshakes accepted and refused, connections closed, broker failures.
// Set it in Options.Observer, for logging, tracing or event-based
// metrics; a nil Observer costs nothing.
//
// Observe is called synchronously on the goroutine where the event
// happens (a handshake's, a connection's reader or writer, a sender, the
// broker's), never while the Hub holds a lock, possibly from several
// goroutines at once. It must be quick and must not block.
//
// What changes with every message (messages and bytes, queue delays,
// broker lag) is not an event: read it with Hub.Metrics, as the
// wsroomprom exporter does on each scrape.
type Observer interface {
	Observe(Event)
}

// Event is one of HandshakeEvent, CloseEvent or BrokerErrorEvent; switch
// on its type. More event types may be added.
type Event interface{ event() }

// HandshakeEvent reports an upgrade request, accepted (Conn is set) or
// refused (Cause says why).
type HandshakeEvent struct {
	Request *http.Request // the upgrade request; do not keep it
	Conn    *Conn         // the new connection; nil when refused
	Cause   Refusal       // why it was refused (meaningless when Conn is set)
	Status  int           // the HTTP status of the refusal, or 101 when the refusal came after it as a close frame
}

// CloseEvent reports a connection's end, after OnClose has run.
type CloseEvent struct {
	Conn     *Conn
	Err      *CloseError   // the code and reason, and who closed first (Remote)
	Duration time.Duration // how long the connection was open
}

// BrokerErrorEvent reports a broker failure. Op is "publish" (a send was
// not published: the sender got ErrNotPublished), "subscribe",
// "unsubscribe", "receive" (a message from another node was dropped as
// malformed), "history" (a HistoryBroker could not be read to fill a gap
// in a room's history, or gave a malformed entry; Topic is the room's) or
// "presence" (a PresenceBroker failed to record a user's count in a room,
// Topic being the room, or to remove the node's presence at Shutdown).
type BrokerErrorEvent struct {
	Op    string
	Topic string // the topic concerned, when there is one
	Err   error
}

func (HandshakeEvent) event()   {}
func (CloseEvent) event()       {}
func (BrokerErrorEvent) event() {}

// observe hands e to the Observer, if any.
func (h *Hub) observe(e Event) {
	if o := h.opts.Observer; o != nil {
		o.Observe(e)
	}
}
