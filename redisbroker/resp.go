package redisbroker

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// The subset of RESP2 (the Redis protocol) the broker speaks: commands are
// arrays of bulk strings; replies are simple strings, errors, integers,
// bulk strings and arrays of those.

// appendCommand appends a command of bulk-string arguments to dst.
func appendCommand(dst []byte, args ...string) []byte {
	dst = appendArrayHeader(dst, len(args))
	for _, a := range args {
		dst = appendBulkString(dst, a)
	}
	return dst
}

func appendArrayHeader(dst []byte, n int) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}

func appendBulkString(dst []byte, s string) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

func appendBulk(dst []byte, b []byte) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(b)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

// appendPublish appends "cmd channel frame" (PUBLISH or SPUBLISH), the
// channel given as its prefix, an optional hash tag and the topic, so
// that no channel string is built; the frame is framePlain then payload
// (see frame.go).
func appendPublish(dst []byte, cmd, prefix, tag, topic string, payload []byte) []byte {
	dst = appendArrayHeader(dst, 3)
	dst = appendBulkString(dst, cmd)
	dst = appendChannel(dst, prefix, tag, topic)
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(1+len(payload)), 10)
	dst = append(dst, '\r', '\n', framePlain)
	dst = append(dst, payload...)
	return append(dst, '\r', '\n')
}

// appendChannel appends the bulk string prefix + {tag} + topic (no braces
// when tag is empty).
func appendChannel(dst []byte, prefix, tag, topic string) []byte {
	n := len(prefix) + len(topic)
	if tag != "" {
		n += len(tag) + 2
	}
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(n), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, prefix...)
	if tag != "" {
		dst = append(dst, '{')
		dst = append(dst, tag...)
		dst = append(dst, '}')
	}
	dst = append(dst, topic...)
	return append(dst, '\r', '\n')
}

// RedisError is an error reply from Redis (such as "MOVED 3999
// 127.0.0.1:6381" or "NOAUTH Authentication required.").
type RedisError string

func (e RedisError) Error() string { return "redisbroker: Redis replied: " + string(e) }

// errProtocol reports bytes from Redis that are not the RESP the broker
// expects: the connection is closed.
var errProtocol = errors.New("redisbroker: protocol error in Redis's reply")

// Limits on what the reader accepts, so that no allocation is sized from a
// length Redis declared.
const (
	maxLine      = 64 << 10 // longest simple string, error or length line
	maxArray     = 1 << 20  // most elements of a nested array reply (CLUSTER SLOTS)
	maxSmallBulk = 64 << 10 // longest bulk string in a push's kind or channel, or in a command reply
	maxDepth     = 4        // deepest nesting of arrays in a reply
)

// respReader reads replies from a buffered connection.
type respReader struct {
	br   *bufio.Reader
	kind []byte // reused for a push's kind
	ch   []byte // reused for a push's channel and other small bulk strings
	body []byte // reused for a message's payload
}

func newRESPReader(r io.Reader) *respReader {
	return &respReader{br: bufio.NewReaderSize(r, 64<<10)}
}

// line reads one CRLF-terminated line and returns it without the CRLF;
// the bytes are valid until the next read.
func (r *respReader) line() ([]byte, error) {
	b, err := r.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: line longer than %d bytes", errProtocol, maxLine)
		}
		return nil, err
	}
	if len(b) < 3 || b[len(b)-2] != '\r' {
		return nil, fmt.Errorf("%w: bad line %q", errProtocol, clip(b))
	}
	return b[:len(b)-2], nil
}

// parseInt parses a RESP integer (an optional '-' and decimal digits).
func parseInt(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 20 {
		return 0, fmt.Errorf("%w: bad integer %q", errProtocol, clip(b))
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
		if len(b) == 0 {
			return 0, fmt.Errorf("%w: bad integer", errProtocol)
		}
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' || n > (1<<62)/10 {
			return 0, fmt.Errorf("%w: bad integer %q", errProtocol, clip(b))
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, nil
}

// status reads a reply that must be a simple string, an integer or an
// error, as PUBLISH's and SPUBLISH's are. A Redis error is returned as
// rerr (the connection is fine); err means the connection is not.
func (r *respReader) status() (rerr, err error) {
	l, err := r.line()
	if err != nil {
		return nil, err
	}
	switch l[0] {
	case ':', '+':
		return nil, nil
	case '-':
		return RedisError(l[1:]), nil
	}
	return nil, fmt.Errorf("%w: unexpected reply %q", errProtocol, clip(l))
}

// bulkInto reads the body of a bulk string of length n (its header read)
// into *buf, growing it only as bytes arrive, and returns it. A string
// longer than limit is read and discarded: too is true.
func (r *respReader) bulkInto(buf *[]byte, n int64, limit int) (b []byte, too bool, err error) {
	if n < 0 {
		return nil, false, fmt.Errorf("%w: negative length", errProtocol)
	}
	if n > int64(limit) {
		if _, err := r.br.Discard(int(min(n, 1<<40))); err != nil {
			return nil, true, err
		}
		return nil, true, r.crlf()
	}
	b = (*buf)[:0]
	for left := int(n); left > 0; {
		chunk := min(left, 64<<10)
		if cap(b)-len(b) < chunk {
			b = append(b[:cap(b)], make([]byte, chunk)...)[:len(b)]
		}
		k, err := io.ReadFull(r.br, b[len(b):len(b)+chunk])
		b = b[:len(b)+k]
		if err != nil {
			*buf = b
			return nil, false, err
		}
		left -= k
	}
	*buf = b
	return b, false, r.crlf()
}

func (r *respReader) crlf() error {
	t, err := r.br.Peek(2)
	if err != nil {
		return err
	}
	if t[0] != '\r' || t[1] != '\n' {
		return fmt.Errorf("%w: bulk string not terminated by CRLF", errProtocol)
	}
	_, err = r.br.Discard(2)
	return err
}

// push is a message Redis pushes to a subscribed connection: a
// (s)message, a (un)subscription confirmation or a pong.
type push struct {
	kind    string // "message", "smessage", "subscribe", "pong", …
	channel []byte // valid until the next read
	payload []byte // for messages; valid until the next read
	count   int64  // for (un)subscription confirmations
	tooBig  bool   // a message whose payload was over the limit was discarded
	rerr    error  // an error reply (the connection is fine)
}

// push reads the next push of a subscribed connection. Payloads over
// limit bytes are discarded (tooBig set). A top-level error reply is
// returned in p.rerr; a top-level simple string (PING's reply when the
// connection has no subscription) as a pong.
func (r *respReader) push(p *push, limit int) error {
	*p = push{}
	l, err := r.line()
	if err != nil {
		return err
	}
	switch l[0] {
	case '-':
		p.rerr = RedisError(l[1:])
		return nil
	case '+':
		p.kind = "pong"
		return nil
	case '*':
	default:
		return fmt.Errorf("%w: unexpected reply %q to a subscribed connection", errProtocol, clip(l))
	}
	n, err := parseInt(l[1:])
	if err != nil {
		return err
	}
	if n < 2 || n > 3 {
		return fmt.Errorf("%w: push of %d elements", errProtocol, n)
	}
	// Element 0: the kind.
	kind, err := r.smallBulk(&r.kind)
	if err != nil {
		return err
	}
	p.kind = knownKind(kind)
	// Element 1: the channel (or pong's data).
	if p.channel, err = r.smallBulk(&r.ch); err != nil || n == 2 {
		return err
	}
	// Element 2: a count or a payload.
	l, err = r.line()
	if err != nil {
		return err
	}
	switch l[0] {
	case ':':
		p.count, err = parseInt(l[1:])
		return err
	case '$':
		size, err := parseInt(l[1:])
		if err != nil {
			return err
		}
		p.payload, p.tooBig, err = r.bulkInto(&r.body, size, limit)
		return err
	}
	return fmt.Errorf("%w: unexpected push element %q", errProtocol, clip(l))
}

// smallBulk reads a bulk string of at most maxSmallBulk bytes into *buf.
func (r *respReader) smallBulk(buf *[]byte) ([]byte, error) {
	l, err := r.line()
	if err != nil {
		return nil, err
	}
	if l[0] != '$' {
		return nil, fmt.Errorf("%w: expected a bulk string, got %q", errProtocol, clip(l))
	}
	n, err := parseInt(l[1:])
	if err != nil {
		return nil, err
	}
	b, too, err := r.bulkInto(buf, n, maxSmallBulk)
	if err == nil && too {
		err = fmt.Errorf("%w: bulk string of %d bytes where at most %d are expected", errProtocol, n, maxSmallBulk)
	}
	return b, err
}

// knownKind returns kind as one of the push kinds the broker handles
// (without allocating), or "other".
func knownKind(kind []byte) string {
	for _, k := range [...]string{"message", "smessage", "subscribe", "ssubscribe", "unsubscribe", "sunsubscribe", "pong"} {
		if string(kind) == k {
			return k
		}
	}
	return "other"
}

// value reads any reply as a tree: int64, string (simple or bulk), nil,
// []any, or RedisError. For the few command replies the broker reads
// while setting up (AUTH, CLUSTER SLOTS); bounded by maxArray elements in
// all, maxSmallBulk bytes per string and maxDepth levels.
func (r *respReader) value() (any, error) {
	budget := maxArray
	return r.valueAt(0, &budget)
}

func (r *respReader) valueAt(depth int, budget *int) (any, error) {
	l, err := r.line()
	if err != nil {
		return nil, err
	}
	switch l[0] {
	case '+':
		return string(l[1:]), nil
	case '-':
		return RedisError(l[1:]), nil
	case ':':
		return parseInt(l[1:])
	case '$':
		n, err := parseInt(l[1:])
		if err != nil || n == -1 {
			return nil, err
		}
		b, too, err := r.bulkInto(&r.ch, n, maxSmallBulk)
		if err == nil && too {
			err = fmt.Errorf("%w: bulk string of %d bytes in a command reply", errProtocol, n)
		}
		return string(b), err
	case '*':
		n, err := parseInt(l[1:])
		if err != nil || n == -1 {
			return nil, err
		}
		if depth >= maxDepth || n < 0 || n > int64(*budget) {
			return nil, fmt.Errorf("%w: array of %d elements at depth %d", errProtocol, n, depth)
		}
		*budget -= int(n)
		a := make([]any, 0, min(n, 64))
		for range n {
			v, err := r.valueAt(depth+1, budget)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		return a, nil
	}
	return nil, fmt.Errorf("%w: unexpected reply %q", errProtocol, clip(l))
}

// clip shortens b for an error message.
func clip(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

// Reading the replies of calls (call.go). The first line of a reply is
// read by the pipeline's reader; a call's parser reads the rest with
// these, so that nothing is allocated from a length Redis declared: a
// bulk string grows as its bytes arrive, an array as its elements do.

// arrayLen parses an array header line: its element count, or -1 for a
// nil array. Other replies are a protocol error.
func arrayLen(l []byte) (int64, error) {
	if len(l) == 0 || l[0] != '*' {
		return 0, fmt.Errorf("%w: expected an array, got %q", errProtocol, clip(l))
	}
	n, err := parseInt(l[1:])
	if err == nil && (n < -1 || n > maxReplyElems) {
		err = fmt.Errorf("%w: array of %d elements", errProtocol, n)
	}
	return n, err
}

// maxReplyElems bounds the elements of one array a call's reply may
// declare (a room of a million users is two million).
const maxReplyElems = 1 << 24

// nextBulk reads a bulk string of at most limit bytes, returned in r's
// buffer or scratch buffer (valid until the next read); isNil for a nil
// bulk string. A
// longer string, or another kind of reply, is a protocol error.
func (r *respReader) nextBulk(limit int) (b []byte, isNil bool, err error) {
	l, err := r.line()
	if err != nil {
		return nil, false, err
	}
	return r.bulkAfter(l, limit)
}

// bulkAfter is nextBulk when the header line l was read already.
func (r *respReader) bulkAfter(l []byte, limit int) (b []byte, isNil bool, err error) {
	if l[0] != '$' {
		return nil, false, fmt.Errorf("%w: expected a bulk string, got %q", errProtocol, clip(l))
	}
	n, err := parseInt(l[1:])
	if err != nil {
		return nil, false, err
	}
	if n == -1 {
		return nil, true, nil
	}
	if n >= 0 && n <= int64(limit) && int(n)+2 <= r.br.Buffered() {
		// All in the buffer: no copy.
		b, _ = r.br.Peek(int(n) + 2)
		if b[n] != '\r' || b[n+1] != '\n' {
			return nil, false, fmt.Errorf("%w: bulk string not terminated by CRLF", errProtocol)
		}
		r.br.Discard(int(n) + 2)
		return b[:n], false, nil
	}
	b, too, err := r.bulkInto(&r.body, n, limit)
	if err == nil && too {
		err = fmt.Errorf("%w: bulk string of %d bytes where at most %d are expected", errProtocol, n, limit)
	}
	return b, false, err
}

// nextInt reads an integer reply, or a bulk string holding one.
func (r *respReader) nextInt() (int64, error) {
	l, err := r.line()
	if err != nil {
		return 0, err
	}
	switch l[0] {
	case ':':
		return parseInt(l[1:])
	case '$':
		b, isNil, err := r.bulkAfter(l, 24)
		if err != nil || isNil {
			return 0, err
		}
		return parseInt(b)
	}
	return 0, fmt.Errorf("%w: expected an integer, got %q", errProtocol, clip(l))
}
