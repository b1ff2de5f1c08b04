// Package poller waits for read readiness of many sockets with one epoll
// instance, so that idle connections need no goroutine of their own.
//
// It exists only on Linux. A Poller is owned by one user (in wsroom, one
// Hub): the owner runs Poller.Run on a goroutine it joins, and Close ends
// Run. Run never blocks a thread in epoll_wait: it waits for the epoll
// descriptor itself through Go's network poller (the epoll fd is wrapped in
// an os.File) and then collects events with a zero timeout.
//
// Each registration is one-shot: after its handler was called, the socket
// is disarmed until Rearm. Registrations are named by a unique 64-bit id
// carried in the epoll event, never by the fd number, so an event that was
// collected for a socket that has since been closed (and whose number a new
// socket reuses) is recognised as stale and dropped. Every epoll_ctl on a
// socket goes through its syscall.RawConn, so it never touches a descriptor
// number after the socket was closed.
//
// Work runs on the poller's workers, goroutines that exit after a second
// without work and that Run joins: Poller.Go hands a task to an idle
// worker or starts one, and Poller.Queue appends a task to a FIFO that at
// most GOMAXPROCS workers drain, one task after another, so that a burst
// of short non-blocking tasks (wsroom's flushes after a broadcast) is
// served by a few goroutines instead of one each.
package poller
