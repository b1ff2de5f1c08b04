//go:build !linux

package wsroom

func (c *Conn) goWriter() { go c.writeLoop() }
