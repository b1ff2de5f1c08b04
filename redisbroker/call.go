package redisbroker

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
)

// Calls: the commands other than PUBLISH that the broker sends (the
// history and presence scripts, a few plain commands), on the topic's
// server through the same pipeline as the publishes (publish.go), so they
// cost no connection of their own and keep call order with the
// publishes.
//
// A script is sent with EVALSHA once the connection has sent its body,
// and with EVAL (its body) the first time each connection uses it: Redis
// loads it then, lazily. When Redis answers NOSCRIPT (SCRIPT FLUSH, or a
// server that forgot it), the script did not run, and the call is sent
// again with EVAL: the one command the pipeline sends twice, since it
// cannot have taken effect.

// script is a Lua script the broker runs.
type script struct {
	id   int // bit in a scriptSet
	body string
	sha  string // hex SHA-1 of body
}

// scriptSet is the set of scripts a connection has sent (bit id).
type scriptSet uint64

var numScripts int

// newScript registers a script; called from package-level variable
// declarations only.
func newScript(body string) *script {
	sum := sha1.Sum([]byte(body))
	s := &script{id: numScripts, body: body, sha: hex.EncodeToString(sum[:])}
	numScripts++
	if numScripts > 64 {
		panic("redisbroker: more than 64 scripts")
	}
	return s
}

// call is one command whose reply its caller reads.
type call struct {
	script  *script  // nil: args is the command
	nkeys   int      // a script's keys: the first nkeys args
	args    []string // the script's keys then arguments, or the command
	payload []byte   // a last argument, sent when withPayload (not copied: kept until done)

	withPayload bool
	eval        bool // send the script's body (after NOSCRIPT); set by the reader

	// parse reads a reply that is not a status, an integer or an error
	// (its first line given) and keeps what it holds in the call; nil
	// when the command has no such reply.
	parse func(c *call, r *respReader, first []byte) (reply, error)

	done chan struct{} // closed by finish
	rep  reply
	val  any // what parse kept
}

func newCall(s *script, nkeys int, args ...string) *call {
	return &call{script: s, nkeys: nkeys, args: args, done: make(chan struct{})}
}

// command returns a call of a plain command.
func command(args ...string) *call {
	return &call{args: args, done: make(chan struct{})}
}

// finish records the call's outcome.
func (c *call) finish(rep reply) {
	c.rep = rep
	close(c.done)
}

// wait waits for the call's outcome, at most until ctx ends (the
// pipeline itself gives up after PublishTimeout).
func (c *call) wait(ctx context.Context) error {
	select {
	case <-c.done:
		return c.rep.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// appendTo appends the call's command to dst. loaded is the set of
// scripts the connection has sent: a script not in it is sent with its
// body (EVAL) and added.
func (c *call) appendTo(dst []byte, loaded *scriptSet) []byte {
	n := len(c.args)
	if c.withPayload {
		n++
	}
	if s := c.script; s != nil {
		bit := scriptSet(1) << s.id
		dst = appendArrayHeader(dst, n+3)
		if c.eval || *loaded&bit == 0 {
			*loaded |= bit
			dst = appendBulkString(dst, "EVAL")
			dst = appendBulkString(dst, s.body)
		} else {
			dst = appendBulkString(dst, "EVALSHA")
			dst = appendBulkString(dst, s.sha)
		}
		dst = appendBulkString(dst, strconv.Itoa(c.nkeys))
	} else {
		dst = appendArrayHeader(dst, n)
	}
	for _, a := range c.args {
		dst = appendBulkString(dst, a)
	}
	if c.withPayload {
		dst = appendBulk(dst, c.payload)
	}
	return dst
}

// isNoScript reports whether err is Redis's NOSCRIPT reply.
func isNoScript(err error) bool {
	var re RedisError
	return errors.As(err, &re) && strings.HasPrefix(string(re), "NOSCRIPT")
}

// errNotStarted is returned by calls before Start.
var errNotStarted = errors.New("redisbroker: used before Start")

// send queues c on the server of topic (its slot's master in Cluster
// mode). An error means it was not queued, and c is not finished.
func (b *Broker) send(topic string, c *call) error {
	if b.ctx.Err() != nil {
		return ErrClosed
	}
	if !b.started.Load() {
		return errNotStarted
	}
	t := b.topo.Load()
	if t == nil {
		if t = b.awaitTopology(); t == nil {
			return ErrUnavailable
		}
	}
	s, tag := t.route(topic)
	if s == nil {
		b.refreshTopology()
		return ErrUnavailable // the cluster has no master for its slot
	}
	return s.pub.enqueue(item{c: c, topic: topic, tag: tag})
}

// do sends c on topic's server and waits for its outcome.
func (b *Broker) do(ctx context.Context, topic string, c *call) error {
	if err := b.send(topic, c); err != nil {
		return err
	}
	return c.wait(ctx)
}

// sameServer reports whether topics a and b live on the same server, so
// that commands on both, queued in order, run in that order.
func (b *Broker) sameServer(x, y string) bool {
	t := b.topo.Load()
	if t == nil {
		return false
	}
	sx, _ := t.route(x)
	sy, _ := t.route(y)
	return sx != nil && sx == sy
}

// tagOf returns the hash tag of topic's keys and channel in Cluster mode
// ("" otherwise): its slot does not depend on the cluster's layout.
func (b *Broker) tagOf(topic string) string {
	if !b.opts.Cluster {
		return ""
	}
	return slotTag(int(topicHash(topic) % numSlots))
}

// key returns the name of a key of the broker's: Prefix, the hash tag in
// Cluster mode, then name (which starts with the key's kind, see keys
// in history.go and presence.go).
func (b *Broker) key(tag, name string) string {
	if tag == "" {
		return b.opts.Prefix + name
	}
	return b.opts.Prefix + "{" + tag + "}" + name
}

// channel returns topic's channel name (see appendChannel).
func (b *Broker) channel(tag, topic string) string { return b.key(tag, topic) }
