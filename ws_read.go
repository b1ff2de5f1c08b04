package wsroom

import (
	"net"
	"sync"

	"github.com/wsroom/wsroom/internal/frame"
)

// An idle connection holds no parser: a parser between messages holds no
// state (Parser.Idle), so the reader takes one from a pool when bytes
// arrive and a polled connection gives it back when its socket has
// nothing more to read. Only a connection in the middle of a frame or of
// a fragmented message keeps one.
var parsers = sync.Pool{New: func() any { return new(frame.Parser) }}

// parserFor returns the connection's parser, taking a fresh one from the
// pool if it has none. It is called only on the reader.
func (c *Conn) parserFor() *frame.Parser {
	if c.parser == nil {
		c.parser = parsers.Get().(*frame.Parser)
		c.parser.Init((*frameHandler)(c), c.hub.opts.ReadLimit)
		c.parser.AllowCompressed(c.deflate != 0)
	}
	return c.parser
}

// releaseParser gives the parser back to the pool if it holds no partial
// frame or message. It is called only on the reader.
func (c *Conn) releaseParser() {
	if p := c.parser; p != nil && p.Idle() && p.Err() == nil {
		c.parser = nil
		p.Init(nil, 0)
		parsers.Put(p)
	}
}

// buffersPool holds the net.Buffers values writers hand to WriteTo: a
// local one would escape to the heap on every write.
var buffersPool = sync.Pool{New: func() any { return new(net.Buffers) }}

// writeBatch writes frames to nc in one vectored write. left is what
// was not written (nil when err is nil); net.Buffers has already cut the
// frame it stopped in, in frames' own backing array.
func writeBatch(nc net.Conn, frames [][]byte) (n int64, left [][]byte, err error) {
	b := buffersPool.Get().(*net.Buffers)
	*b = frames
	n, err = b.WriteTo(nc)
	left = *b
	*b = nil
	buffersPool.Put(b)
	return n, left, err
}
