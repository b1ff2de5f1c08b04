package redisbroker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Defaults for zero Options fields.
const (
	DefaultAddr           = "127.0.0.1:6379"
	DefaultPrefix         = "wsroom:"
	DefaultPublishTimeout = time.Second
	DefaultDialTimeout    = time.Second
	DefaultMaxPending     = 1 << 16
	DefaultPingInterval   = time.Second
	DefaultMaxPayload     = 64 << 20
	DefaultPresenceCache  = 1000
)

// MaxTopicBytes is the longest topic the broker accepts: a user ID longer
// than that cannot be subscribed to or published to (the Hub logs and
// counts the error).
const MaxTopicBytes = 60 << 10

// Errors returned by Publish (wrapped in wsroom.ErrNotPublished by the
// Hub), Subscribe and Unsubscribe.
var (
	// ErrClosed is returned by a Broker's methods after Close.
	ErrClosed = errors.New("redisbroker: closed")
	// ErrUnavailable is returned at once, without trying, while the
	// connection to the Redis (or cluster shard) a topic belongs to is
	// down.
	ErrUnavailable = errors.New("redisbroker: Redis is unreachable")
	// ErrTimeout is returned when Redis did not acknowledge a publish
	// within PublishTimeout: the outcome is unknown (Redis may have
	// published it), and the connection is dropped and dialled again.
	ErrTimeout = errors.New("redisbroker: Redis did not reply within PublishTimeout")
	// ErrQueueFull is returned when MaxPending publishes to one Redis are
	// already waiting and none completed within PublishTimeout.
	ErrQueueFull = errors.New("redisbroker: too many publishes waiting for Redis")
	// ErrTopicTooLong is returned for a topic over MaxTopicBytes.
	ErrTopicTooLong = errors.New("redisbroker: topic too long")
)

// Options configures a Broker. The zero value connects to one Redis at
// 127.0.0.1:6379.
type Options struct {
	// Addrs lists the Redis servers as host:port. Default: one Redis at
	// 127.0.0.1:6379.
	//
	// Without Cluster, each address is an independent Redis, a shard:
	// every topic lives on one of them, chosen by a consistent hash of
	// the topic (jump hash), so every node must list the same addresses
	// in the same order. Adding an address at the end moves about 1/N of
	// the topics.
	//
	// With Cluster, the addresses are seed nodes of one Redis Cluster;
	// the broker discovers its masters.
	Addrs []string

	// Cluster selects Redis Cluster mode: topics are spread over the
	// cluster's 16384 slots and published with sharded pub/sub
	// (SPUBLISH/SSUBSCRIBE, Redis 7 or later) on the master that owns
	// their slot, so that each message crosses one shard only. Channel
	// names carry a hash tag chosen by the broker (see Options.Prefix).
	Cluster bool

	// Username and Password, if set, are sent with AUTH on every
	// connection (Username only with Redis 6 ACLs). Default: none.
	Username, Password string

	// DB is the database SELECTed on every connection, without Cluster.
	// Pub/sub channels are not scoped to a database, so this only matters
	// for a server that restricts it. Default 0.
	DB int

	// TLS, if set, is used for every connection. Default: plain TCP.
	TLS *tls.Config

	// Prefix is prepended to every channel name, so that several
	// applications can share one Redis. Default "wsroom:". A channel is
	// Prefix + topic; in Cluster mode Prefix + "{" + tag + "}" + topic,
	// where the tag picks the topic's slot; there Prefix must not contain
	// '{'.
	Prefix string

	// PublishTimeout bounds how long a publish waits for Redis: for room
	// in a full queue (see MaxPending), for a first connection, and for
	// Redis's reply once it is written. When Redis sends no reply for
	// that long while a publish waits, the connection is dropped and the
	// waiting publishes fail with ErrTimeout. Default 1 s.
	PublishTimeout time.Duration

	// MaxPending bounds the publishes waiting for one Redis (queued or
	// sent and not yet acknowledged); a publish beyond it waits for room
	// up to PublishTimeout. Default 65536.
	MaxPending int

	// DialTimeout bounds connecting to Redis, TLS and AUTH included.
	// Default 1 s.
	DialTimeout time.Duration

	// PingInterval is how often the broker PINGs each subscription
	// connection. A subscription connection from which nothing (neither a
	// message nor a reply) arrived for 3 × PingInterval is considered
	// dead (a Redis gone without closing the TCP connection) and is
	// dialled again. Default 1 s; -1 disables the check.
	PingInterval time.Duration

	// MaxPayload is the largest message accepted from Redis, in bytes;
	// larger ones are discarded, logged and counted in Stats.Dropped.
	// Default 64 MiB.
	MaxPayload int

	// PresenceCacheMin is the size of room from which RoomPresence keeps
	// its answer (from the first read that saw the room unchanged during
	// it) and answers the next queries from it: one small script returns
	// the room's version and its changes since the kept one, which are
	// applied to it (one small round trip instead of the room's every
	// member); the room is read whole again when its change log no longer
	// reaches back that far (see RoomPresence). At most 64 rooms are kept
	// per broker. Default 1000 users; -1 disables.
	PresenceCacheMin int

	// Logger receives connection losses and recoveries. Default
	// slog.Default().
	Logger *slog.Logger
}

// withDefaults returns a copy of o with defaults filled in, or an error
// for settings that cannot work.
func (o Options) withDefaults() (Options, error) {
	if len(o.Addrs) == 0 {
		o.Addrs = []string{DefaultAddr}
	}
	o.Addrs = append([]string(nil), o.Addrs...)
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = DefaultPublishTimeout
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.PingInterval == 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = DefaultMaxPayload
	}
	if o.PresenceCacheMin == 0 {
		o.PresenceCacheMin = DefaultPresenceCache
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Cluster && strings.ContainsRune(o.Prefix, '{') {
		return o, fmt.Errorf("redisbroker: Prefix %q contains '{': in Cluster mode the broker's hash tag must come first", o.Prefix)
	}
	if len(o.Prefix) > 1024 {
		return o, errors.New("redisbroker: Prefix longer than 1024 bytes")
	}
	seen := make(map[string]bool)
	for _, a := range o.Addrs {
		if a == "" || seen[a] {
			return o, fmt.Errorf("redisbroker: empty or repeated address %q in Addrs", a)
		}
		seen[a] = true
	}
	return o, nil
}
