package sysstat

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// SetSendLimits sets a socket's SO_SNDBUF to sndbuf and, if lowat > 0,
// its TCP_NOTSENT_LOWAT to lowat (each only if positive): the settings a
// wsroom writer's socket has, for measuring what filling one costs.
func SetSendLimits(fd, sndbuf, lowat int) error {
	if sndbuf > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, sndbuf); err != nil {
			return err
		}
	}
	if lowat > 0 {
		return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, lowat)
	}
	return nil
}

// FillCost is what Fill's writes took and cost.
type FillCost struct {
	Taken      int64 // bytes the writes took, all sockets
	Full       int   // sockets whose last write failed (EAGAIN: full)
	CPUMicros  int64 // the writing thread's CPU time over the writes (ThreadCPUMicros)
	Interrupts int64 // interrupts between CPUs, machine-wide, meanwhile (CrossCPUInterrupts)
}

// Fill writes buf up to writes times to each of n sockets, socket after
// socket, with write(i, buf), which makes one non-blocking write to socket
// i; a socket's first failed write (EAGAIN once it is full) ends its
// turn. It runs on a locked OS thread and measures that thread's CPU time:
// on loopback, the receiving side's kernel work too.
func Fill(n, writes int, buf []byte, write func(i int, b []byte) (int, error)) FillCost {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var res FillCost
	irq, cpu := CrossCPUInterrupts(), ThreadCPUMicros()
	for i := range n {
		for range writes {
			w, err := write(i, buf)
			if err != nil {
				res.Full++
				break
			}
			res.Taken += int64(w)
		}
	}
	res.CPUMicros = ThreadCPUMicros() - cpu
	res.Interrupts = CrossCPUInterrupts() - irq
	return res
}
