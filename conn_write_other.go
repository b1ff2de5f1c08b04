//go:build !linux

package wsroom

import "net"

func (c *Conn) goWriter() { go c.writeLoop(-1) }

// setUnsentLimit does nothing here: Options.SendBufferUnsent is Linux's
// TCP_NOTSENT_LOWAT.
func setUnsentLimit(*net.TCPConn, int) bool { return false }
