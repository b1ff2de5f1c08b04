package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/sysstat"
	"golang.org/x/sys/unix"
)

// The stalled scenario's floor: what the kernel alone charges the server's
// CPU for the first writes to the stalled sockets, with no wsroom code. A
// gobwas-raw server takes the same clients (the fast readers connected and
// waiting, the stalled ones dialled as in the runs), sets each stalled
// socket's SO_SNDBUF and TCP_NOTSENT_LOWAT as wsroom's defaults do, and
// then, on one locked thread, writes floorWrites × floorWrite bytes to
// each, non-blocking, stopping at the first EAGAIN, as a wsroom writer's
// first flush does (a 64 KiB batch, then the rest of it). On loopback the
// writer's CPU also runs the receiving side. No server can serve the fast
// readers faster than the control run plus this.

// floorWrite and floorWrites are the floor's writes to each stalled
// socket.
const (
	floorWrite  = 64 << 10
	floorWrites = 2
)

// floorFill is what /ctl/fill reports.
type floorFill struct {
	Sockets    int   `json:"sockets"`
	Taken      int64 `json:"taken"`      // bytes the writes took, all sockets
	Full       int   `json:"full"`       // sockets whose last write found them full (EAGAIN)
	CPUMicros  int64 `json:"cpu_us"`     // the writing thread's CPU time over the writes
	Interrupts int64 `json:"interrupts"` // function-call and rescheduling interrupts, machine-wide, during the writes
}

// floorSockets is a server that can hand out its connections' sockets by
// user prefix (gobwasRaw).
type floorSockets interface {
	socketsOf(prefix string) []syscall.RawConn
}

// serveFill answers /ctl/fill?prefix=&size=&writes=&sndbuf=&lowat=: the
// floor's writes to the sockets of the users with that prefix.
func serveFill(t target, w http.ResponseWriter, r *http.Request) {
	fs, ok := t.(floorSockets)
	if !ok {
		http.Error(w, "this server cannot fill its sockets", http.StatusNotImplemented)
		return
	}
	q := r.URL.Query()
	var n [4]int
	for i, k := range []string{"size", "writes", "sndbuf", "lowat"} {
		v, err := strconv.Atoi(q.Get(k))
		if err != nil || v < 0 || (i < 2 && v == 0) {
			http.Error(w, "want size > 0, writes > 0, sndbuf ≥ 0 and lowat ≥ 0", http.StatusBadRequest)
			return
		}
		n[i] = v
	}
	res, err := fill(fs.socketsOf(q.Get("prefix")), n[0], n[1], n[2], n[3])
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, res)
}

// fill sets the sockets' send buffer and unsent limit (0: leave it), then
// times the writes on one locked thread.
func fill(socks []syscall.RawConn, size, writes, sndbuf, lowat int) (floorFill, error) {
	for _, rc := range socks {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = sysstat.SetSendLimits(int(fd), sndbuf, lowat) })
		if err = errors.Join(err, serr); err != nil {
			return floorFill{}, err
		}
	}
	cost := sysstat.Fill(len(socks), writes, make([]byte, size), func(i int, b []byte) (n int, werr error) {
		// One non-blocking write: returning true tells the runtime not to
		// wait for the socket.
		if err := socks[i].Write(func(fd uintptr) bool { n, werr = unix.Write(int(fd), b); return true }); err != nil {
			werr = err
		}
		return n, werr
	})
	return floorFill{Sockets: len(socks), Taken: cost.Taken, Full: cost.Full, CPUMicros: cost.CPUMicros, Interrupts: cost.Interrupts}, nil
}

// socketsOf returns the sockets of the connections whose user starts with
// prefix.
func (s *gobwasRaw) socketsOf(prefix string) []syscall.RawConn {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var socks []syscall.RawConn
	for c := range s.set {
		if !strings.HasPrefix(c.user, prefix) {
			continue
		}
		if sc, ok := c.nc.(syscall.Conn); ok {
			if rc, err := sc.SyscallConn(); err == nil {
				socks = append(socks, rc)
			}
		}
	}
	return socks
}

// stalledFloor is the floor run's result.
type stalledFloor struct {
	floorFill
	Poll bool // the stalled sockets were in the load generator's poller
}

// runStalledFloor measures the floor with c's clients.
func runStalledFloor(ctx context.Context, c *config) (*stalledFloor, error) {
	set, err := setupStalled(ctx, c, "gobwas-raw", c.stalled)
	if err != nil {
		return nil, err
	}
	defer set.close()
	q := url.Values{"prefix": {"s"}, "size": {strconv.Itoa(floorWrite)}, "writes": {strconv.Itoa(floorWrites)},
		"sndbuf": {strconv.Itoa(wsroom.DefaultSendBuffer)}, "lowat": {strconv.Itoa(wsroom.DefaultSendBufferUnsent)}}
	f := &stalledFloor{Poll: c.stalledPoll}
	if err := set.srv.ctl.get(ctx, "/ctl/fill", q, &f.floorFill); err != nil {
		return nil, err
	}
	if f.Sockets != c.stalled {
		return nil, fmt.Errorf("the floor server filled %d sockets, want the %d stalled ones", f.Sockets, c.stalled)
	}
	log.Printf("stalled: floor: %s", f.summary())
	return f, nil
}

// summary is the floor in one line.
func (f *stalledFloor) summary() string {
	n := float64(max(f.Sockets, 1))
	return fmt.Sprintf("the kernel's first writes to %d stalled sockets, without wsroom: %.1f ms of the server's CPU (%.1f µs a socket, %.1f KiB taken, %.1f interrupts between CPUs a socket, %d found full)",
		f.Sockets, float64(f.CPUMicros)/1e3, float64(f.CPUMicros)/n, float64(f.Taken)/n/1024, float64(f.Interrupts)/n, f.Full)
}

// best is the best ratio any server could reach against a control run of
// controlSecs: the control plus the floor, over the control.
func (f *stalledFloor) best(controlSecs float64) float64 {
	return (controlSecs + float64(f.CPUMicros)/1e6) / controlSecs
}
