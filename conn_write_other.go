//go:build !linux

package wsroom

import "net"

func (c *Conn) goWriter() { go c.writeLoop() }

// cancelWrite does nothing here: a writer blocked on its socket ends when
// the socket is closed.
func (c *Conn) cancelWrite(error) {}

// setUnsentLimit does nothing here: Options.SendBufferUnsent is Linux's
// TCP_NOTSENT_LOWAT.
func setUnsentLimit(*net.TCPConn, int) bool { return false }
