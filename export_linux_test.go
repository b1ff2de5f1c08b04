//go:build linux

package wsroom

// Polled reports whether c is served by the hub's poller: from then on a
// writer started for it is a non-blocking flush on the poller's queue,
// which notices a full socket (see goWriter). A writer started before,
// in the moment between the 101 and the poller taking the connection
// over, is a goroutine with blocking writes until the queue empties.
func Polled(c *Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.poll.p != nil
}
