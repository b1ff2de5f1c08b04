//go:build !linux

package wsroom

import "runtime"

type connPoll struct{}

type hubPoll struct{}

func (c *Conn) pollStart() bool { return false }

func (c *Conn) pollStop() {}

func (c *Conn) wakeReader() {}

// awaitWriters yields the processor: without a poller every writer is a
// goroutine of its own.
func (h *Hub) awaitWriters() { runtime.Gosched() }
