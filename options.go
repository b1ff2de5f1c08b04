package wsroom

import (
	"compress/flate"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"time"
)

// Defaults applied by New to zero-valued Options fields.
const (
	DefaultReadLimit         = 64 << 10 // 64 KiB per message
	DefaultPingInterval      = 30 * time.Second
	DefaultWriteTimeout      = 10 * time.Second
	DefaultSendQueueMessages = 8192
	DefaultSendQueueBytes    = 4 << 20 // 4 MiB
	DefaultSendBuffer        = 64 << 10
	DefaultSendBufferMax     = 4 << 20
	DefaultSendBufferUnsent  = 16 << 10
)

// Options configures a Hub. The zero value is valid and safe: same-origin
// handshakes only, a random user ID per connection, a 64 KiB read limit,
// pings every 30 s, a 10 s write timeout and bounded send queues.
//
// Durations and limits use 0 for "the default" and -1 for "disabled" where
// disabling is allowed. New copies Options; later changes to the caller's
// value have no effect.
type Options struct {
	// Identify decides who a connecting client is, from the upgrade request
	// (a session cookie, a bearer token, a query parameter…). It runs before
	// the upgrade, so an error rejects the handshake with an HTTP status:
	// the status carried by a *RejectError (see Reject), or 401 Unauthorized
	// for any other error. Returning "" with a nil error gives the
	// connection a unique random ID, as does a nil Identify.
	//
	// A user may hold any number of connections; Hub.SendTo reaches all of them.
	Identify func(r *http.Request) (userID string, err error)

	// OnConnect runs once per connection after the upgrade and before any
	// message is read, with the upgrade request (its URL, path values and
	// headers; do not keep it). Join rooms here. A non-nil error closes the
	// connection: with the code of a *CloseError, or 1008 (policy violation)
	// with the error text as reason otherwise. Unlike an Identify error,
	// which browsers only see as close code 1006, this code and reason reach
	// the page's close event.
	OnConnect func(c *Conn, r *http.Request) error

	// OnMessage receives every complete data message, in order, on the
	// connection's reader. The connection reads nothing else until it
	// returns, so slow work here delays only this connection. m.Data is
	// owned by the callee. The Relay handler can be used here.
	OnMessage func(c *Conn, m Message)

	// OnClose runs once per connection after it is closed and has left all
	// its rooms (OnLeave has run for each). err is always a *CloseError
	// carrying the close code and who initiated the close; see CloseStatus.
	OnClose func(c *Conn, err error)

	// OnJoin and OnLeave report room membership changes, for presence.
	// They run after the change, outside any lock, on the goroutine that
	// caused it (OnLeave runs on the closing connection's reader when a
	// connection goes away), so calls for different connections may run
	// concurrently: serialize them yourself if you publish full member
	// lists (see examples/chat).
	OnJoin  func(room *Room, c *Conn)
	OnLeave func(room *Room, c *Conn)

	// OriginPatterns lists extra allowed origins, matched case-insensitively
	// with path.Match against the Origin header's host exactly as it appears
	// there, port included: "*.example.com" allows https://a.example.com but
	// not https://a.example.com:8443 (add "*.example.com:*" for that), and
	// "localhost:*" allows any localhost port. Requests whose Origin host
	// equals the request Host are always allowed, as are requests without
	// an Origin header (non-browser clients). Everything else gets 403.
	OriginPatterns []string

	// InsecureSkipOriginCheck disables the origin check entirely, letting
	// any web page open connections with the user's cookies. Use it only
	// when Identify does not rely on ambient credentials.
	InsecureSkipOriginCheck bool

	// Subprotocols lists the subprotocols the server speaks, in order of
	// preference. The first one the client also offers is selected (see
	// Conn.Subprotocol); if none matches the connection proceeds with
	// none, and OnConnect may reject it.
	Subprotocols []string

	// ReadLimit is the maximum size in bytes of one inbound message, all
	// fragments together. A larger message closes the connection with 1009
	// as soon as its frame header announces the excess. A compressed message
	// (see Compression) is limited after inflation: inflating stops, with
	// 1009, one byte past the limit. Default 64 KiB; -1 disables the limit
	// (memory then grows with what peers send).
	ReadLimit int64

	// PingInterval is how often the server pings every connection.
	// Default 30 s; -1 disables pings.
	PingInterval time.Duration

	// PongTimeout closes a connection from which nothing at all (a pong or
	// any other frame) has been read for this long; the peer is presumed
	// dead and the TCP connection is dropped. It must exceed PingInterval.
	// Default twice PingInterval (60 s with the default interval), or
	// disabled when pings are disabled; -1 disables it.
	PongTimeout time.Duration

	// WriteTimeout bounds every write to a connection, and how long a
	// closing connection waits for the peer's close frame. A peer that does
	// not accept bytes for this long is dropped; a slow one that keeps
	// reading is not, however long a big message takes (over TLS, whose
	// writes cannot resume after a timeout, each write must finish within
	// WriteTimeout). Default 10 s.
	WriteTimeout time.Duration

	// SendQueueMessages and SendQueueBytes bound each connection's queue of
	// outbound frames not yet handed to the kernel. A connection whose queue
	// would overflow is closed with 1008 "slow consumer" and counted in
	// Stats; nothing is dropped silently and no sender ever waits for a
	// peer. Each queued frame counts its full size (a broadcast's shared
	// frame counts in full against every recipient) plus 32 bytes of
	// bookkeeping, so SendQueueBytes bounds all the heap a connection's
	// queue can pin. Defaults 8192 messages and 4 MiB: a burst to readers
	// faster than their writers get to run is absorbed, and a peer that
	// reads nothing costs at most that; for broadcasts most of it is frames
	// shared with every other recipient.
	//
	// A room member whose queue reaches 64 KiB (or a quarter of
	// SendQueueBytes) is parked: the room's broadcasts then wait for it in
	// one backlog the room shares, instead of a reference each in its
	// queue, and its writer takes them from there; the bounds are the same,
	// counting what the backlog holds for it. So thousands of peers that
	// read nothing cost the room's senders nothing per broadcast. A send
	// yields the processor when a queue is half full, and waits for the
	// writes already queued on this node to run (never for a peer, at most
	// a second) when a parked member is half-way to its bound, so that a
	// burst cannot outrun readers whose writers have not had a processor
	// yet. docs/memory.md gives the worst case for a whole server,
	// docs/fairness.md the design.
	SendQueueMessages int
	SendQueueBytes    int

	// SendBuffer sets each connection's kernel send buffer (SO_SNDBUF), in
	// bytes. Linux doubles the value for its own bookkeeping and keeps it
	// fixed, so a peer that reads nothing pins at most 2 × SendBuffer of
	// kernel memory instead of what the kernel's autotuning would grow to
	// (tcp_wmem's maximum, 4 MiB by default). On Linux, when a connection's
	// socket was full and its peer then took a whole buffer's worth from
	// it, the buffer is doubled, up to SendBufferMax: a reader gets room for bursts and
	// far-away readers their bandwidth × round trip, while a peer that
	// reads nothing keeps SendBuffer. Default 64 KiB; -1 leaves the
	// kernel's autotuning in place.
	SendBuffer int

	// SendBufferMax bounds how far SendBuffer grows for peers that read.
	// Default 4 MiB (Linux's usual tcp_wmem maximum; the kernel caps it at
	// net.core.wmem_max anyway).
	SendBufferMax int

	// SendBufferUnsent bounds, on Linux, the bytes a connection's socket
	// holds that the kernel has not sent yet (TCP_NOTSENT_LOWAT): once
	// that many wait, the socket takes nothing more until they drop below
	// it, and later frames wait in the connection's queue, where
	// SendQueueBytes counts them and a backlog shares them between
	// parked connections. A peer that reads nothing (its receive window
	// closed) then pins about SendBufferUnsent plus one write's worth of
	// kernel memory instead of 2 × SendBuffer, and filling its socket
	// costs the server that much copying instead of 128 KiB. A peer that
	// reads is not slowed: what its window and the congestion window allow
	// is sent at once, and the bound applies only to what waits behind
	// that; and once a peer has taken a whole send buffer's worth (at
	// least twice this) from a full socket, the bound is lifted for it, as
	// SendBuffer grows for it, so that its kernel buffer absorbs its
	// bursts as before. It never raises what SendBuffer allows. Default
	// 16 KiB; -1 leaves the kernel's setting (net.ipv4.tcp_notsent_lowat,
	// unbounded by default).
	SendBufferUnsent int

	// MaxConnsPerUser, if positive, bounds the connections one user ID
	// may hold on this Hub: a handshake beyond it is answered 101 and then
	// closed with 1008 "too many connections for this user" (a code and
	// reason the page can see), and counted as rejected. Default 0: no
	// limit.
	MaxConnsPerUser int

	// MaxRoomsPerConn, if positive, bounds the rooms one connection may
	// be in: Join beyond it returns ErrTooManyRooms. Default 0: no limit
	// (Join, Leave and Rooms cost the same however many rooms there are).
	MaxRoomsPerConn int

	// Compression configures permessage-deflate (RFC 7692). The zero value
	// leaves it off: no offer is accepted. See CompressionOptions for the
	// threshold (default 512 bytes), the level (default 1) and how offers
	// are answered. ReadLimit then bounds a message's inflated size.
	Compression CompressionOptions

	// Logger receives recovered panics and unexpected I/O errors, each
	// record with the connection's attributes (user, conn, remote, rooms).
	// Default slog.Default().
	Logger *slog.Logger

	// Observer, if set, is told about handshakes, closes and broker
	// failures as they happen (see Observer). Default nil. Counters and
	// delay distributions are read with Hub.Metrics instead.
	Observer Observer

	// History, if set, decides which rooms keep a history of their
	// broadcasts, and how much (see History): a wsroom.v1 client that
	// reconnects then gets what it missed in those rooms, in order, or is
	// told it cannot (docs/protocol.md). It is called once per room when
	// the room is first used (and again after its history was forgotten),
	// outside the Hub's locks; it must not call the Hub. Return the zero
	// History for rooms that keep none: they cost nothing more. Default
	// nil: no room keeps history.
	History func(room string) History

	// AuthorizeJoin, if set, lets wsroom.v1 clients ask to join rooms
	// themselves (docs/protocol.md): it decides, and a nil error joins.
	// Default nil: such requests are refused. Leaving is always allowed.
	AuthorizeJoin func(c *Conn, room string) error

	// AsyncPublish makes sends not wait for the Broker's verdict: a send
	// returns once this node's recipients have it, and the publish's outcome
	// is read later, in order, by one goroutine of the Hub; a failure is
	// counted in Stats.BrokerErrors and reported to the Observer as a
	// BrokerErrorEvent (Op "publish", Err wrapping ErrNotPublished) instead
	// of being returned. One sender's throughput then no longer depends on
	// the broker's round trip. At most 16,384 outcomes wait to be read; a
	// sender beyond that waits. A broadcast in a room whose history a
	// HistoryBroker keeps always waits: its position comes from the broker,
	// and every node delivers it when the broker hands it back. Default
	// false: a send returns ErrNotPublished itself.
	AsyncPublish bool

	// OnPresence, if set, is told when a user's first connection enters a
	// room and when its last one leaves it: once per transition. With a
	// Broker and Presence set, transitions are cluster-wide (a user with a
	// connection on another node does not leave) and each is reported on
	// one node only: where it happened, or, when a node died, on the node
	// that cleaned up after it. It runs outside the Hub's locks, on the
	// goroutine that made the change (with a cluster: one of the Hub's
	// presence goroutines, up to 32 at once, so calls may be concurrent;
	// the events of one (room, user) come one at a time, in order), and
	// must not block for long. Default nil.
	OnPresence func(PresenceEvent)

	// AnnouncePresence also tells a room's wsroom.v1 members about each
	// transition ({"t":"presence",…}, see docs/protocol.md). Default false.
	AnnouncePresence bool

	// Presence keeps presence cluster-wide through the Broker, which must
	// be a PresenceBroker (membroker and redisbroker are): Room.Presence,
	// Hub.Online, Hub.RoomCounts and OnPresence then cover every node, and
	// a node that dies takes its users out of their rooms after
	// PresenceTimeout. It costs a broker round trip per change of a user's
	// connection count in a room, off the sender's path. Default false:
	// presence covers this node's connections.
	Presence bool

	// PresenceTimeout is how long a node may be silent before the cluster
	// takes its users out of every room. Default 30 s.
	PresenceTimeout time.Duration

	// Broker, if set, spreads rooms and users over several processes
	// (nodes): Room.Broadcast, Room.BroadcastExcept, Room.SendTo,
	// Hub.SendTo and Hub.Broadcast then also publish to the broker, and
	// each node delivers what others publish to its own connections. A
	// node subscribes only to the rooms and users it has connections for.
	// The Hub owns the broker and closes it in Shutdown; use one broker
	// per Hub. Default nil: a single process. See docs/multinode.md for
	// the delivery guarantee.
	Broker Broker
}

// withDefaults returns a validated copy of o with defaults filled in.
// It panics on configurations that cannot work: those are programming
// errors found at construction, not at the first connection.
func (o Options) withDefaults() Options {
	if o.ReadLimit == 0 {
		o.ReadLimit = DefaultReadLimit
	}
	if o.ReadLimit < -1 {
		panic(fmt.Sprintf("wsroom: ReadLimit %d: use a positive size, 0 for the default or -1 for no limit", o.ReadLimit))
	}
	pingDisabled := o.PingInterval == -1
	if o.PingInterval == 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.PongTimeout == 0 {
		o.PongTimeout = 2 * o.PingInterval
		if pingDisabled {
			o.PongTimeout = -1
		}
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	for name, d := range map[string]time.Duration{"PingInterval": o.PingInterval, "PongTimeout": o.PongTimeout} {
		if d < -1 {
			panic(fmt.Sprintf("wsroom: %s %v: use a positive duration, 0 for the default or -1 to disable", name, d))
		}
	}
	if o.WriteTimeout < 0 {
		panic(fmt.Sprintf("wsroom: WriteTimeout %v must be positive", o.WriteTimeout))
	}
	if o.PingInterval > 0 && o.PongTimeout > 0 && o.PongTimeout <= o.PingInterval {
		panic(fmt.Sprintf("wsroom: PongTimeout %v must exceed PingInterval %v", o.PongTimeout, o.PingInterval))
	}
	if o.SendQueueMessages == 0 {
		o.SendQueueMessages = DefaultSendQueueMessages
	}
	if o.SendQueueBytes == 0 {
		o.SendQueueBytes = DefaultSendQueueBytes
	}
	if o.SendQueueMessages < 0 || o.SendQueueBytes < 0 || o.SendQueueBytes > 1<<30 {
		panic("wsroom: SendQueueMessages and SendQueueBytes must be positive, and SendQueueBytes at most 1 GiB")
	}
	if o.PresenceTimeout == 0 {
		o.PresenceTimeout = DefaultPresenceTimeout
	}
	if o.PresenceTimeout < 0 {
		panic("wsroom: PresenceTimeout must be positive, or 0 for the default")
	}
	if o.Presence {
		if _, ok := o.Broker.(PresenceBroker); !ok {
			panic("wsroom: Options.Presence needs a Broker that is a PresenceBroker (membroker, redisbroker)")
		}
	}
	if o.SendBuffer == 0 {
		o.SendBuffer = DefaultSendBuffer
	}
	if o.SendBuffer < -1 {
		panic(fmt.Sprintf("wsroom: SendBuffer %d: use a positive size, 0 for the default or -1 for the kernel's", o.SendBuffer))
	}
	if o.SendBufferMax == 0 {
		o.SendBufferMax = DefaultSendBufferMax
	}
	if o.SendBufferMax < o.SendBuffer {
		o.SendBufferMax = o.SendBuffer
	}
	if o.SendBufferUnsent == 0 {
		o.SendBufferUnsent = DefaultSendBufferUnsent
	}
	if o.SendBufferUnsent < -1 {
		panic(fmt.Sprintf("wsroom: SendBufferUnsent %d: use a positive size, 0 for the default or -1 for the kernel's", o.SendBufferUnsent))
	}
	if o.MaxConnsPerUser < 0 || o.MaxRoomsPerConn < 0 {
		panic("wsroom: MaxConnsPerUser and MaxRoomsPerConn must be 0 (no limit) or positive")
	}
	for _, p := range o.OriginPatterns {
		if _, err := path.Match(p, ""); err != nil {
			panic(fmt.Sprintf("wsroom: bad OriginPatterns entry %q: %v", p, err))
		}
	}
	for _, p := range o.Subprotocols {
		if p == "" || strings.ContainsAny(p, " ,\t\"") {
			panic(fmt.Sprintf("wsroom: bad Subprotocols entry %q", p))
		}
	}
	o.OriginPatterns = append([]string(nil), o.OriginPatterns...)
	o.Subprotocols = append([]string(nil), o.Subprotocols...)
	o.Compression = o.Compression.withDefaults()
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Defaults applied by New to a zero CompressionOptions.Threshold and Level.
const (
	DefaultCompressionThreshold = 512
	DefaultCompressionLevel     = flate.BestSpeed
)

// CompressionOptions configures permessage-deflate (RFC 7692); see
// Options.Compression. The zero value leaves compression off.
//
// When enabled, the server accepts the first acceptable permessage-deflate
// offer of a client and always answers server_no_context_takeover and
// client_no_context_takeover: every message is compressed on its own, so a
// broadcast is compressed once and the same frame goes to every compressing
// recipient, and an idle connection holds no compression state (compressors
// and decompressors are pooled and taken only while a message is being
// processed). Malformed or unsupported offers are declined: the connection
// proceeds without compression.
type CompressionOptions struct {
	// Enabled accepts clients' permessage-deflate offers. Default false:
	// compression costs CPU per message, and compressing secrets together
	// with attacker-chosen text in one message can leak them (CRIME/BREACH).
	Enabled bool

	// Threshold is the size in bytes below which outbound messages are sent
	// uncompressed. Default 512 (DefaultCompressionThreshold); -1
	// compresses every message. A message whose compressed form would not
	// be smaller is sent uncompressed whatever its size.
	Threshold int

	// Level is the compress/flate level used for outbound messages: 1
	// (flate.BestSpeed) to 9 (flate.BestCompression), flate.DefaultCompression
	// or flate.HuffmanOnly. Default 1 (DefaultCompressionLevel).
	Level int
}

// withDefaults validates o and fills in its defaults.
func (o CompressionOptions) withDefaults() CompressionOptions {
	if o.Threshold == 0 {
		o.Threshold = DefaultCompressionThreshold
	}
	if o.Threshold == -1 {
		o.Threshold = 0
	}
	if o.Threshold < 0 {
		panic("wsroom: Compression.Threshold must be positive, 0 for the default or -1 to compress everything")
	}
	if o.Level == 0 {
		o.Level = DefaultCompressionLevel
	}
	if o.Level < flate.HuffmanOnly || o.Level > flate.BestCompression || o.Level == flate.NoCompression {
		panic("wsroom: Compression.Level must be 1–9, flate.DefaultCompression or flate.HuffmanOnly")
	}
	return o
}
