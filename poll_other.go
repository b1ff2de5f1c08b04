//go:build !linux

package wsroom

type connPoll struct{}

type hubPoll struct{}

func (c *Conn) pollStart() bool { return false }

func (c *Conn) pollStop() {}

func (c *Conn) wakeReader() {}
