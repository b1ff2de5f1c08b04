//go:build !linux

package wsroom

// Without a readiness poller every connection has a reader goroutine.

type connPoll struct{}

type hubPoll struct{}

func (c *Conn) pollStart() bool { return false }

func (c *Conn) pollStop() {}

func (c *Conn) wakeReader() {}

func (c *Conn) goWriter() { go c.writeLoop() }
